"""HTCondor enforces the cgroups the role prepared: real jobs on a pure cgroup v2 host (issue 15).

The VM is a one-node pool (converge.yml): HTCondor 25.0's own starter makes
each job's cgroup below the base cgroup, writes its memory.max from
CGROUP_HARD_MEMORY_LIMIT_EXPR (the cgroups role's knob: RequestMemory * 2
here), holds a job the kernel OOM-killed, and freezes a suspended job with
cgroup.freeze. Nothing here touches a cgroup: what is asserted is what the
kernel and HTCondor report.

HTCondor 25.0.13's layout, as this VM shows it: each job gets
<base>/<slot dir>.slice, which carries the limits (memory.max,
memory.swap.max 0 as DISABLE_SWAP_FOR_JOB defaults to true, memory.oom.group 1)
and the controllers, and the job's processes live in its one leaf,
<slot dir>.slice/<slot dir>.scope (v2 keeps processes in leaves; the job may
make cgroups of its own below it).

Test files run alphabetically: test_cgroups_v2.py ends with a reboot, so these
jobs run on the daemons systemd started at boot, beside the base cgroup the
role's unit recreated.
"""

from __future__ import annotations

import re
import shlex
import time

import aerie_testinfra
import pytest
from aerie_jobs import USER, ensure_user, submit, wait_for
from test_cgroups_v2 import BASE, ROOT, read

testinfra_hosts = aerie_testinfra.ssh_hosts("worker_nodes")

HOME = f"/home/{USER}/cgroups-v2"
MIB = 1024 * 1024
# Each job first records the cgroup the kernel put it in (/proc/self/cgroup)
# in its directory, which the test reads as root; then it does its part.
PROLOGUE = "#!/bin/sh\nsed -n 's/^0:://p' /proc/self/cgroup > {dir}/cgroup.tmp && mv {dir}/cgroup.tmp {dir}/cgroup\n"
JOBS = {
    # Sleeps: its cgroup and limits are read from outside while it runs.
    # 100 MB: the slot HTCondor carves is 128 MB (its request quantum), so
    # HTCondor's default (hard) policy would write 128 MB; custom writes 200.
    "limits": ("exec sleep 1731\n", "request_memory = 100"),
    # Ticks twice a second into its directory: frozen, the ticks stop.
    "suspend": ("while :; do echo x >> {dir}/ticks; sleep 0.5; done\n", "request_memory = 64"),
    # Touches 1 GiB at once: far over its 128 MB (2 x 64) limit.
    "oom": ("exec python3 -c 'b = bytearray(1024 << 20); b[::4096] = b\"x\" * (1 << 18)'\n", "request_memory = 64"),
}


def jobdir(name: str) -> str:
    return f"{HOME}/{name}"


def status(host, cluster: str) -> str:
    return host.check_output(f"condor_q {cluster} -af JobStatus")


def job_cgroup(host, name: str) -> str | None:
    """The cgroup the job's processes are in, as the job recorded it (relative to /sys/fs/cgroup), once it did."""
    f = host.file(f"{jobdir(name)}/cgroup")
    return f.content_string.strip() if f.exists else None


def limited(cgroup: str) -> str:
    """The job's own cgroup, the one HTCondor limits: the parent of the leaf its processes are in."""
    return cgroup.rsplit("/", 1)[0]


def parent(cgroup: str) -> str:
    return cgroup.rsplit("/", 1)[0]


@pytest.fixture(scope="module")
def jobs(host):
    """Submit every job at once, once the pool runs again after the reboot; wait until each is where it
    is meant to be (running, or held); remove them all at the end."""
    # The startd advertises its slot: the daemons came back at boot.
    assert wait_for(lambda: host.run("condor_status -startd -af Name").stdout.strip(), timeout=300, step=5), \
        host.run("systemctl status condor.service; tail -n 20 /var/log/condor/StartLog").stdout
    ensure_user(host)
    clusters = {}
    for name, (body, lines) in JOBS.items():
        script = PROLOGUE.format(dir=jobdir(name)) + body.format(dir=jobdir(name))
        clusters[name] = submit(host, jobdir(name), script, lines=lines)

    def arrived():
        return (status(host, clusters["oom"]) == "5"
                and all(status(host, clusters[n]) == "2" and job_cgroup(host, n) for n in ("limits", "suspend")))

    try:
        assert wait_for(arrived, timeout=420, step=5), {n: (status(host, c), job_cgroup(host, n))
                                                        for n, c in clusters.items()}
        yield clusters
    finally:
        host.run(f"condor_rm {' '.join(clusters.values())}")


def procs(host, cgroup: str) -> list[str]:
    return read(host, f"{ROOT}{cgroup}/cgroup.procs").split()


