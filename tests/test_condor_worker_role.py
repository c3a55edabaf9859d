"""The condor_worker role's fragments, as HTCondor would read and evaluate them.

Each test renders the role's real templates with Ansible's own templating
(role defaults plus the variables under test), loads them through HTCondor's
parser (htcondor2 in a child process, the module's own code path), and
evaluates the resulting expressions with HTCondor's ClassAd engine (classad2)
against job and slot ads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import classad2
import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_collections.aerie.grid.plugins.module_utils import aerie_condor

REPO = Path(__file__).resolve().parent.parent
ROLE = REPO / "roles" / "condor_worker"
# The htcondor role (a dependency) brings the root config and the pool fragment.
BASE = REPO / "roles" / "htcondor"
FRAGMENTS = [
    "05-aerie-pool.conf",
    "10-aerie-execute.conf",
    "20-aerie-cgroups.conf",
    "30-aerie-chroots.conf",
    "40-aerie-job-environment.conf",
    "50-aerie-hold-policy.conf",
    "80-aerie-node-health.conf",
    "90-aerie-extra.conf",
]


def _trusted(value):
    # Ansible trusts templates in its own variable files; these are the role's.
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def render(template: str, **overrides) -> str:
    variables = {}
    for name in ("defaults/main.yml", "vars/main.yml", "vars/Debian.yml"):
        for role in (BASE, ROLE):
            if (role / name).exists():
                variables.update(_trusted(_yaml(role / name)))
    # What the htcondor role's probes publish on a node without HTCondor.
    variables.update(ansible_managed="Ansible managed", inventory_hostname="wn1", groups={},
                     ansible_facts={"fqdn": "wn1.example.org"}, htcondor_central_manager="wn1.example.org",
                     htcondor_node_version="24.0")
    variables.update(_trusted(overrides))
    templar = Templar(loader=DataLoader(), variables=variables)
    source = next(r / "templates" / template for r in (ROLE, BASE) if (r / "templates" / template).exists())
    return templar.template(trust_as_template(source.read_text()))


def run(argv, env):
    proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def load(tmp_path: Path, names: list[str], fragments=FRAGMENTS, **overrides) -> dict:
    """Write the root config and the fragments as the role would; return HTCondor's expanded values."""
    config_dir = tmp_path / "config.d"
    config_dir.mkdir(exist_ok=True)
    root = tmp_path / "condor_config"
    root.write_text(render("condor_config.j2", htcondor_config_dir=str(config_dir), **overrides))
    for fragment in fragments:
        (config_dir / fragment).write_text(render(fragment + ".j2", **overrides))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    first = config_dir / fragments[0]
    return aerie_condor.validate(run, "htcondor2", sys.executable, str(root), str(config_dir),
                                 first.name, first.read_text(), str(work), names)


def evaluate(expr: str, my: dict, target: dict | None = None):
    if target is None:
        return classad2.ExprTree(expr).eval(classad2.ClassAd(my))
    # In the startd an unqualified name resolves in the slot first, then in
    # the job (as HTCondor's own WANT_HOLD_IF policies rely on); classad2's
    # eval looks only in MY, so MY carries the job's attributes under the slot's.
    return classad2.ExprTree(expr).eval(classad2.ClassAd({**target, **my}), classad2.ClassAd(target))


# --- What the node's configuration says --------------------------------------


def test_defaults_make_an_execute_node_with_one_partitionable_slot(tmp_path):
    params = load(tmp_path, ["DAEMON_LIST", "CONDOR_HOST", "NUM_SLOTS_TYPE_1", "SLOT_TYPE_1_PARTITIONABLE",
                             "MOUNT_UNDER_SCRATCH", "NAMED_CHROOT", "STARTER_JOB_ENVIRONMENT"])
    assert params["DAEMON_LIST"] == "MASTER STARTD"
    assert params["CONDOR_HOST"] == "wn1.example.org"
    assert params["NUM_SLOTS_TYPE_1"] == "1" and params["SLOT_TYPE_1_PARTITIONABLE"] == "True"
    # A ClassAd string, as the starter evaluates it.
    assert evaluate(params["MOUNT_UNDER_SCRATCH"], {}) == "/tmp,/var/tmp"
    assert params["NAMED_CHROOT"] is None
    assert params["STARTER_JOB_ENVIRONMENT"] == '"OSG_SQUID_LOCATION=UNAVAILABLE"'


