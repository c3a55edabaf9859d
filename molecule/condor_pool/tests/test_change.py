"""Changing a running site without killing its jobs (issue 16).

A knob a reconfig applies leaves a running job alone; a slot-layout change
drains the node, lets the job finish, restarts and advertises the new
layout; a rolling change that fails on the first batch never touches the
second. What is asserted is what HTCondor says: the job's own history
(ExitCode, NumJobStarts) and the slot ads in the collector.
"""

from __future__ import annotations

import json
import re

import aerie_jobs
import aerie_testinfra
from aerie_jobs import job, wait_for
from test_pool import WORKERS, finish, node, playbook, start_playbook

testinfra_hosts = aerie_testinfra.hosts("access_points")

HOME = "/home/alice/change"


def machine(worker: str) -> str:
    """The Machine attribute of WORKER's slots (its FULL_HOSTNAME)."""
    return aerie_jobs.machine(node(worker))


def submit(host, name: str, script: str, worker: str) -> str:
    """Submit SCRIPT as alice to run on WORKER; return the cluster id."""
    return aerie_jobs.submit(host, f"{HOME}/{name}", script, node(worker))


RELEASE_DIR = "/srv/aerie-release"


def until_released(worker: str, name: str, then: str = "") -> str:
    """A job script that runs until the test releases it (release()), then runs THEN.

    A job of fixed length could end before a slow run reaches its drain,
    and the drain would then have nothing to wait for."""
    node(worker).check_output(f"rm -f {RELEASE_DIR}/{name} && mkdir -p -m 0755 {RELEASE_DIR}")
    return f"#!/bin/sh\nwhile [ ! -e {RELEASE_DIR}/{name} ]; do sleep 1; done\n{then}\n"


def release(worker: str, name: str) -> None:
    node(worker).run(f"mkdir -p {RELEASE_DIR} && touch {RELEASE_DIR}/{name}")


def playbook_releasing_on_drain(worker: str, name: str, *args, limit: str):
    """Run the playbook; release job NAME on WORKER once the run has drained WORKER."""
    proc = start_playbook(*args, limit=limit)
    marker = node(worker).file("/var/lib/condor/aerie-drained")
    wait_for(lambda: proc.poll() is not None or marker.exists, timeout=600)
    release(worker, name)
    return finish(proc)


def slot_cpus(host, worker: str) -> int:
    out = host.check_output(f'condor_status -const \'Machine == "{machine(worker)}"\' -af TotalSlotCpus').split()
    return int(out[0]) if len(out) == 1 else -1


def test_a_reconfig_change_leaves_the_job_running_and_a_layout_change_drains_first(host):
    worker = WORKERS[0]
    cluster = submit(host, "survivor", until_released(worker, "survivor", "echo survived"), worker)
    assert wait_for(lambda: job(host, cluster, "JobStatus") == ["2"], timeout=150), "the job never started"
    try:
        # A hold-policy knob (50-aerie-hold-policy.conf): condor_reconfig only.
        # (A shorter cap than the role's 2 days, still far longer than this test.)
        policy = {"condor_worker_hold_runtime_cap_seconds": 3600}
        run = playbook("-e", json.dumps(policy), limit=worker)
        assert run.returncode == 0, run.stdout[-3000:]
        assert "RUNNING HANDLER [htcondor : Reconfigure HTCondor]" in run.stdout
        assert "Restart HTCondor" not in run.stdout
        status = job(host, cluster, "JobStatus", "NumJobStarts")
        assert status == ["2", "1"], status

        # Half the node's CPUs for the partitionable slot (10-aerie-execute.conf): a restart,
        # so the node drains first and the run waits for the job (released once the drain began).
        layout = policy | {"condor_worker_slot_share_percent": 50}
        run = playbook_releasing_on_drain(worker, "survivor", "-e", json.dumps(layout), limit=worker)
        assert run.returncode == 0, run.stdout[-3000:]
        assert "Ask the startd to drain, running jobs = 1" in run.stdout
        assert "the restart vacates them" not in run.stdout
        status = job(host, cluster, "JobStatus", "ExitCode", "NumJobStarts")
        assert status == ["4", "0", "1"], status  # finished, once, not vacated
        assert host.check_output(f"cat {HOME}/survivor/job.out") == "survived"
        assert wait_for(lambda: slot_cpus(host, worker) == 4, timeout=60), "the new layout is not advertised"
    finally:
        release(worker, "survivor")
        host.run(f"condor_rm {cluster}")
        # Back to the scenario's declared state; with no job running the restart is immediate.
        run = playbook(limit=worker)
    assert run.returncode == 0, run.stdout[-3000:]
    assert not re.search(r"Ask the startd to drain[^\n]*\n(changed|ok): ", run.stdout), "drained an empty node"
    assert wait_for(lambda: slot_cpus(host, worker) == 8, timeout=60)


