"""The cgroups role on a real hybrid-cgroup host (privileged podman instance)."""

import json
import shlex

import aerie_testinfra
import pytest

testinfra_hosts = aerie_testinfra.hosts("worker_nodes")

BASE = "htcondor"
LIMIT_BYTES = 512 * 1024 * 1024  # cgroups_base_memory_limit_mb in converge.yml


def mountinfo(host):
    """(mount point, fstype, super options, device) of every mount, in kernel order."""
    rows = []
    for line in host.file("/proc/self/mountinfo").content_string.splitlines():
        fields = line.split()
        sep = fields.index("-", 6)
        rows.append((fields[4], fields[sep + 1], set(fields[sep + 3].split(",")), fields[2], fields[3]))
    return rows


def at(host, path):
    return [row for row in mountinfo(host) if row[0] == path]


def task_state(host, pid):
    """The one-letter scheduler state of a process (S sleeping, D uninterruptible)."""
    for line in host.file(f"/proc/{pid}/status").content_string.splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise AssertionError(f"no State line for {pid}")


def start_sleep(host):
    return int(host.check_output("sh -c 'sleep 600 >/dev/null 2>&1 & echo $!'"))


@pytest.fixture
def sleeper(host):
    pid = start_sleep(host)
    yield pid
    # Wait until systemd (its parent now) has reaped it, so its cgroups empty.
    host.run(f"sh -c 'kill {pid}; timeout 30 sh -c \"while kill -0 {pid} 2>/dev/null; do sleep 0.1; done\"'")


@pytest.fixture(scope="module")
def handoff(host):
    return json.loads(host.file("/var/tmp/aerie-cgroups-handoff.json").content_string)


@pytest.mark.parametrize("controller", ["memory", "freezer"])
def test_legacy_mount_is_there_exactly_once(host, controller):
    rows = at(host, f"/cgroup/{controller}")
    assert len(rows) == 1, rows
    _, fstype, options, device, _root = rows[0]
    assert fstype == "cgroup"
    assert controller in options
    # The same hierarchy as systemd's mount where HTCondor looks (same superblock).
    (systemd_row,) = at(host, f"/sys/fs/cgroup/{controller}")
    assert device == systemd_row[3]


def test_base_cgroup_is_reachable_through_the_legacy_mount(host):
    # No cgroup namespace in the instance: the legacy mount shows the
    # hierarchy's real root, systemd's mount shows the container's subtree.
    (row,) = at(host, "/sys/fs/cgroup/memory")
    root = row[4]
    assert host.file(f"/cgroup/memory{root}/{BASE}/memory.limit_in_bytes").content_string.strip() == str(LIMIT_BYTES)


@pytest.mark.parametrize("hierarchy", ["memory", "cpu", "cpuacct", "freezer", "pids", "blkio"])
def test_base_cgroup_exists_in_every_hierarchy(host, hierarchy):
    assert host.file(f"/sys/fs/cgroup/{hierarchy}/{BASE}/cgroup.procs").exists


def test_a_process_moved_into_the_base_cgroup_is_listed_there(host, sleeper):
    host.check_output(f"sh -c 'echo {sleeper} > /sys/fs/cgroup/memory/{BASE}/cgroup.procs'")
    procs = host.file(f"/sys/fs/cgroup/memory/{BASE}/cgroup.procs").content_string.split()
    assert str(sleeper) in procs
    assert any(line.endswith(f":memory:{_own_root(host)}/{BASE}") for line in _proc_cgroup(host, sleeper))


def _own_root(host):
    return at(host, "/sys/fs/cgroup/memory")[0][4]


def _proc_cgroup(host, pid):
    return host.file(f"/proc/{pid}/cgroup").content_string.splitlines()


def test_the_configured_limits_are_in_place(host):
    assert host.file(f"/sys/fs/cgroup/memory/{BASE}/memory.limit_in_bytes").content_string.strip() == str(LIMIT_BYTES)
    # cgroups_base_cpu_weight 50 -> cpu.shares 512 (systemd's mapping).
    assert host.file(f"/sys/fs/cgroup/cpu/{BASE}/cpu.shares").content_string.strip() == "512"


