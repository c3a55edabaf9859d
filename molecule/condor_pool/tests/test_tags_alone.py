"""Each tag of the pool's roles alone changes nothing on the converged pool (issue 13).

htcondor and condor_central_manager, one tag per run: no change, no
failure, every configuration file byte-identical, and HTCondor not
restarted on any host (the master keeps its PID and start time). It runs
first in verify (conftest.py), on the pool as idempotence left it.
condor_worker's tags alone are the condor_worker scenario's (with htcondor's
again, on its workers): not repeated here.
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra

SCENARIO = Path(__file__).resolve().parent.parent
FILES = ["/etc/condor/condor_config", "/etc/condor/config.d", "/etc/condor/tokens.d", "/etc/condor/passwords.d",
         "/etc/apt/sources.list.d"]
MASTER = "systemctl show -p MainPID -p ExecMainStartTimestampMonotonic condor"


def test_each_tag_alone_changes_nothing_and_restarts_no_daemon():
    tags = aerie_testinfra.role_tags("htcondor", "condor_central_manager")
    assert {"htcondor_install", "htcondor_config", "condor_central_manager_config"} <= set(tags)
    problems = aerie_testinfra.tags_alone(SCENARIO / "converge.yml", tags, FILES, watch=[MASTER])
    assert not problems, "\n".join(problems)
