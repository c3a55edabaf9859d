"""drift-check against a converged site: clean, tampered, re-converged, a node down.

The tests drive the real scripts/drift-check (ansible-playbook --check --diff
with aerie's callback) over molecule's inventory of this scenario.
"""

import json
import os
import subprocess
from pathlib import Path

import aerie_testinfra
import pytest
import testinfra

REPO = Path(__file__).resolve().parents[3]
INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent")).parent
HOSTS = {name: testinfra.get_host(f"podman://{name}") for name in
         (h.split("://")[1] for h in aerie_testinfra.hosts())}


def drift_check(tmp_path: Path) -> tuple[int, dict]:
    report_dir = tmp_path / "reports"
    res = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "scripts/drift-check"), "-i", str(INVENTORY),
                          "--report-dir", str(report_dir)], capture_output=True, text=True, check=False)
    latest = report_dir / "latest.json"
    assert latest.exists(), res.stdout + res.stderr
    return res.returncode, json.loads(latest.read_text())


def converge(limit: str) -> None:
    # All workers in one batch, as the scenario's converge (converge.yml).
    res = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", str(INVENTORY), str(REPO / "site.yml"),
                          "-e", "aerie_worker_batch=100%", "--limit", limit],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout[-3000:]


@pytest.fixture(scope="module")
def tampered(tmp_path_factory):
    """Hand edits an admin might make, one per kind the issue names, and a
    node that is down, all in one drift-check run (each run is a whole
    site.yml in check mode, the longest part of this scenario)."""
    w1, w2, squid = HOSTS["site-worker1"], HOSTS["site-worker2"], HOSTS["site-squid"]
    w1.run("echo 'START = False' >> /etc/condor/config.d/10-aerie-execute.conf")
    squid.run("systemctl stop squid")
    w2.run("mkdir -p /chroot/elsewhere && ln -sfn elsewhere /chroot/bullseye.tmp"
           " && mv -T /chroot/bullseye.tmp /chroot/bullseye")
    w2.run("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q qemu-utils")
    w2.run("systemctl stop condor")
    subprocess.run(["podman", "stop", "--time", "5", "site-spare"], check=True, capture_output=True)
    try:
        return drift_check(tmp_path_factory.mktemp("tampered"))
    finally:
        subprocess.run(["podman", "start", "site-spare"], check=True, capture_output=True)


def test_tampering_is_drift_on_exactly_the_tampered_hosts(tampered):
    rc, report = tampered
    # Exit bits combine: 2 (drift) | 4 (a node failed or is unreachable).
    assert rc == 6
    drifted = {h for h, v in report["hosts"].items() if v["status"] == "drift"}
    assert drifted == {"site-worker1", "site-worker2", "site-squid"}
    assert report["hosts"]["site-cm"]["status"] == "ok"


def test_a_stopped_node_is_reported_beside_the_drift(tampered):
    _rc, report = tampered
    assert report["hosts"]["site-spare"]["status"] in ("unreachable", "failed")


def tasks_of(report, host):
    return {(c["role"], c["task"]): c["diff"] for c in report["hosts"][host]["changes"]}


def test_edited_htcondor_fragment_is_named_with_its_diff(tampered):
    changes = tasks_of(tampered[1], "site-worker1")
    diffs = [d for (role, _task), d in changes.items() if role == "condor_worker"]
    assert any("-START = False" in d for d in diffs), changes


def test_stopped_squid_is_named(tampered):
    changes = tasks_of(tampered[1], "site-squid")
    # Not "changed, no diff": which service, in which state, and what it should be.
    assert changes[("squid", "Ensure squid runs and starts at boot")] == "service squid: stopped, should be running"


def test_repointed_chroot_link_is_named(tampered):
    changes = tasks_of(tampered[1], "site-worker2")
    chroot = {k: d for k, d in changes.items() if k[0] == "chroot"}
    assert chroot, changes
    assert any("elsewhere" in d for d in chroot.values()), chroot


def test_stopped_htcondor_is_named(tampered):
    changes = tasks_of(tampered[1], "site-worker2")
    said = [d for (_role, task), d in changes.items() if task == "Ensure the HTCondor daemons run and start at boot"]
    assert said == ["service condor: stopped, should be running"], changes


def test_removed_package_is_named(tampered):
    changes = tasks_of(tampered[1], "site-worker2")
    assert any(role == "condor_vm" for role, _ in changes), changes


def test_converging_again_clears_the_drift(tampered, tmp_path):
    # (A converged site without drift: idempotence proved no change; this is
    # the drift check's own view of the same, after the repair.)
    # As an admin repairs what the report named: site.yml on every host it
    # did not call ok, the stopped spare node included.
    named = sorted(name for name, h in tampered[1]["hosts"].items() if h["status"] != "ok")
    assert named == ["site-spare", "site-squid", "site-worker1", "site-worker2"]
    converge(",".join(named))
    rc, report = drift_check(tmp_path)
    assert rc == 0, json.dumps(report["findings"], indent=1)[:3000]
    assert report["summary"]["hosts"] == 5 and report["summary"]["ok"] == 5
