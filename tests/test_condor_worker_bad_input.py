"""Bad input to condor_worker fails before any change, naming the variable.

One ansible-playbook run applies the role to one local "host" per case; only
the role's argument validation and assertions run (they are tagged always;
the run asks for a tag nothing else has, in check mode), so nothing on this
machine changes whatever the outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

CASES = {
    "fine": {},
    # The same trees on 25.5 where an Apptainer binary exists pass.
    "fine_chroots_on_25_5_with_apptainer": ({"htcondor_version": "25.5", "chroot_named_chroots": {"SL5": "/chroot/sl5"},
                                             "condor_worker_apptainer_path": "/bin/sh"}, None),
    "bool_not_bool": ({"condor_worker_partitionable_slot": "maybe"}, "condor_worker_partitionable_slot"),
    "list_not_list": ({"condor_worker_mount_under_scratch": {"a": 1}}, "condor_worker_mount_under_scratch"),
    "int_not_int": ({"condor_worker_hold_disk_cap_kb": "lots"}, "condor_worker_hold_disk_cap_kb"),
    "soft_cgroup_policy": ({"cgroups_condor_knobs": {"CGROUP_MEMORY_LIMIT_POLICY": "soft"}},
                           "condor_worker_cgroup_knobs"),
    "custom_without_expr": ({"condor_worker_cgroup_knobs": {"CGROUP_MEMORY_LIMIT_POLICY": "custom"}},
                            "condor_worker_cgroup_knobs"),
    "relative_scratch": ({"condor_worker_mount_under_scratch": ["/tmp", "var/tmp"]},
                         "condor_worker_mount_under_scratch"),
    "zero_disk_cap": ({"condor_worker_hold_disk_cap_kb": 0}, "condor_worker_hold_disk_cap_kb must be a positive"),
    "negative_memory_cap": ({"condor_worker_hold_memory_cap_mb": -1},
                            "condor_worker_hold_memory_cap_mb must be a positive"),
    "squid_without_port": ({"squid_client_location": "squid.example.org"}, "condor_worker_squid_location"),
    "relative_chroot": ({"chroot_named_chroots": {"SL5": "chroot/sl5"}}, "condor_worker_named_chroots"),
    "multiline_knob": ({"condor_worker_extra_knobs": {"A": "1\nB = 2"}}, "condor_worker_extra_knobs"),
    # The central manager has no default: a run without one names it.
    "no_central_manager": ({"htcondor_central_manager": None}, "htcondor_central_manager"),
    "central_manager_with_space": ({"htcondor_central_manager": "cm example"}, "htcondor_central_manager"),
    # A second word would install another package at the pin.
    "package_version_with_space": ({"htcondor_package_version": "25.0.13-1 condor-debug"},
                                   "htcondor_package_version"),
    # A graceful drain would evict at once (vacate time 600 s by default).
    "retirement_below_vacate_time": ({"condor_worker_max_job_retirement_seconds": 600},
                                     "condor_worker_max_job_retirement_seconds (600) must be 0 or more than"),
    # HTCondor 25.5 has no NAMED_CHROOT: chroot names need Apptainer there.
    "chroots_on_25_5_without_apptainer": ({"htcondor_version": "25.5", "chroot_named_chroots": {"SL5": "/chroot/sl5"},
                                           "condor_worker_apptainer_path": "/nonexistent/apptainer"},
                                          "no NAMED_CHROOT (gone in 25.5) and runs such trees only through Apptainer"),
    "package_version_not_a_version": ({"htcondor_package_version": "latest"}, "htcondor_package_version"),
}
# Every case but the one without it names a central manager (the htcondor role requires one).
POOL = {"htcondor_central_manager": "cm.example.org", "htcondor_token_issuer": ""}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_input")
    hosts = {}
    for case, spec in CASES.items():
        variables = {**POOL, **(spec[0] if spec else {})}
        variables = {k: v for k, v in variables.items() if v is not None}
        hosts[case] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **variables}
    (tmp / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (tmp / "play.yml").write_text(yaml.safe_dump([{
        "name": "Bad input", "hosts": "all", "gather_facts": True, "gather_subset": ["!all", "min"],
        "roles": [{"role": "condor_worker"}],
    }]))
    (tmp / "ansible.cfg").write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(tmp / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
           "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "inventory.yml"), "--check",
         "--tags", "aerie_validation_only", str(tmp / "play.yml")],
        env=env, capture_output=True, text=True, check=False,
    )
    report = json.loads(proc.stdout)
    failures = {}
    for task in report["plays"][0]["tasks"]:
        for host, result in task["hosts"].items():
            if result.get("failed"):
                failures[host] = json.dumps(result)
    return report["stats"], failures


FINE = [c for c in CASES if c.startswith("fine")]


@pytest.mark.parametrize("case", FINE)
def test_valid_input_passes_validation(outcomes, case):
    stats, failures = outcomes
    assert case not in failures, failures.get(case)
    assert stats[case]["failures"] == 0 and stats[case]["changed"] == 0


@pytest.mark.parametrize("case", [c for c in CASES if c not in FINE])
def test_bad_input_fails_naming_the_variable(outcomes, case):
    stats, failures = outcomes
    assert case in failures, f"{case} was accepted"
    assert CASES[case][1] in failures[case]
    assert stats[case]["changed"] == 0
