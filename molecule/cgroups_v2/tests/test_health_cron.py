"""The node health probe (condor_worker's STARTD_CRON job) survives reconfigs.

With STARTD_CRON_<job>_RECONFIG_RERUN on a Periodic job, HTCondor 25.0 marks
a probe that is still running as ready at a reconfig and starts a second one
over it; the first run's stdout pipe stays registered with nobody reading it
to EOF, and the startd spins on it from then on (a whole CPU; StartLog says
"Child PID ... != Exit PID" and "Job AERIEHEALTH in state Idle: Huh?").
The probe runs for about a second here and a reconfig takes the startd
about two, so reconfigs sent every 1.5 s land while it runs, as a converge's reconfig and a pool-wide condor_reconfig
can on a site.
"""

from __future__ import annotations

import time

import aerie_testinfra

testinfra_hosts = aerie_testinfra.ssh_hosts("worker_nodes")


def startd_cpu_seconds(host) -> float:
    pid = host.check_output("pgrep -x condor_startd")
    fields = host.check_output(f"cat /proc/{pid}/stat").rsplit(")", 1)[1].split()
    # utime and stime, fields 14 and 15 of proc(5) (12 and 13 after the name).
    ticks = int(fields[11]) + int(fields[12])
    return ticks / int(host.check_output("getconf CLK_TCK"))


def test_reconfigs_while_the_probe_runs_leave_the_startd_idle_and_the_probe_reporting(host):
    log = host.check_output("condor_config_val STARTD_LOG")
    seen = int(host.check_output(f"wc -l < {log}"))
    # One remote loop, so the reconfigs come faster than the startd handles them.
    host.check_output("for i in 1 2 3 4 5 6 7 8; do condor_reconfig -daemon startd; sleep 1.5; done")
    before = startd_cpu_seconds(host)
    time.sleep(30)
    used = startd_cpu_seconds(host) - before
    since = host.check_output(f"tail -n +{seen + 1} {log}")
    assert "Huh?" not in since and "!= Exit PID" not in since, since[-3000:]
    # An idle startd uses well under a second of CPU in 30 s here; a spinning one all 30.
    assert used < 6, f"condor_startd used {used:.1f} s of CPU in 30 s"
    # The probe still runs and reports: a fresh NodeHealthChecked within two periods (10 s each).
    checked = int(host.check_output("condor_status -limit 1 -af NodeHealthChecked"))
    assert int(host.check_output("date +%s")) - checked < 40
    assert host.check_output("condor_status -limit 1 -af NodeHealthy") == "true"
