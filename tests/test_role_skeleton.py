"""Every role follows the one role skeleton of roles/README.md, so drift cannot come back.

tasks/main.yml is, in this order and with only the steps a role has:

    role-variable check (always)
    assert.yml   argument checks argument_specs cannot express (always)
    OS assert, OS variables (always; roles with vars/<os_family>.yml)
    probe.yml    read-only probes every later step needs (always)
    install.yml  <role>_install
    config.yml   <role>_config
    service.yml  <role>_service
    handoff.yml  facts the role publishes for other roles (always)

Everything a later step needs runs under ``always``, so that any one tag
renders the same files as a full run (issue 13: ``--tags
condor_worker_config`` skipped the cgroups hand-off and rendered an empty
cgroup fragment). The apt index refresh is written once, in aerie_node.
"""

import re

import pytest
import yaml
from aerie_testutil import REPO

ROLES = sorted(p.parent.parent.name for p in REPO.glob("roles/*/tasks/main.yml"))
CHECK = "aerie.grid.aerie_role_vars"
STEPS = ["assert", "probe", "install", "config", "service", "handoff"]
ALWAYS = {"assert", "probe", "handoff"}
NAMES = {
    "assert": "Check what argument_specs cannot express",
    "probe": "Probe what every later step needs",
    "install": "Install",
    "config": "Configure",
    "service": "Run the services",
    "handoff": "Hand the published facts to the other roles",
}
OS_TASKS = [
    ("Ensure the node's OS is one the role supports", "ansible.builtin.assert"),
    ("Load the OS variables", "ansible.builtin.include_vars"),
]
# Names a role's argument checks used to have (issue 13); an entry point may
# keep one only as a thin import of assert.yml.
OLD_CHECK_FILES = ["validate.yml", "validation.yml", "checks.yml"]
APT_REFRESH = "roles/aerie_node/tasks/apt_refresh.yml"
# Rewritten elsewhere at the time of writing; it moves to the shared refresh then.
APT_REFRESH_PENDING = {"roles/drift_check/tasks/install.yml"}


def _tasks(role, name="main.yml"):
    return yaml.safe_load((REPO / "roles" / role / "tasks" / name).read_text()) or []


def _action(task):
    return next(k for k in task if k.startswith(("ansible.builtin.", "aerie.grid.")))


def _os_families(role):
    return sorted(p.stem for p in (REPO / "roles" / role / "vars").glob("*.yml") if p.stem != "main")


def test_every_role_is_found():
    assert len(ROLES) >= 11 and {"cgroups", "condor_worker", "htcondor", "squid"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_main_is_the_skeleton(role):
    tasks = _tasks(role)
    assert CHECK in tasks[0] and tasks[0]["tags"] == ["always"], "the role-variable check comes first, always"
    rest = tasks[1:]
    families = _os_families(role)
    if families:
        # The OS step follows the argument checks (or the role-variable check).
        at = 1 if rest and rest[0].get("ansible.builtin.import_tasks") == "assert.yml" else 0
        head = rest[at:at + len(OS_TASKS)]
        rest = rest[:at] + rest[at + len(OS_TASKS):]
        assert [(t.get("name"), _action(t)) for t in head] == OS_TASKS
        assert all(t.get("tags") == ["always"] for t in head)
        assert head[1]["ansible.builtin.include_vars"] == "{{ ansible_facts['os_family'] }}.yml"
        that = head[0]["ansible.builtin.assert"]["that"]
        assert re.fullmatch(r"ansible_facts\['os_family'\] \| default\(''\) in \[.*\]", that), that
        for family in families:
            assert f"'{family}'" in that, f"vars/{family}.yml is never loaded"
    steps = []
    for task in rest:
        assert set(task) == {"name", "ansible.builtin.import_tasks", "tags"}, (
            f"{task.get('name')}: a step is a plain import_tasks with tags (conditions go inside the step file)")
        step = task["ansible.builtin.import_tasks"].removesuffix(".yml")
        assert step in STEPS, f"{task['ansible.builtin.import_tasks']} is not a skeleton step"
        assert task["name"] == NAMES[step]
        want = ["always"] if step in ALWAYS else [role, f"{role}_{step}"]
        assert task["tags"] == want, f"{step}.yml must be tagged {want}"
        assert (REPO / "roles" / role / "tasks" / f"{step}.yml").is_file()
        steps.append(step)
    assert steps == [s for s in STEPS if s in steps], f"steps out of order: {steps}"
    assert steps, "a role without steps"


@pytest.mark.parametrize("role", ROLES)
def test_no_step_file_exists_outside_the_skeleton(role):
    """A skeleton file the role has is imported by main.yml, so no step hides from its tag.

    Except an entry point of meta/argument_specs.yml that main does not run
    (htcondor's service, started by the roles that configure the daemons).
    """
    imported = {t.get("ansible.builtin.import_tasks") for t in _tasks(role)}
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    for step in STEPS:
        if (REPO / "roles" / role / "tasks" / f"{step}.yml").is_file() and step not in specs:
            assert f"{step}.yml" in imported, f"tasks/{step}.yml is not imported by main.yml"


@pytest.mark.parametrize("role", ROLES)
def test_argument_checks_live_in_assert_yml(role):
    for name in OLD_CHECK_FILES:
        path = REPO / "roles" / role / "tasks" / name
        if path.is_file():
            tasks = _tasks(role, name)
            assert [_action(t) for t in tasks] == ["ansible.builtin.import_tasks"], (
                f"tasks/{name}: checks go to assert.yml; {name} may only be an entry point importing it")
            assert tasks[0]["ansible.builtin.import_tasks"] == "assert.yml"
    # No check hides in main.yml: asserts are in assert.yml (or the OS step).
    asserts = [t for t in _tasks(role) if "ansible.builtin.assert" in t]
    assert [t["name"] for t in asserts] in ([], [OS_TASKS[0][0]])


def test_the_apt_index_refresh_is_written_once():
    written = set()
    for path in REPO.glob("roles/*/tasks/**/*.yml"):
        if re.search(r"^\s*update_cache:", path.read_text(), re.M):
            written.add(str(path.relative_to(REPO)))
    assert written - APT_REFRESH_PENDING == {APT_REFRESH}
    refresh = yaml.safe_load((REPO / APT_REFRESH).read_text())[-1]
    assert refresh["name"] == "Refresh the package index when older than a day"
    assert refresh["check_mode"] is False and refresh["changed_when"] is False


def test_roles_use_the_shared_refresh_the_same_way():
    users = []
    for path in REPO.glob("roles/*/tasks/**/*.yml"):
        for match in re.finditer(r"^(\s*)ansible\.builtin\.(\w+)_role:\n((?:\1\s+.*\n)+)", path.read_text(), re.M):
            if "tasks_from: apt_refresh" in match.group(3):
                assert match.group(2) == "import", f"{path}: import_role (static: the step's tags apply)"
                assert "name: aerie.grid.aerie_node" in match.group(3), f"{path}: by FQCN (an installed collection)"
                users.append(path.parent.parent.name)
    assert {"chroot", "condor_vm", "htcondor", "openstack_compute", "squid"} <= set(users)
