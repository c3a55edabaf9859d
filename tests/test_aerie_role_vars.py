"""A misspelt role variable fails before any change, naming the closest known name.

The pure logic of action_plugins/aerie_role_vars.py is tested directly; two
real ansible-playbook runs (localhost, check mode) show the check wired into
the roles: a misspelt variable stops the run at the role's first task, and a
correct run with other roles' names and published facts passes.
"""

import json
import re
import sys

import pytest
import yaml
from aerie_testutil import REPO, ansible_playbook, load_script

plugin = load_script("action_plugins/aerie_role_vars.py", "aerie_role_vars")

ROLES = ["squid", "squid_client", "condor_worker", "condor_vm", "cgroups", "htcondor"]
KNOWN = ["condor_worker_central_manager", "condor_worker_extra_knobs", "condor_worker_slot_share_percent"]


def test_the_longest_role_name_owns_a_variable():
    assert plugin.owning_role("squid_client_location", ROLES) == "squid_client"
    assert plugin.owning_role("squid_port", ROLES) == "squid"
    assert plugin.owning_role("condor_vm_memory_mb", ROLES) == "condor_vm"
    assert plugin.owning_role("condor_memory", ROLES) is None


def test_misspelt_variable_is_named_with_the_closest_known_name():
    unknown = plugin.unknown_variables(
        ["condor_worker_centrl_manager", "condor_worker_extra_knobs", "ansible_host"], "condor_worker", ROLES, KNOWN
    )
    assert unknown == {"condor_worker_centrl_manager": "condor_worker_central_manager"}
    msg = plugin.message("condor_worker", unknown)
    assert "condor_worker_centrl_manager (closest known name: condor_worker_central_manager)" in msg


def test_a_variable_that_moved_to_another_role_is_named_there():
    elsewhere = {"htcondor_central_manager", "htcondor_centrl_manager", "squid_port"}
    moved = plugin.unknown_variables(
        ["condor_worker_central_manager"], "condor_worker", ROLES, ["condor_worker_extra_knobs"], elsewhere=elsewhere
    )
    assert moved == {"condor_worker_central_manager": "htcondor_central_manager"}
    # A close name in the role itself comes first.
    assert plugin.closest("condor_worker_centrl_manager", "condor_worker", KNOWN, elsewhere, ROLES) == (
        "condor_worker_central_manager"
    )
    # The same suffix under another role's exact prefix, not any name ending alike.
    elsewhere.add("openstack_compute_rabbit_port")
    known = ["squid_client_location"]
    assert plugin.closest("squid_client_port", "squid_client", known, elsewhere, ROLES) == "squid_port"


def test_what_the_check_leaves_alone():
    names = [
        "condor_worker_central_manager",  # known
        "condor_worker__scratch",  # internal
        "condor_vm_memory_mb",  # another role's
        "cgroups_condor_knobs",  # another role's published fact
        "condor_worker_named_chroots_seen",  # published by this role
        "squid_port",
    ]
    assert plugin.unknown_variables(names, "condor_worker", ROLES, KNOWN, ["condor_worker_named_chroots_seen"]) == {}


def test_a_shorter_role_does_not_judge_a_longer_roles_variables():
    known = ["squid_port"]
    assert plugin.unknown_variables(["squid_client_location", "squid_prot"], "squid", ROLES, known) == {
        "squid_prot": "squid_port"
    }


def test_every_entry_point_counts_and_the_message_lists_every_name():
    specs = {"main": {"options": {"chroot_trees": {}}}, "rollback": {"options": {"chroot_rollback_name": {}}}}
    known = plugin.spec_options(specs)
    assert known == {"chroot_trees", "chroot_rollback_name"}
    unknown = plugin.unknown_variables(["chroot_tres", "chroot_rollback_nam"], "chroot", ["chroot"], known)
    assert unknown == {"chroot_rollback_nam": "chroot_rollback_name", "chroot_tres": "chroot_trees"}
    assert plugin.message("chroot", unknown).startswith("role chroot: unknown variables chroot_rollback_nam")


