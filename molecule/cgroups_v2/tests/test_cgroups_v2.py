"""The cgroups role on a real pure cgroup v2 host: a Debian 12 VM under qemu.

Where HTCondor puts jobs on v2 (HTCondor's starter, ProcFamilyDirectCgroupV2):
below the parent of its own cgroup, so with systemd 252 and HTCondor in
condor.service the base cgroup is /sys/fs/cgroup/system.slice/htcondor.
HTCondor 25.0 runs here for real (converge.yml); test_jobs.py proves with
real jobs that it uses what this file checks.
The tests run in file order; the reboot and a --check run after it come last
(test_jobs.py runs after them, on the rebooted node).
"""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import aerie_testinfra
import pytest

testinfra_hosts = aerie_testinfra.ssh_hosts("worker_nodes")

ROOT = "/sys/fs/cgroup"
SLICE = f"{ROOT}/system.slice"
BASE = f"{SLICE}/htcondor"
UNIT = "aerie-condor-base-cgroup.service"
DROPIN = "/etc/systemd/system/condor.service.d/50-aerie-cgroups.conf"
# What HTCondor enables below the base cgroup for its jobs ("+cpu +io +memory +pids").
CONTROLLERS = {"cpu", "io", "memory", "pids"}
# molecule.yml's group_vars.
LIMIT_BYTES = 512 * 1024 * 1024
CPU_WEIGHT = "50"
SCENARIO = Path(__file__).resolve().parents[1]
APPLY = SCENARIO.parent / "cgroups" / "apply.yml"


def read(host, path):
    return host.file(path).content_string.strip()


def words(host, path):
    return set(read(host, path).split())


