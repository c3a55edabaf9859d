"""Runs of the cgroups role with other input than converge.yml's.

Bad input fails before any change, with a message naming the problem: each
case runs molecule/cgroups/apply.yml against the converged instance with one
bad setting plus a harmless change (CPU weight 200) the role would make if it
went on: cpu.shares staying at 512 proves nothing was applied.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import aerie_testinfra
import pytest

testinfra_hosts = aerie_testinfra.hosts("worker_nodes")

SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
SHARES = "/sys/fs/cgroup/cpu/htcondor/cpu.shares"
DROPIN = "/etc/systemd/system/condor.service.d/50-aerie-cgroups.conf"


def ansible(command, *args):
    """Run an Ansible CLI against the instance: (return code, output with white space collapsed)."""
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"),
        ANSIBLE_NOCOLOR="1",
    )
    result = subprocess.run(
        [str(Path(sys.executable).with_name(command)), "-i", os.environ["MOLECULE_INVENTORY_FILE"], *args],
        capture_output=True, text=True, env=env, check=False,
    )
    # Messages are wrapped in the YAML result: compare with white space collapsed.
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def run_role(tmp_path, extra_vars, *args):
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps({"cgroups_base_cpu_weight": 200, **extra_vars}))
    return ansible("ansible-playbook", "-e", f"@{varfile}", *args, str(SCENARIO / "apply.yml"))


def snapshot(host):
    mounts = sorted(line.split()[4] for line in host.file("/proc/self/mountinfo").content_string.splitlines())
    return mounts, host.file(SHARES).content_string, host.file(DROPIN).content_string


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        pytest.param({"cgroups_legacy_controllers": ["memory", "bogus"]},
                     "unknown cgroup controller bogus in cgroups_required_controllers or cgroups_legacy_controllers;"
                     " available: blkio, cpu, cpuacct, cpuset, devices, freezer, hugetlb, memory",
                     id="unknown-controller"),
        pytest.param({"cgroups_memory_limit_policy": "soft"},
                     'cgroups_memory_limit_policy: "soft" was removed from HTCondor', id="policy-soft"),
        pytest.param({"cgroups_base_memory_limit_mb": 0, "cgroups_base_memory_reserve_mb": 100_000_000},
                     "cgroups_base_memory_reserve_mb (100000000 MB) is not smaller than this host's memory",
                     id="reserve-above-memory"),
        pytest.param({"cgroups_memory_limit_policy": "custom"},
                     "cgroups_hard_memory_limit_expr is required when cgroups_memory_limit_policy is custom",
                     id="custom-without-expression"),
    ],
)
def test_bad_input_fails_before_any_change(host, tmp_path, extra_vars, message):
    before = snapshot(host)
    returncode, output = run_role(tmp_path, extra_vars)
    assert returncode != 0, output
    assert message in output, output
    assert snapshot(host) == before
    assert host.file(SHARES).content_string.strip() == "512"


def test_a_v1_host_htcondor_cannot_use_is_refused_unless_accepted(host, tmp_path):
    # HTCondor's v1 code needs cpu and cpuacct in one hierarchy. This
    # machine mounts them apart, so the role refuses it before any change
    # (the scenario's inventory accepts it, knowingly, for its other tests).
    hierarchy = {row.split()[0]: row.split()[1] for row in host.file("/proc/cgroups").content_string.splitlines()
                 if not row.startswith("#")}
    split = hierarchy["cpu"] != hierarchy["cpuacct"]
    before = snapshot(host)
    returncode, output = run_role(tmp_path, {"cgroups_accept_split_cpu_cpuacct": False})
    if split:
        assert returncode != 0, output
        assert "this host mounts the cpu and cpuacct cgroup controllers in separate v1 hierarchies" in output, output
        assert "cgroups_accept_split_cpu_cpuacct: true" in output
        assert snapshot(host) == before
        assert host.file(SHARES).content_string.strip() == "512"
    else:
        assert returncode == 0, output


def test_a_path_carrying_another_filesystem_is_refused_and_kept(host, tmp_path):
    host.check_output("mkdir -p /cgroup/pids")
    host.check_output("mount -t tmpfs site-scratch /cgroup/pids")
    try:
        before = snapshot(host)
        returncode, output = run_role(tmp_path, {"cgroups_legacy_controllers": ["memory", "freezer", "pids"]})
        assert returncode != 0, output
        assert "/cgroup/pids already carries tmpfs (source site-scratch); refusing to mount over it" in output, output
        assert "nothing was unmounted" in output
        assert snapshot(host) == before
        assert host.run("findmnt -n -o FSTYPE /cgroup/pids").stdout.strip() == "tmpfs"
        assert not host.file("/etc/systemd/system/cgroup-pids.mount").exists
    finally:
        host.run("umount /cgroup/pids")
        host.run("rmdir /cgroup/pids")



def test_fstab_persistence_is_valid_and_idempotent(host):
    """The module's other persistence: one valid fstab line, one mount, a second run changes nothing."""
    args = ["worker_nodes", "-m", "aerie.grid.cgroup_mount", "-a", "path=/cgroup/pids controllers=pids persist=fstab"]
    host.check_output("cp -p /etc/fstab /etc/fstab.aerie-verify")
    try:
        first = ansible("ansible", *args)
        assert first[0] == 0 and "cgroups-node | CHANGED" in first[1], first[1]
        second = ansible("ansible", *args)
        assert second[0] == 0 and "cgroups-node | SUCCESS" in second[1], second[1]
        lines = [line for line in host.file("/etc/fstab").content_string.splitlines() if "/cgroup/pids" in line]
        assert lines == ["cgroup /cgroup/pids cgroup pids 0 0"]
        check = host.run("findmnt --verify --tab-file /etc/fstab")
        assert check.rc == 0, check.stdout + check.stderr
        mounted = [m for m in host.file("/proc/self/mountinfo").content_string.splitlines()
                   if m.split()[4] == "/cgroup/pids"]
        assert len(mounted) == 1
        assert mounted[0].split(" - ")[1].split()[0] == "cgroup"
    finally:
        host.run("umount /cgroup/pids")
        host.run("rmdir /cgroup/pids")
        host.run("mv /etc/fstab.aerie-verify /etc/fstab")


@pytest.mark.parametrize(
    ("extra_vars", "knobs"),
    [
        pytest.param({"cgroups_memory_limit_policy": "custom", "cgroups_hard_memory_limit_expr": " RequestMemory * 2 "},
                     {"BASE_CGROUP": "htcondor", "CGROUP_MEMORY_LIMIT_POLICY": "custom",
                      "CGROUP_HARD_MEMORY_LIMIT_EXPR": "RequestMemory * 2"}, id="custom"),
        pytest.param({"cgroups_memory_limit_policy": "none", "cgroups_hard_memory_limit_expr": "RequestMemory",
                      "cgroups_base_cgroup": "site/condor"},
                     {"BASE_CGROUP": "site/condor", "CGROUP_MEMORY_LIMIT_POLICY": "none"}, id="none"),
    ],
)
def test_knobs_handed_to_htcondor(host, tmp_path, extra_vars, knobs):
    returncode, output = run_role(tmp_path, extra_vars, "--tags", "cgroups_validate,cgroups_handoff")
    assert returncode == 0, output
    assert json.loads(host.file("/var/tmp/aerie-cgroups-knobs.json").content_string) == knobs