def _roles_dir_names():
    return sorted(p.parent.parent.name for p in (REPO / "roles").glob("*/meta/argument_specs.yml"))


CHECK = "aerie.grid.aerie_role_vars"


@pytest.mark.parametrize("role", _roles_dir_names())
def test_every_role_runs_the_check_first_and_always(role):
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text())
    assert CHECK in tasks[0], f"roles/{role}/tasks/main.yml: the check is not the first task"
    assert tasks[0].get("tags") == ["always"]


def _published(role):
    check = yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text())[0][CHECK]
    return (check or {}).get("published", [])


@pytest.mark.parametrize("role", ["cgroups", "chroot", "squid_client"])
def test_facts_a_role_publishes_are_accepted(role):
    """Every fact and registered result named after the role is its input or in its published list."""
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    accepted = plugin.spec_options(specs) | set(_published(role))
    text = "\n".join(p.read_text() for p in (REPO / "roles" / role / "tasks").glob("*.yml"))
    made = set(re.findall(rf"^\s*register:\s*({role}_\w+)", text, re.M))
    for block in re.findall(r"set_fact:\n((?:\s{4,}.*\n)+)", text):
        made.update(re.findall(rf"^\s{{4}}({role}_\w+):", block, re.M))
    assert made, "the grep found nothing: the test looks in the wrong place"
    assert made <= accepted, made - accepted


def _run(tmp_path, play, *args):
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    # The memory fact cache: no facts of this machine in the checkout's .cache.
    return ansible_playbook("-i", "localhost,", "--check", str(path), *args, env={"ANSIBLE_CACHE_PLUGIN": "memory"})


def test_a_misspelt_variable_stops_the_run_before_any_change(tmp_path):
    play = [{
        "name": "A worker with two typos",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"squid_client_fetch_pth": "/usr/local/bin/fetch"},
        "roles": ["squid_client"],
    }]
    res = _run(tmp_path, play, "-e", json.dumps({"squid_client_locaton": "proxy.example.org:3128"}))
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    tasks = re.findall(r"^TASK \[(.*?)\]", res.stdout, re.M)
    # Ansible's own argument spec validation, then the check; nothing after it.
    assert len(tasks) == 2 and tasks[0].startswith("squid_client : Validating arguments"), out
    assert tasks[1] == "squid_client : Ensure every variable named after the role is one its argument spec knows", out
    assert "squid_client_fetch_pth (closest known name: squid_client_fetch_path)" in out
    assert "squid_client_locaton (closest known name: squid_client_location)" in out
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", res.stdout), out


def test_correct_variables_pass_with_other_roles_names_and_published_facts(tmp_path):
    play = [
        {
            "name": "A squid server that is also a worker",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": True,  # the squid role asserts the OS family
            "vars": {
                "ansible_python_interpreter": sys.executable,
                "squid_allowed_networks": ["10.0.0.0/8"],
                "squid_client_location": "proxy.example.org:3128",  # squid_client's, not squid's
                "squid__scratch": 1,  # an internal
                "cgroups_condor_knobs": {},  # published by cgroups
                # This machine mounts cpu and cpuacct apart (the role's probe refuses that otherwise).
                "cgroups_accept_split_cpu_cpuacct": True,
                "chroot_named_chroots": {},  # published by chroot
            },
            "roles": ["squid", "squid_client", "cgroups", "chroot"],
        }
    ]
    # Only the tasks tagged always: the checks, nothing that looks at the machine.
    res = _run(tmp_path, play, "--tags", "aerie_checks_only")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    checks = re.findall(r"^TASK \[(\w+) : Ensure every variable named after the role", res.stdout, re.M)
    assert checks == ["squid", "squid_client", "cgroups", "chroot"], out
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", res.stdout), out