def test_other_roles_facts_become_knobs(tmp_path):
    params = load(
        tmp_path, ["BASE_CGROUP", "CGROUP_MEMORY_LIMIT_POLICY", "CGROUP_HARD_MEMORY_LIMIT_EXPR", "NAMED_CHROOT",
                   "STARTER_JOB_ENVIRONMENT", "OSG_SQUID_LOCATION", "STARTD_ATTRS"],
        cgroups_condor_knobs={"BASE_CGROUP": "htcondor", "CGROUP_MEMORY_LIMIT_POLICY": "custom",
                              "CGROUP_HARD_MEMORY_LIMIT_EXPR": "RequestMemory * 2"},
        condor_worker_cgroup_knobs={"BASE_CGROUP": "grid"},
        chroot_named_chroots={"SL5": "/chroot/sl5", "EL7": "/chroot/el7"},
        squid_client_location="squid.example.org:3128",
    )
    assert params["BASE_CGROUP"] == "grid"  # the role's own variable wins
    assert params["CGROUP_MEMORY_LIMIT_POLICY"] == "custom"
    assert params["CGROUP_HARD_MEMORY_LIMIT_EXPR"] == "RequestMemory * 2"
    assert params["NAMED_CHROOT"] == "EL7=/chroot/el7, SL5=/chroot/sl5"
    assert params["STARTER_JOB_ENVIRONMENT"] == (
        '"http_proxy=http://squid.example.org:3128 OSG_SQUID_LOCATION=squid.example.org:3128"')
    assert evaluate(params["OSG_SQUID_LOCATION"], {}) == "squid.example.org:3128"
    assert "OSG_SQUID_LOCATION" in params["STARTD_ATTRS"].split()


def test_htcondor_25_5_gets_apptainer_instead_of_named_chroot(tmp_path):
    chroots = {"SL5": "/chroot/sl5", "EL7": "/chroot/el7"}
    params = load(tmp_path, ["NAMED_CHROOT", "SINGULARITY_JOB", "SINGULARITY_IMAGE_EXPR", "SINGULARITY_TARGET_DIR"],
                  chroot_named_chroots=chroots, htcondor_node_version="25.5")
    assert params["NAMED_CHROOT"] is None
    assert params["SINGULARITY_TARGET_DIR"] == "/srv"
    # The job interface stays: +RequestedChroot = "SL5" picks the same tree.
    slot = {}
    job = {"RequestedChroot": "SL5"}
    assert evaluate(params["SINGULARITY_JOB"], slot, job) is True
    assert evaluate(params["SINGULARITY_IMAGE_EXPR"], slot, job) == "/chroot/sl5"
    assert evaluate(params["SINGULARITY_JOB"], slot, {}) is False


def test_a_job_asking_for_a_tree_the_node_lacks_never_starts(tmp_path):
    # The wheel's classad2 lacks stringListMember (the daemons register it),
    # so this checks what the slot will hold; condor_pool's
    # test_a_job_asking_for_an_unknown_tree_never_starts runs it for real.
    params = load(tmp_path, ["START", "AERIE_CHROOT_NAMES", "STARTD_ATTRS"],
                  chroot_named_chroots={"SL5": "/chroot/sl5", "EL7": "/chroot/el7"})
    assert evaluate(params["AERIE_CHROOT_NAMES"], {}) == "EL7,SL5"
    assert "AERIE_CHROOT_NAMES" in params["STARTD_ATTRS"].split()
    guard = "(isUndefined(TARGET.RequestedChroot) || stringListMember(TARGET.RequestedChroot, AERIE_CHROOT_NAMES))"
    assert guard in params["START"]
    assert evaluate(load(tmp_path, ["AERIE_CHROOT_NAMES"])["AERIE_CHROOT_NAMES"], {}) == ""


def test_extra_knobs_come_last_and_use_lines_work(tmp_path):
    params = load(tmp_path, ["MOUNT_UNDER_SCRATCH", "PREEMPT", "SITE_NAME"],
                  condor_worker_extra_knobs={"MOUNT_UNDER_SCRATCH": '"/tmp"', "SITE_NAME": "lab",
                                             "use POLICY": "ALWAYS_RUN_JOBS"})
    assert params["MOUNT_UNDER_SCRATCH"] == '"/tmp"'
    assert params["SITE_NAME"] == "lab"


