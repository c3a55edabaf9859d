"""Pull mode end to end: nodes check themselves, deliver, the management host reports (issue 19)."""

import json
import os
import subprocess
from pathlib import Path

import aerie_testinfra
import testinfra

testinfra_hosts = aerie_testinfra.hosts("drift_checkers")
# Inventory name -> testinfra host ("podman://pull-node1").
NODES = {spec.split("://")[-1]: testinfra.get_host(spec) for spec in aerie_testinfra.hosts("checked_nodes")}
REPO = Path(__file__).resolve().parents[3]
REPORTS = "/var/lib/aerie-drift/reports"
INCOMING = "/var/lib/aerie-drift/incoming"
FACT = "/etc/ansible/facts.d/aerie.fact"
PULL = "/var/lib/aerie-drift-pull"
CLEAN, TAMPERED, SILENT = "pull-node1", "pull-node2", "pull-node3"


def check_itself(name: str) -> None:
    """What the node's timer starts: ansible-pull in check mode, then the delivery."""
    res = NODES[name].run("systemctl start aerie-drift-pull.service")
    assert res.rc == 0, NODES[name].run("journalctl -u aerie-drift-pull --no-pager | tail -40").stdout


def drift_finding(report: dict) -> list[dict]:
    return [{k: f[k] for k in ("kind", "role", "task", "diff", "hosts")}
            for f in report["findings"] if f["kind"] == "drift"]


def test_each_node_checks_itself_on_a_timer_spread_over_an_hour():
    for node in NODES.values():
        timer = node.file("/etc/systemd/system/aerie-drift-pull.timer").content_string
        # The scenario's calendar is far away, so the tests decide which node reports.
        assert "RandomizedDelaySec=3600" in timer and "OnCalendar=2099-01-01 01:00:00" in timer
        assert node.service("aerie-drift-pull.timer").is_enabled
        # Its inventory is its own: root only, no other checked node in it.
        inventory = node.file(f"{PULL}/inventory.yml")
        assert inventory.mode == 0o600 and inventory.user == "root"
    for name, node in NODES.items():
        text = node.file(f"{PULL}/inventory.yml").content_string
        assert name in text and not any(other in text for other in set(NODES) - {name})


def test_each_key_may_deliver_its_own_nodes_run_and_nothing_else(host):
    lines = [line for line in host.file("/var/lib/aerie-drift/.ssh/authorized_keys").content_string.splitlines()
             if line.strip()]
    assert len(lines) == len(NODES)
    for name, node in NODES.items():
        key = " ".join(node.file(f"{PULL}/id_ed25519.pub").content_string.split()[:2])
        (line,) = [line for line in lines if key in line]
        assert line.startswith(f'command="/opt/aerie/current/scripts/drift-receive --dir {INCOMING} {name}",restrict ')


def test_pull_report_names_the_tampered_node_and_the_silent_one_and_push_agrees(host, tmp_path):
    node = NODES[TAMPERED]
    original = node.file(FACT).content_string
    node.run(f"sed -i 's/drift-pull/hand-edited/' {FACT}")
    try:
        check_itself(CLEAN)
        check_itself(TAMPERED)
        # The third node's timer never fires.
        res = host.run("systemctl start aerie-drift-check.service")
        report = json.loads(host.file(f"{REPORTS}/latest.json").content_string)
        status = {name: h["status"] for name, h in report["hosts"].items()}
        assert status == {CLEAN: "ok", TAMPERED: "drift", SILENT: "stale"}, res.stdout + res.stderr
        assert report["exit_code"] == 6  # drift and a stale host
        kinds = [(f["kind"], f["hosts"]) for f in report["findings"]]
        assert kinds == [("stale", [SILENT]), ("drift", [TAMPERED])]
        assert report["findings"][0]["msg"] == "never reported"
        (drift,) = drift_finding(report)
        assert (drift["role"], drift["task"]) == ("aerie_node", "Ensure the node records what aerie declares it to be")
        assert '-    "site": "hand-edited"' in drift["diff"]
        assert node.file(FACT).content_string.count("hand-edited") == 1  # check mode changed nothing

        # The same nodes checked in push mode from the controller: the same drift.
        reports = tmp_path / "push"
        inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
        push = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "scripts/drift-check"), "-i", str(inventory),
                               "--limit", "checked_nodes", "--report-dir", str(reports)],
                              capture_output=True, text=True, check=False)
        pushed = json.loads((reports / "latest.json").read_text())
        assert {n: h["status"] for n, h in pushed["hosts"].items()} == {
            CLEAN: "ok", TAMPERED: "drift", SILENT: "ok"}, push.stdout + push.stderr
        assert drift_finding(pushed) == drift_finding(report)
    finally:
        node.run(f"cat > {FACT} <<'EOF'\n{original}EOF\n")


def test_a_node_cannot_file_a_run_as_another_node_nor_run_a_command(host):
    check_itself(CLEAN)
    theirs = host.file(f"{INCOMING}/{TAMPERED}.jsonl")
    before = theirs.content_string
    node = NODES[CLEAN]
    mgmt = host.backend.get_hostname()
    ssh = (f"ssh -i {PULL}/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
           f"-o UserKnownHostsFile={PULL}/known_hosts aerie-drift@{mgmt}")
    forged = json.dumps({"event": "result", "host": TAMPERED, "task": "x", "status": "ok"})
    res = node.run(f"echo '{forged}' | {ssh}")
    assert res.rc != 0 and TAMPERED in res.stderr
    assert theirs.content_string == before
    # Asking for a shell runs the receiver anyway, which refuses the empty delivery.
    res = node.run(f"{ssh} cat /etc/shadow </dev/null")
    assert res.rc != 0 and "root:" not in res.stdout
    # The node's own last run is still there.
    assert host.file(f"{INCOMING}/{CLEAN}.jsonl").exists