def test_a_job_cgroup_limit_is_enforced_by_the_kernel(host):
    job = f"/sys/fs/cgroup/memory/{BASE}/aerie-verify-job"
    host.check_output(f"mkdir -p {job}")
    try:
        host.check_output(f"sh -c 'echo 33554432 > {job}/memory.limit_in_bytes'")
        assert host.file(f"{job}/memory.limit_in_bytes").content_string.strip() == "33554432"
        # Allocate 256 MiB inside the 32 MiB job cgroup: the OOM killer ends it (SIGKILL).
        hog = "b = bytearray(256 * 1024 * 1024); b[::4096] = b'x' * 65536"
        script = f"echo $$ > {job}/cgroup.procs && exec python3 -c {shlex.quote(hog)}"
        result = host.run(f"sh -c {shlex.quote(script)}")
        assert result.rc == 137, result
        assert int(host.file(f"{job}/memory.failcnt").content_string) > 0
    finally:
        # The killed process may still be exiting: rmdir succeeds once it is gone.
        host.run(f"timeout 30 sh -c 'until rmdir {job}; do sleep 0.1; done'")


def test_freeze_and_thaw_the_base_cgroup(host, sleeper):
    freezer = f"/sys/fs/cgroup/freezer/{BASE}"
    host.check_output(f"sh -c 'echo {sleeper} > {freezer}/cgroup.procs'")
    try:
        host.check_output(f"sh -c 'echo FROZEN > {freezer}/freezer.state'")
        assert host.file(f"{freezer}/freezer.state").content_string.strip() == "FROZEN"
        # A frozen task sits in the refrigerator, uninterruptible.
        assert task_state(host, sleeper) == "D"
    finally:
        host.check_output(f"sh -c 'echo THAWED > {freezer}/freezer.state'")
    assert host.file(f"{freezer}/freezer.state").content_string.strip() == "THAWED"
    assert task_state(host, sleeper) == "S"


@pytest.mark.parametrize("unit", ["cgroup-memory.mount", "cgroup-freezer.mount"])
def test_legacy_mount_units_are_valid_enabled_and_active(host, unit):
    verify = host.run(f"systemd-analyze verify /etc/systemd/system/{unit}")
    assert verify.rc == 0, verify.stderr
    assert host.run(f"systemctl is-enabled {unit}").stdout.strip() == "enabled"
    assert host.run(f"systemctl is-active {unit}").stdout.strip() == "active"
    assert host.file(f"/etc/systemd/system/local-fs.target.wants/{unit}").linked_to == f"/etc/systemd/system/{unit}"


def test_mount_unit_mounts_the_hierarchy_again_after_an_unmount(host):
    host.check_output("umount /cgroup/freezer")
    assert at(host, "/cgroup/freezer") == []
    host.check_output("systemctl start cgroup-freezer.mount")
    rows = at(host, "/cgroup/freezer")
    assert len(rows) == 1
    assert "freezer" in rows[0][2]


def test_condor_unit_gets_delegate_from_the_drop_in(host):
    verify = host.run("systemd-analyze verify condor.service")
    assert verify.rc == 0, verify.stderr
    assert host.check_output("systemctl show -p Delegate --value condor.service") == "yes"
    assert "/etc/systemd/system/condor.service.d/50-aerie-cgroups.conf" in host.check_output(
        "systemctl show -p DropInPaths --value condor.service"
    )


def test_facts_describe_the_real_layout(host, handoff):
    facts = handoff["facts"]
    assert facts["mode"] == "hybrid"
    assert facts["version"] == 1  # no /sys/fs/cgroup/cgroup.procs here
    assert not host.file("/sys/fs/cgroup/cgroup.procs").exists
    assert facts["unified_mount"] == "/sys/fs/cgroup/unified"
    assert sorted(facts["v1_mounts"]["memory"]) == ["/cgroup/memory", "/sys/fs/cgroup/memory"]
    kernel = {line.split()[0] for line in host.file("/proc/cgroups").content_string.splitlines()[1:]
              if line.split()[3] == "1"}
    assert set(facts["controllers"]) == kernel
    for controller, points in facts["v1_mounts"].items():
        for point in points:
            assert any(controller in row[2] for row in at(host, point)), (controller, point)


def test_knobs_for_the_htcondor_role(handoff):
    assert handoff["knobs"] == {"BASE_CGROUP": "htcondor", "CGROUP_MEMORY_LIMIT_POLICY": "hard"}


def test_bootloader_is_left_alone_in_a_container(host):
    assert not host.file("/etc/default/grub.d/50-aerie-swapaccount.cfg").exists