def test_a_broken_extra_knob_is_the_parsers_business(tmp_path):
    with pytest.raises(aerie_condor.Rejected, match="does not recognise NO_SUCH_POLICY"):
        load(tmp_path, ["DAEMON_LIST"], condor_worker_extra_knobs={"use POLICY": "NO_SUCH_POLICY"})


# --- Node-local hold policy (startd: MY is the slot, TARGET the job) ---------

def test_the_health_gate_closes_start_only_while_the_probe_says_unhealthy(tmp_path):
    p = load(tmp_path, ["START", "STARTD_CRON_JOBLIST", "STARTD_CRON_AERIEHEALTH_ARGS",
                        "STARTD_CRON_AERIEHEALTH_PERIOD"])
    assert p["STARTD_CRON_JOBLIST"].split() == ["AERIEHEALTH"]
    assert p["STARTD_CRON_AERIEHEALTH_ARGS"] == "/etc/condor/aerie-node-health.json /var/lib/condor/execute"
    assert p["STARTD_CRON_AERIEHEALTH_PERIOD"] == "60s"
    assert evaluate(p["START"], {}) is True  # before the first probe run
    assert evaluate(p["START"], {"NodeHealthy": True}) is True
    assert evaluate(p["START"], {"NodeHealthy": False}) is False


def test_the_health_gate_can_be_switched_off(tmp_path):
    p = load(tmp_path, ["START", "STARTD_CRON_JOBLIST"], condor_worker_health_enabled=False)
    assert p["STARTD_CRON_JOBLIST"] is None
    assert evaluate(p["START"], {"NodeHealthy": False}) is True


POLICY = ["PREEMPT", "WANT_HOLD", "WANT_HOLD_REASON", "WANT_HOLD_SUBCODE", "WANT_SUSPEND", "MAXJOBRETIREMENTTIME"]


# The startd's view: the dynamic slot (MY) has the request as Memory; the job
# (TARGET) carries its usage and state. The molecule condor_pool scenario
# proves the same rules with real jobs on a real startd.
def running_slot(**extra):
    return {"Memory": 2048, **extra}


def running_job(started_seconds_ago=60, **extra):
    return {"JobUniverse": 5, "JobState": "Running", "JobCurrentStartDate": int(time.time()) - started_seconds_ago,
            **extra}


def test_over_the_memory_request_is_held_with_reason_and_subcode(tmp_path):
    p = load(tmp_path, POLICY, fragments=["10-aerie-execute.conf", "50-aerie-hold-policy.conf"])
    job = running_job(MemoryUsage=3000, DiskUsage=1000)
    slot = running_slot()
    assert evaluate(p["PREEMPT"], slot, job) is True
    assert evaluate(p["WANT_HOLD"], slot, job) is True
    assert evaluate(p["WANT_SUSPEND"], slot, job) is False
    # A broken limit ends retirement at once, as in HTCondor's own policies.
    assert evaluate(p["MAXJOBRETIREMENTTIME"], slot, job) == -1
    assert evaluate(p["WANT_HOLD_REASON"], slot, job) == (
        "Job put on hold by the execute node due to memory usage 3000 MB over the limit of 2048 MB.")
    assert evaluate(p["WANT_HOLD_SUBCODE"], slot, job) == 102


def test_under_the_memory_request_is_not_held(tmp_path):
    p = load(tmp_path, POLICY, fragments=["10-aerie-execute.conf", "50-aerie-hold-policy.conf"])
    slot = running_slot()
    for job in (running_job(MemoryUsage=2048, DiskUsage=1000), running_job()):
        assert evaluate(p["PREEMPT"], slot, job) is False
        assert evaluate(p["WANT_HOLD"], slot, job) is False


def test_absolute_memory_cap_disk_and_runtime_each_have_their_reason(tmp_path):
    p = load(tmp_path, POLICY, fragments=["10-aerie-execute.conf", "50-aerie-hold-policy.conf"],
             condor_worker_hold_memory_cap_mb=4096, condor_worker_hold_disk_cap_kb=5000,
             condor_worker_hold_runtime_cap_seconds=3600)
    slot = running_slot()
    over_request_under_cap = running_job(MemoryUsage=3000, DiskUsage=10)
    assert evaluate(p["WANT_HOLD"], slot, over_request_under_cap) is False

    over_cap = running_job(MemoryUsage=5000, DiskUsage=10)
    assert evaluate(p["WANT_HOLD_REASON"], slot, over_cap) == (
        "Job put on hold by the execute node due to memory usage 5000 MB over the limit of 4096 MB.")

    disk = running_job(MemoryUsage=100, DiskUsage=6000)
    assert evaluate(p["WANT_HOLD"], slot, disk) is True
    assert evaluate(p["WANT_HOLD_REASON"], slot, disk) == (
        "Job put on hold by the execute node due to disk usage 6000 KB over the limit of 5000 KB.")
    assert evaluate(p["WANT_HOLD_SUBCODE"], slot, disk) == 104

    long_running = running_job(started_seconds_ago=7200, MemoryUsage=100, DiskUsage=10)
    assert evaluate(p["WANT_HOLD"], slot, long_running) is True
    assert evaluate(p["WANT_HOLD_REASON"], slot, long_running) == (
        "Job put on hold by the execute node for running longer than 3600 seconds.")
    assert evaluate(p["WANT_HOLD_SUBCODE"], slot, long_running) == 103