def test_a_drain_that_outlasts_its_timeout_vacates_the_job_which_runs_again(host):
    # pool-worker1: no short runtime cap to hold the job before it runs again.
    worker = WORKERS[0]
    cluster = submit(host, "vacated", until_released(worker, "vacated"), worker)
    assert wait_for(lambda: job(host, cluster, "JobStatus") == ["2"], timeout=150), "the job never started"
    try:
        change = {"condor_worker_slot_share_percent": 50, "htcondor_drain_timeout_seconds": 10}
        run = playbook("-e", json.dumps(change), limit=worker)
        assert run.returncode == 0, run.stdout[-3000:]
        assert "the restart vacates them" in " ".join(run.stdout.split())
        # Vacated, not failed or held: back in the queue, and it starts again.
        # (The schedd tells the negotiator about newly idle jobs every
        # SCHEDD_INTERVAL, 5 min by default; condor_reschedule asks now.)
        host.check_output("condor_reschedule")
        assert wait_for(lambda: int((job(host, cluster, "NumJobStarts") or ["0"])[0]) >= 2, timeout=180)
    finally:
        release(worker, "vacated")
        host.run(f"condor_rm {cluster}")
        run = playbook(limit=worker)
    assert run.returncode == 0, run.stdout[-3000:]


def test_a_rolling_change_that_fails_on_the_first_batch_never_touches_the_second(host):
    extra = "/etc/condor/config.d/90-aerie-extra.conf"
    before = {w: node(w).file(extra).content_string for w in WORKERS}
    # The same new knob for every worker, one that HTCondor's parser rejects on
    # the first (a template, so that only the value differs per host).
    knobs = {"SITE_NAME": "molecule", "RunBenchmarks": 0, "STARTER_UPDATE_INTERVAL": 5, "NUM_CPUS": 8,
             "UPDATE_INTERVAL": 10,
             "use POLICY": f"{{{{ 'NO_SUCH_POLICY' if inventory_hostname == '{WORKERS[0]}' else 'ALWAYS_RUN_JOBS' }}}}"}
    run = playbook("-e", json.dumps({"condor_worker_extra_knobs": knobs}), "-e", "aerie_worker_batch=1")
    assert run.returncode != 0
    assert "does not recognise NO_SUCH_POLICY" in " ".join((run.stdout + run.stderr).split())
    # The play stopped after the first batch: the second worker ran no task of it.
    worker_play = run.stdout.split("PLAY [Converge the execute nodes]")
    assert len(worker_play) == 2, "the worker play ran more than one batch"
    assert f"[{WORKERS[1]}]" not in worker_play[1].split("PLAY RECAP")[0]
    assert {w: node(w).file(extra).content_string for w in WORKERS} == before


def test_a_run_that_fails_after_a_change_still_applies_it(host):
    # The new slot layout (a restart) is accepted, then a knob HTCondor
    # rejects fails the host in the same run. The restart the layout change
    # notified still happens (force_handlers): otherwise the next run would
    # find the file in place, notify nothing, and the startd would keep the
    # old layout for good.
    worker = WORKERS[0]
    change = {"condor_worker_slot_share_percent": 50,
              "condor_worker_extra_knobs": {"SITE_NAME": "molecule", "RunBenchmarks": 0, "STARTER_UPDATE_INTERVAL": 5,
                                            "NUM_CPUS": 8, "UPDATE_INTERVAL": 10, "use POLICY": "NO_SUCH_POLICY"}}
    try:
        run = playbook("-e", json.dumps(change), limit=worker)
        assert run.returncode != 0
        assert "does not recognise NO_SUCH_POLICY" in " ".join((run.stdout + run.stderr).split())
        assert "RUNNING HANDLER [htcondor : Restart HTCondor" in run.stdout
        assert wait_for(lambda: slot_cpus(host, worker) == 4, timeout=60), "the new layout is not in force"
    finally:
        run = playbook(limit=worker)
    assert run.returncode == 0, run.stdout[-3000:]
    assert wait_for(lambda: slot_cpus(host, worker) == 8, timeout=60)


def test_a_drain_that_a_dead_run_left_is_finished_by_the_next_run(host):
    # A run drained the node, then died before the restart (the marker drain.yml
    # writes is still there). The startd stays drained until its daemons
    # restart, so the next run restarts it even though nothing else changed.
    worker = WORKERS[1]
    w = node(worker)
    w.check_output('condor_drain -graceful -reason "a run that died" "$(head -n 1 '
                   '"$(condor_config_val STARTD_ADDRESS_FILE)")"')
    w.check_output("echo 'a run that died' > /var/lib/condor/aerie-drained")
    state = f'condor_status -const \'Machine == "{machine(worker)}"\' -af State'
    assert wait_for(lambda: host.check_output(state) == "Drained", timeout=60), host.check_output(state)
    run = playbook(limit=worker)
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(r"Finish the restart an earlier run left after draining the node\][^\n]*\nchanged:", run.stdout)
    assert not w.file("/var/lib/condor/aerie-drained").exists
    assert wait_for(lambda: host.check_output(state) == "Unclaimed", timeout=60), host.check_output(state)
