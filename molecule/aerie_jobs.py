"""Submit real HTCondor jobs from a scenario's access point and read what HTCondor says about them.

Jobs are submitted by an ordinary user (``alice``; HTCondor refuses root's
jobs), each in its own directory under the user's home, and pinned to one
worker by its Machine attribute when a worker is given.
"""

from __future__ import annotations

import re
import shlex
import time

USER = "alice"


def wait_for(predicate, timeout=120, step=3):
    """Call PREDICATE every STEP seconds until it returns something true or TIMEOUT passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def ensure_user(host) -> None:
    """The submitting user exists on the access point HOST."""
    host.run(f"id {USER} || useradd -m -s /bin/bash {USER}")


def machine(worker) -> str:
    """The Machine attribute of WORKER's slots (its FULL_HOSTNAME); WORKER is a testinfra host."""
    return worker.check_output("condor_config_val FULL_HOSTNAME")


def submit(host, directory: str, script: str, worker=None, lines: str = "request_memory = 64") -> str:
    """Submit SCRIPT as the user from DIRECTORY on HOST (emptied first); return the cluster id.

    WORKER (a testinfra host) pins the job to that node; LINES are more submit commands."""
    sub = f"executable = job.sh\noutput = job.out\nerror = job.err\nlog = job.log\n{lines}\n"
    if worker is not None:
        sub += f'requirements = (TARGET.Machine == "{machine(worker)}")\n'
    sub += "queue\n"
    out = host.check_output(
        "su - %s -c %s", USER,
        f"rm -rf {directory} && mkdir -p {directory} && cd {directory} && printf %s {shlex.quote(script)} > job.sh"
        f" && chmod +x job.sh && printf %s {shlex.quote(sub)} > job.sub && condor_submit job.sub")
    return re.search(r"submitted to cluster (\d+)", out).group(1)


def job(host, cluster: str, *attrs: str) -> list[str] | None:
    """The job's attributes from the queue, or from the history once it left."""
    for tool in ("condor_q", "condor_history"):
        out = host.check_output(f"{tool} {cluster} -af {' '.join(attrs)}").strip()
        if out:
            return out.split()
    return None
