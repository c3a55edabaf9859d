"""Each tag of the worker's roles alone changes nothing on a converged node (issue 13).

The play is the scenario's converge with the real cgroups role in front of
condor_worker, as playbooks/worker_nodes.yml orders them, instead of the
stand-in fact: the cgroups hand-off must run under any tag. Before the role
skeleton it was tagged cgroups only, and ``--tags condor_worker_config``
rendered 20-aerie-cgroups.conf without BASE_CGROUP and the memory policy.
Under the tags of condor_worker and htcondor the cgroups role only checks,
probes and hands over: it changes nothing here. The baseline is a run of the
same play without the cgroups role's own step, so the hand-off is in it.
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra
import testinfra
import yaml

SCENARIO = Path(__file__).resolve().parent.parent
FILES = ["/etc/condor/condor_config", "/etc/condor/config.d", "/opt/aerie/condor-validator/pyvenv.cfg"]
CGROUPS = "/etc/condor/config.d/20-aerie-cgroups.conf"


def worker_play(tmp_path: Path) -> Path:
    """converge.yml with the cgroups role handing over the knobs the stand-in published."""
    plays = yaml.safe_load((SCENARIO / "converge.yml").read_text())
    stand_ins = plays[0]["pre_tasks"][0]["ansible.builtin.set_fact"]
    knobs = stand_ins.pop("cgroups_condor_knobs")
    plays[0]["roles"].insert(0, {"role": "cgroups", "vars": {
        "cgroups_base_cgroup": knobs["BASE_CGROUP"],
        "cgroups_memory_limit_policy": knobs["CGROUP_MEMORY_LIMIT_POLICY"].lower(),
        "cgroups_hard_memory_limit_expr": knobs["CGROUP_HARD_MEMORY_LIMIT_EXPR"],
        # This machine mounts cpu and cpuacct apart (the role refuses that otherwise).
        "cgroups_accept_split_cpu_cpuacct": True,
    }})
    path = tmp_path / "converge.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return path


def test_each_tag_alone_changes_nothing_and_keeps_the_cgroup_knobs(tmp_path):
    workers = aerie_testinfra.hosts("worker_nodes")
    tags = aerie_testinfra.role_tags("htcondor", "condor_worker")
    assert "condor_worker_config" in tags

    def knobs_kept(tag):
        for spec in workers:
            rendered = testinfra.get_host(spec).file(CGROUPS).content_string.splitlines()
            assert "BASE_CGROUP = htcondor" in rendered, (tag, rendered)
            assert "CGROUP_MEMORY_LIMIT_POLICY = custom" in rendered, (tag, rendered)
            assert "CGROUP_HARD_MEMORY_LIMIT_EXPR = RequestMemory * 2" in rendered, (tag, rendered)

    # The baseline: a full run of that play where the cgroups role only checks,
    # probes and hands over (what it publishes feeds more than the cgroup fragment).
    play = worker_play(tmp_path)
    baseline = aerie_testinfra.run_playbook(play, "--skip-tags", "cgroups_config")
    assert baseline["_returncode"] == 0, baseline["_stderr"][-3000:]
    knobs_kept("converge")
    problems = aerie_testinfra.tags_alone(play, tags, FILES, group="worker_nodes", after_each=knobs_kept)
    assert not problems, "\n".join(problems)