def test_each_job_runs_in_its_own_cgroup_below_the_base_cgroup(host, jobs):
    cgroups = {}
    for name in ("limits", "suspend"):
        cgroup = job_cgroup(host, name)
        # The job's cgroup is directly below the base cgroup the role prepared; its processes are in
        # that cgroup's leaf.
        assert parent(limited(cgroup)) == BASE.removeprefix(ROOT), (name, cgroup)
        assert read(host, f"{ROOT}{limited(cgroup)}/cgroup.procs") == ""
        # The kernel's view from outside: the processes in that cgroup are the job's, run as the
        # user, and each says it is there (one that exits meanwhile, the ticker's sleep, is skipped).
        seen = 0
        for pid in procs(host, cgroup):
            process = host.run(f"ps -o user= -p {pid} && cat /proc/{pid}/cgroup")
            if process.rc == 0:
                assert process.stdout.split() == [USER, f"0::{cgroup}"], (name, pid, process.stdout)
                seen += 1
        assert seen, (name, cgroup)
        cgroups[name] = limited(cgroup)
    assert cgroups["limits"] != cgroups["suspend"]
    # HTCondor's daemons stay in their own unit's cgroup.
    master = host.check_output("systemctl show -p MainPID --value condor.service")
    assert read(host, f"/proc/{master}/cgroup") == "0::/system.slice/condor.service"


def test_a_jobs_memory_limit_is_twice_its_request(host, jobs):
    for name in ("limits", "suspend"):
        request_mb = int(host.check_output(f"condor_q {jobs[name]} -af RequestMemory"))
        cgroup = f"{ROOT}{limited(job_cgroup(host, name))}"
        assert int(read(host, f"{cgroup}/memory.max")) == 2 * request_mb * MIB, name
        # No swap on top (DISABLE_SWAP_FOR_JOB): over the limit means the OOM killer.
        assert read(host, f"{cgroup}/memory.swap.max") == "0", name
        # The controllers HTCondor enabled for its jobs reach the job's cgroup.
        assert set(read(host, f"{cgroup}/cgroup.controllers").split()) >= {"cpu", "io", "memory", "pids"}
    # Not the slot's size (HTCondor's hard policy): the custom expression decided.
    slot_mb = int(host.check_output(f"condor_status -af Memory -constraint 'JobId == \"{jobs['limits']}.0\"'"))
    assert slot_mb * MIB != int(read(host, f"{ROOT}{limited(job_cgroup(host, 'limits'))}/memory.max"))


def test_a_job_over_its_memory_limit_is_killed_by_the_kernel_and_held(host, jobs):
    out = host.check_output(f"condor_q {jobs['oom']} -af HoldReasonCode HoldReasonSubCode HoldReason")
    code, subcode, reason = out.split(maxsplit=2)
    assert (int(code), int(subcode)) == (34, 102), out
    # The limit HTCondor gave the kernel: 2 x its 64 MB request.
    assert "Job has gone over cgroup memory limit of 128 megabytes" in reason, reason
    # The kernel's OOM killer fired in the job's own cgroup, below the base cgroup (its log names it).
    cgroup = job_cgroup(host, "oom")
    assert parent(limited(cgroup)) == BASE.removeprefix(ROOT), cgroup
    kills = host.check_output("dmesg | grep -F oom-kill: || true")
    assert f"oom_memcg={limited(cgroup)},task_memcg={cgroup}," in kills, kills
    # The user log has the hold with the same codes.
    log = host.file(f"{jobdir('oom')}/job.log").content_string
    assert re.search(r"^012 .*\n.*Job has gone over cgroup memory limit of 128 megabytes.*\n\s*Code 34 Subcode 102",
                     log, re.M), log


def ticks(host) -> int:
    f = host.file(f"{jobdir('suspend')}/ticks")
    return f.size if f.exists else 0


def grows(host) -> bool:
    before = ticks(host)
    time.sleep(3)
    return ticks(host) > before


def frozen(host, cgroup: str) -> str | None:
    events = dict(line.split() for line in read(host, f"{ROOT}{cgroup}/cgroup.events").splitlines())
    return events.get("frozen")


def test_a_suspended_job_is_frozen_and_thaws_on_continue(host, jobs):
    cluster, cgroup = jobs["suspend"], job_cgroup(host, "suspend")
    as_user = f"su - {USER} -c "
    assert grows(host)
    assert frozen(host, cgroup) == "0"
    host.check_output(as_user + shlex.quote(f"condor_suspend {cluster}"))
    assert wait_for(lambda: status(host, cluster) == "7", timeout=60, step=2)
    # v2's freezer: HTCondor writes cgroup.freeze (of the job's cgroup or its leaf), the kernel
    # reports the cgroup the job's processes are in frozen.
    assert wait_for(lambda: frozen(host, cgroup) == "1", timeout=30, step=1)
    assert "1" in {read(host, f"{ROOT}{c}/cgroup.freeze") for c in (cgroup, limited(cgroup))}
    assert not grows(host)
    host.check_output(as_user + shlex.quote(f"condor_continue {cluster}"))
    assert wait_for(lambda: status(host, cluster) == "2", timeout=60, step=2)
    assert wait_for(lambda: frozen(host, cgroup) == "0", timeout=30, step=1)
    assert grows(host)
