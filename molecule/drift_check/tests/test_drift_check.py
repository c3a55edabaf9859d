"""The management host's nightly service checks the node over SSH and reports."""

import json
import os
import subprocess
from pathlib import Path

import aerie_testinfra
import pytest
import testinfra

testinfra_hosts = aerie_testinfra.hosts("drift_checkers")
NODE = testinfra.get_host(aerie_testinfra.hosts("checked_nodes")[0])
REPO = Path(__file__).resolve().parents[3]
REPORTS = "/var/lib/aerie-drift/reports"
FACT = "/etc/ansible/facts.d/aerie.fact"


def run_service(host):
    """Start the oneshot service as the timer would; return (unit result, latest report)."""
    res = host.run("systemctl start aerie-drift-check.service")
    report = json.loads(host.file(f"{REPORTS}/latest.json").content_string)
    return res.rc, report


def test_timer_is_scheduled_nightly(host):
    timer = host.file("/etc/systemd/system/aerie-drift-check.timer").content_string
    assert "OnCalendar=*-*-* 02:30:00" in timer and "Persistent=true" in timer
    assert "RandomizedDelaySec=1800" in timer
    assert host.service("aerie-drift-check.timer").is_enabled
    assert host.service("aerie-drift-check.timer").is_running


def test_service_runs_unprivileged_from_the_installed_release(host):
    unit = host.file("/etc/systemd/system/aerie-drift-check.service").content_string
    assert "User=aerie-drift" in unit
    release = host.file("/opt/aerie/current")
    assert release.is_symlink
    revision = host.file("/opt/aerie/current/REVISION").content_string.strip()
    assert release.linked_to.endswith(revision)
    assert host.run("/opt/aerie/venv/bin/ansible-playbook --version").stdout.startswith("ansible-playbook [core 2.19")


def test_release_holds_the_collection_and_the_named_inventory_only(host):
    release = "/opt/aerie/current"
    files = set(json.loads(host.file(f"{release}/RELEASE.json").content_string)["files"])
    assert "inventory/hosts.yml" in files and host.file(f"{release}/inventory/hosts.yml").exists
    assert {"site.yml", "ansible.cfg", "scripts/drift-check", "library/aerie_release.py"} <= files
    # Never the controller's inventories, secrets, tests or molecule itself.
    for prefix in ("inventories/", "molecule/", "tests/", "bench/", ".git"):
        assert not [f for f in files if f.startswith(prefix)], prefix
        assert not host.file(f"{release}/{prefix.rstrip('/')}").exists, prefix
    assert not [f for f in files if "vault" in f or f.endswith((".pem", ".key"))]
    # The release finds itself as aerie.grid and reads back the controller's revision.
    assert host.file(f"{release}/collections/ansible_collections/aerie/grid").linked_to == host.file(release).linked_to
    revision = host.file(f"{release}/REVISION").content_string.strip()
    res = host.run(f"/opt/aerie/venv/bin/python {release}/scripts/aerie-release revision")
    assert res.rc == 0 and res.stdout.strip() == revision, res.stderr


def test_service_checks_the_shipped_inventory(host):
    unit = host.file("/etc/systemd/system/aerie-drift-check.service").content_string
    assert "-i /opt/aerie/current/inventory " in unit


@pytest.fixture
def converged_node():
    original = NODE.file(FACT).content_string
    yield
    NODE.run(f"cat > {FACT} <<'EOF'\n{original}EOF\n")
    NODE.run("systemctl start ssh")


def test_no_drift_then_drift_then_unreachable(host, converged_node):
    rc, report = run_service(host)
    assert rc == 0, host.run("journalctl -u aerie-drift-check --no-pager | tail -30").stdout
    assert report["exit_code"] == 0
    assert report["hosts"]["drift_check-node"]["status"] == "ok"
    assert host.file("/var/lib/aerie-drift/last-summary").content_string.startswith("drift-check: no drift")
    # The node_exporter textfile the unit writes (drift_check_metrics_file).
    metrics = host.file("/var/lib/aerie-drift/metrics/aerie_drift.prom").content_string
    assert 'aerie_drift_hosts{status="ok"} 1' in metrics and "aerie_drift_run_complete 1" in metrics

    # An admin edits a managed file by hand: drift (exit 2, still a successful unit).
    NODE.run(f"sed -i 's/drift-scenario/hand-edited/' {FACT}")
    rc, report = run_service(host)
    assert rc == 0
    assert report["exit_code"] == 2
    (finding,) = report["findings"]
    assert finding["hosts"] == ["drift_check-node"]
    assert (finding["role"], finding["task"]) == ("aerie_node", "Ensure the node records what aerie declares it to be")
    assert '-    "site": "hand-edited"' in finding["diff"]
    assert NODE.file(FACT).content_string.count("hand-edited") == 1  # check mode changed nothing
    html = host.file(f"{REPORTS}/latest.html").content_string
    assert "drifted: 1" in html

    # The node stops answering SSH: exit 4 and a failed unit.
    NODE.run("systemctl stop ssh.socket ssh.service")
    rc, report = run_service(host)
    assert rc != 0
    assert report["exit_code"] == 4
    assert report["hosts"]["drift_check-node"]["status"] == "unreachable"
    metrics = host.file("/var/lib/aerie-drift/metrics/aerie_drift.prom").content_string
    assert 'aerie_drift_hosts{status="unreachable"} 1' in metrics


def test_a_dead_node_is_the_only_unreachable_host(host):
    """One node down: the drift check blames that node alone (issue 19).

    scripts/drift-check runs this scenario's converge (the management host's
    play from playbooks/drift_checkers.yml, then each target's own play) in
    check mode from the controller, with the node's container stopped. The
    management host's play used to delegate the key to every target, so a
    dead node made the management host unreachable too.
    """
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    reports = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "dead-node-reports"
    subprocess.run(["podman", "stop", "--time", "5", "drift_check-node"], check=True, capture_output=True)
    try:
        res = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "scripts/drift-check"), "-i", str(inventory),
                              "--playbook", str(Path(__file__).parents[1] / "converge.yml"),
                              "--report-dir", str(reports)], capture_output=True, text=True, check=False)
    finally:
        subprocess.run(["podman", "start", "drift_check-node"], check=True, capture_output=True)
    report = json.loads((reports / "latest.json").read_text())
    status = {name: h["status"] for name, h in report["hosts"].items()}
    # Through podman a stopped container reads as failed rather than unreachable (over SSH, unreachable).
    assert status.pop("drift_check-node") in ("unreachable", "failed"), res.stdout + res.stderr
    assert status == {"drift_check-mgmt": "ok"}, res.stdout + res.stderr
    assert res.returncode == 4