def test_vm_universe_jobs_are_not_held_for_memory(tmp_path):
    p = load(tmp_path, POLICY, fragments=["10-aerie-execute.conf", "50-aerie-hold-policy.conf"])
    assert evaluate(p["WANT_HOLD"], running_slot(), running_job(JobUniverse=13, MemoryUsage=9999)) is False


def test_disabled_policy_keeps_htcondors_defaults(tmp_path):
    p = load(tmp_path, POLICY, fragments=["10-aerie-execute.conf", "50-aerie-hold-policy.conf"],
             condor_worker_hold_memory_enabled=False, condor_worker_hold_disk_enabled=False,
             condor_worker_hold_runtime_enabled=False)
    assert p["PREEMPT"] == "False"
    assert p["WANT_HOLD"] is None
    # The role's own retirement (an hour by default), not a hold rule's.
    assert p["MAXJOBRETIREMENTTIME"] == "3600"


# --- Schedd-side policy: the site's proven example -----------------------------

EXAMPLE = REPO / "inventories" / "example" / "group_vars" / "access_points" / "condor_schedd_policy.yml"


def schedd_policy(tmp_path):
    site = _yaml(EXAMPLE)
    return load(tmp_path, ["SYSTEM_PERIODIC_HOLD", "SYSTEM_PERIODIC_HOLD_REASON", "SYSTEM_PERIODIC_REMOVE"],
                fragments=["60-aerie-schedd-policy.conf"], **site)


def job_ad(**attrs):
    # Daemons define CurrentTime as time() when they evaluate a job's policy.
    return {"CurrentTime": classad2.ExprTree("time()"), **attrs}


def test_site_schedd_policy_holds_with_its_exact_message(tmp_path):
    p = schedd_policy(tmp_path)
    job = job_ad(JobStatus=2, ResidentSetSize=1620340, DiskUsage=1000)
    assert evaluate(p["SYSTEM_PERIODIC_HOLD"], job) is True
    assert evaluate(p["SYSTEM_PERIODIC_HOLD_REASON"], job) == (
        "Job in status 2 put on hold by SYSTEM_PERIODIC_HOLD due to memory usage 1620340.")
    disk = job_ad(JobStatus=2, ResidentSetSize=1000, DiskUsage=200000000)
    assert evaluate(p["SYSTEM_PERIODIC_HOLD_REASON"], disk) == (
        "Job in status 2 put on hold by SYSTEM_PERIODIC_HOLD due to disk usage 200000000.")
    assert evaluate(p["SYSTEM_PERIODIC_HOLD"], job_ad(JobStatus=2, ResidentSetSize=1000, DiskUsage=1000)) is False


def test_site_schedd_policy_removes(tmp_path):
    p = schedd_policy(tmp_path)
    now = int(time.time())
    remove = p["SYSTEM_PERIODIC_REMOVE"]
    assert evaluate(remove, job_ad(JobStatus=5, EnteredCurrentStatus=now - 7 * 3600, JobRunCount=1)) is True
    assert evaluate(remove, job_ad(JobStatus=5, EnteredCurrentStatus=now - 3600, JobRunCount=1)) is False
    assert evaluate(remove, job_ad(JobStatus=2, EnteredCurrentStatus=now - 3 * 86400, JobRunCount=1)) is True
    assert evaluate(remove, job_ad(JobStatus=5, EnteredCurrentStatus=now, JobRunCount=10)) is True
    missing_input = job_ad(JobStatus=5, EnteredCurrentStatus=now, JobRunCount=1, HoldReasonCode=14,
                           HoldReasonSubCode=2)
    assert evaluate(remove, missing_input) is True