def wait_until(predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {seconds} s: {predicate.__doc__}")
        time.sleep(0.3)


def spawn(host, command="sleep 600", cgroup=None):
    """Start ``command`` in the background, in ``cgroup`` from its first instruction if given; its pid."""
    script = f"exec {command}" if cgroup is None else f"echo $$ > {cgroup}/cgroup.procs && exec {command}"
    return int(host.check_output(f"sh -c {shlex.quote(f'sh -c {shlex.quote(script)} >/dev/null 2>&1 & echo $!')}"))


def ansible_playbook(*args):
    """Run ansible-playbook on the instance (molecule's inventory and settings): (return code, output
    with white space collapsed, as messages are wrapped in the YAML result)."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", os.environ["MOLECULE_INVENTORY_FILE"], *args],
        capture_output=True, text=True, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
    )
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def empty(host, cgroup):
    """no process is left in the cgroup"""
    return read(host, f"{cgroup}/cgroup.procs") == ""


def stop(host, pid):
    # Wait until it is reaped (systemd is its parent now), so its cgroup empties.
    host.run(f"sh -c 'kill {pid}; timeout 30 sh -c \"while kill -0 {pid} 2>/dev/null; do sleep 0.1; done\"'")


@pytest.fixture(scope="module")
def facts(host):
    return json.loads(host.file("/var/tmp/aerie-cgroups-facts.json").content_string)


def test_the_host_runs_pure_cgroup_v2(host):
    cgroup_mounts = [line.split(" - ")[1].split()[0] + " " + line.split()[4]
                     for line in host.file("/proc/self/mountinfo").content_string.splitlines()
                     if " - cgroup" in line]
    assert cgroup_mounts == ["cgroup2 /sys/fs/cgroup"]


def test_facts_say_version_2(host, facts):
    assert facts["mode"] == "v2"
    assert facts["version"] == 2
    assert facts["unified_mount"] == ROOT
    assert facts["v1_mounts"] == {}
    assert set(facts["v2_controllers"]) == words(host, f"{ROOT}/cgroup.controllers")
    assert facts["swap_accounting"] is True


@pytest.mark.parametrize("cgroup", [ROOT, SLICE], ids=["root", "system.slice"])
def test_htcondors_controllers_reach_the_base_cgroup(host, cgroup):
    assert words(host, f"{cgroup}/cgroup.subtree_control") >= CONTROLLERS
    assert words(host, f"{BASE}/cgroup.controllers") >= CONTROLLERS


def test_the_base_cgroup_is_where_htcondor_puts_jobs(host):
    """HTCondor's rule: <parent of the daemon's own cgroup>/BASE_CGROUP (test_jobs.py: the jobs are there)."""
    pid = host.check_output("systemctl show -p MainPID --value condor.service")
    assert host.file(f"/proc/{pid}/exe").linked_to == "/usr/sbin/condor_master"
    own = read(host, f"/proc/{pid}/cgroup").removeprefix("0::")
    assert own == "/system.slice/condor.service"
    assert f"{ROOT}{own.rsplit('/', 1)[0]}/htcondor" == BASE
    assert host.file(BASE).is_directory


def test_the_configured_limits_read_back(host):
    assert read(host, f"{BASE}/memory.max") == str(LIMIT_BYTES)
    assert read(host, f"{BASE}/cpu.weight") == CPU_WEIGHT


# This and the next two put processes into the base cgroup itself, which v2
# allows only while its cgroup.subtree_control is empty: before HTCondor ran
# its first job (it then enables "+cpu +io +memory +pids" there for the job
# cgroups, test_jobs.py). They run before any job, and the reboot resets it.
def test_a_process_moved_into_the_base_cgroup_is_listed_there(host):
    pid = spawn(host)
    try:
        host.check_output(f"sh -c 'echo {pid} > {BASE}/cgroup.procs'")
        assert str(pid) in read(host, f"{BASE}/cgroup.procs").split()
        assert read(host, f"/proc/{pid}/cgroup") == "0::/system.slice/htcondor"
    finally:
        stop(host, pid)


def test_freeze_and_thaw_the_base_cgroup(host):
    ticks = "/var/tmp/aerie-verify-ticks"
    host.run(f"rm -f {ticks}")
    pid = spawn(host, f"sh -c 'while :; do echo x >> {ticks}; sleep 0.2; done'", BASE)

    def grows():
        """the ticker writes within 2 s"""
        before = host.file(ticks).size if host.file(ticks).exists else 0
        time.sleep(2)
        return host.file(ticks).size > before

    def frozen(state):
        return f"frozen {state}" in read(host, f"{BASE}/cgroup.events").splitlines()

    try:
        assert grows()
        host.check_output(f"sh -c 'echo 1 > {BASE}/cgroup.freeze'")
        wait_until(lambda: frozen(1))
        assert not grows()
    finally:
        host.check_output(f"sh -c 'echo 0 > {BASE}/cgroup.freeze'")
        wait_until(lambda: frozen(0))
        assert grows()
        stop(host, pid)
        wait_until(lambda: empty(host, BASE))


def test_a_job_over_its_memory_limit_is_oom_killed(host):
    """As HTCondor does: controllers enabled below the base, a job cgroup with memory.max."""
    job = f"{BASE}/aerie-verify-job"
    # v2's no-internal-process rule: a cgroup with processes of its own cannot
    # hand controllers to children. Earlier tests' processes (the ticker's last
    # `sleep 0.2` outlives its shell) must have left the base cgroup first.
    wait_until(lambda: empty(host, BASE))
    enable = host.run(f"sh -c 'echo +memory > {BASE}/cgroup.subtree_control'")
    assert enable.rc == 0, (enable.stderr, read(host, f"{BASE}/cgroup.procs"), read(host, f"{BASE}/cgroup.events"))
    host.check_output(f"mkdir -p {job}")
    try:
        host.check_output(f"sh -c 'echo 33554432 > {job}/memory.max && echo 0 > {job}/memory.swap.max'")
        assert read(host, f"{job}/memory.max") == "33554432"
        # Allocate 256 MiB inside the 32 MiB job cgroup: the OOM killer ends it (SIGKILL).
        hog = "b = bytearray(256 * 1024 * 1024); b[::4096] = b'x' * 65536"
        script = f"echo $$ > {job}/cgroup.procs && exec python3 -c {shlex.quote(hog)}"
        # A parent shell outside the job reports its status (ssh turns a killed command into 255).
        result = host.run(f"sh -c {shlex.quote(script)}; echo $?")
        assert result.stdout.split()[-1] == "137", result
        events = dict(line.split() for line in read(host, f"{job}/memory.events").splitlines())
        assert int(events["oom_kill"]) >= 1, events
    finally:
        # The killed process may still be exiting: rmdir succeeds once it is gone.
        host.run(f"timeout 30 sh -c 'until rmdir {job}; do sleep 0.1; done'")
        host.run(f"sh -c 'echo -memory > {BASE}/cgroup.subtree_control'")


def test_condor_unit_gets_delegation_and_the_base_cgroup_unit(host):
    verify = host.run(f"systemd-analyze verify condor.service {UNIT}")
    assert verify.rc == 0, verify.stdout + verify.stderr
    show = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show -p Delegate -p DropInPaths -p Wants -p After condor.service").splitlines())
    assert show["Delegate"] == "yes"
    assert DROPIN in show["DropInPaths"].split()
    assert UNIT in show["Wants"].split()
    assert UNIT in show["After"].split()
    # The daemons' own unit gets no job limits: they belong to the base cgroup.
    assert "MemoryMax" not in read(host, DROPIN)
    assert host.run(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    assert host.run(f"systemctl is-active {UNIT}").stdout.strip() == "active"


def test_knobs_for_the_htcondor_role(host):
    knobs = json.loads(host.file("/var/tmp/aerie-cgroups-knobs.json").content_string)
    assert knobs == {"BASE_CGROUP": "htcondor", "CGROUP_MEMORY_LIMIT_POLICY": "custom",
                     "CGROUP_HARD_MEMORY_LIMIT_EXPR": "RequestMemory * 2"}


def test_systemd_keeps_the_controllers_on_reload(host):
    """systemd takes back controllers no active unit asks for: the role's unit asks."""
    host.check_output("systemctl daemon-reload")
    for cgroup in (ROOT, SLICE):
        assert words(host, f"{cgroup}/cgroup.subtree_control") >= CONTROLLERS
    assert read(host, f"{BASE}/cpu.weight") == CPU_WEIGHT


def snapshot(host):
    mounts = sorted(line.split()[4] for line in host.file("/proc/self/mountinfo").content_string.splitlines())
    files = [read(host, path) for path in (DROPIN, f"/etc/systemd/system/{UNIT}", f"{BASE}/memory.max",
                                           f"{BASE}/cpu.weight")]
    return mounts, files, host.file("/cgroup").exists


def test_legacy_mounts_are_refused_on_v2_before_any_change(host, tmp_path):
    before = snapshot(host)
    varfile = tmp_path / "vars.json"
    # A CPU weight the role would apply if it went on: it must stay at 50.
    varfile.write_text(json.dumps({"cgroups_legacy_controllers": ["memory", "freezer"],
                                   "cgroups_base_cpu_weight": 200}))
    returncode, output = ansible_playbook("-e", f"@{varfile}", str(APPLY))
    assert returncode != 0, output
    assert ("cgroups_legacy_controllers: this host runs cgroup v2 at /sys/fs/cgroup, where the controllers"
            " belong to the unified hierarchy and cannot be mounted as v1; set it to []") in output, output
    assert snapshot(host) == before
    assert not before[2]


def test_the_base_cgroup_and_its_limits_come_back_after_a_reboot(host):
    boot_id = read(host, "/proc/sys/kernel/random/boot_id")
    host.run("systemctl reboot")

    def rebooted():
        """the VM answers with a new boot id"""
        try:
            return host.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() not in ("", boot_id)
        except RuntimeError:  # ssh cannot connect yet
            return False

    wait_until(rebooted, seconds=600)
    host.check_output("timeout 300 systemctl is-system-running --wait || true")
    assert host.run(f"systemctl is-active {UNIT}").stdout.strip() == "active"
    assert host.run("systemctl is-active condor.service").stdout.strip() == "active"

    def advertised():
        """HTCondor, started at boot, lists this node's slot"""
        return host.run("condor_status -startd -af Name").stdout.strip() != ""

    # What the check below and test_jobs.py need (the daemons take a while under emulation).
    wait_until(advertised, seconds=300)
    for cgroup in (ROOT, SLICE):
        assert words(host, f"{cgroup}/cgroup.subtree_control") >= CONTROLLERS
    assert read(host, f"{BASE}/memory.max") == str(LIMIT_BYTES)
    assert read(host, f"{BASE}/cpu.weight") == CPU_WEIGHT


def test_check_mode_after_the_reboot_reports_no_change():
    """What the node came back with is what the cgroups role wants: --check --diff finds nothing to do.

    The cgroups role alone: a check of all four roles costs 7 min under
    emulation, and HTCondor's state after the reboot is what test_jobs.py
    uses (its daemons started at boot run the jobs)."""
    returncode, output = ansible_playbook("--check", "--diff", str(APPLY))
    assert returncode == 0, output
    assert "cgroups-v2-node : ok=" in output and " changed=0 " in output, output
