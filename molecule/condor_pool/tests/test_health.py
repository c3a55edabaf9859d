"""The node health gate (issue 16): a worker whose scratch file system fills
past the threshold stops taking new jobs and says why in its slot ad; the
drift check fails it; freeing the space opens it again within a probe period.

The scenario probes every 10 s and wants 100 MB free; the test puts a 200 MB
tmpfs over the worker's EXECUTE directory and fills it.
"""

from __future__ import annotations

import re
import time

import aerie_testinfra
from aerie_jobs import job, wait_for
from test_change import machine, submit
from test_pool import WORKERS, node, playbook

testinfra_hosts = aerie_testinfra.hosts("access_points")


def health(host, worker: str) -> tuple[str, str, str] | None:
    """(NodeHealthy, NodeHealthReason, START) of WORKER's partitionable slot, as the collector has it."""
    out = host.check_output(f'condor_status -const \'Machine == "{machine(worker)}"\' '
                            "-af NodeHealthy START NodeHealthReason").strip()
    if not out:
        return None
    healthy, start, reason = out.split(" ", 2)
    return healthy, reason, start


def test_a_full_scratch_closes_the_node_to_new_jobs_and_freeing_it_reopens_the_node(host):
    worker = WORKERS[1]
    w = node(worker)
    execute = w.check_output("condor_config_val EXECUTE")
    mode, owner = w.check_output(f"stat -c '%a %U:%G' {execute}").split()
    w.check_output(f"mount -t tmpfs -o size=200m,mode={mode} aerie-test-scratch {execute} && chown {owner} {execute}")
    cluster = None
    try:
        assert wait_for(lambda: (health(host, worker) or ("",))[0] == "true", timeout=60), health(host, worker)

        w.check_output(f"dd if=/dev/zero of={execute}/aerie-fill bs=1M count=150 status=none")
        filled = time.monotonic()
        assert wait_for(lambda: (health(host, worker) or ("",))[0] == "false", timeout=60), health(host, worker)
        # One probe period (10 s) plus one collector update (10 s), with slack for a loaded host.
        assert time.monotonic() - filled < 45
        _healthy, reason, start = health(host, worker)
        assert re.fullmatch(rf"scratch {execute} has \d+ MB free, below 100 MB", reason), reason
        assert start == "false"

        # A job that may only run here waits; nothing runs on an unhealthy node.
        cluster = submit(host, "gated", "#!/bin/sh\necho ran\n", worker)
        time.sleep(30)
        assert job(host, cluster, "JobStatus", "NumJobStarts") == ["1", "0"]

        # The drift check (site.yml in check mode) fails the node, naming the problem.
        run = playbook("--check", limit=worker)
        assert run.returncode != 0
        # Ansible prints a failed assert's message on stderr.
        said = " ".join((run.stdout + run.stderr).split())
        assert f"{worker} refuses new jobs" in said
        assert "below 100 MB" in said

        w.check_output(f"rm -f {execute}/aerie-fill")
        assert wait_for(lambda: (health(host, worker) or ("",))[0] == "true", timeout=60), health(host, worker)
        assert health(host, worker)[1:] == ("ok", "true")
        assert wait_for(lambda: job(host, cluster, "JobStatus", "ExitCode") == ["4", "0"], timeout=180)
    finally:
        if cluster:
            host.run(f"condor_rm {cluster}")
        w.run(f"rm -f {execute}/aerie-fill; umount {execute}")
