"""After a reboot of the instance: the legacy mounts come back, and so does the base cgroup.

Runs last (file order): it restarts the instance, which the other modules'
tests do not expect.
"""

import subprocess

import aerie_testinfra
import pytest

testinfra_hosts = aerie_testinfra.hosts("worker_nodes")

MEMORY_BASE = "/sys/fs/cgroup/memory/htcondor"
LIMIT_BYTES = 512 * 1024 * 1024  # cgroups_base_memory_limit_mb in converge.yml


@pytest.fixture(scope="module")
def rebooted(host):
    name = host.backend.name
    subprocess.run(["podman", "restart", name], check=True, capture_output=True)
    # Right after the restart systemd's bus may not exist yet: retry until it answers.
    subprocess.run(
        ["podman", "exec", name, "timeout", "120", "sh", "-c",
         "until systemctl is-system-running --wait >/dev/null 2>&1"
         " || [ \"$(systemctl is-system-running)\" = degraded ]; do sleep 1; done"],
        check=True, capture_output=True,
    )
    return host


def test_legacy_mounts_are_mounted_at_boot_once(rebooted):
    for controller in ("memory", "freezer"):
        rows = [line for line in rebooted.file("/proc/self/mountinfo").content_string.splitlines()
                if line.split()[4] == f"/cgroup/{controller}"]
        assert len(rows) == 1, rows
        assert controller in rows[0].split(" - ")[1].split()[2].split(",")
        assert rebooted.run(f"systemctl is-active cgroup-{controller}.mount").stdout.strip() == "active"


def test_condor_start_recreates_the_base_cgroup_lost_at_reboot(rebooted):
    assert not rebooted.file(MEMORY_BASE).exists
    rebooted.check_output("systemctl start condor.service")
    try:
        assert rebooted.file(f"{MEMORY_BASE}/memory.limit_in_bytes").content_string.strip() == str(LIMIT_BYTES)
        assert rebooted.file("/sys/fs/cgroup/cpu/htcondor/cpu.shares").content_string.strip() == "512"
        assert rebooted.file("/sys/fs/cgroup/freezer/htcondor/freezer.state").exists
    finally:
        rebooted.run("systemctl stop condor.service")
