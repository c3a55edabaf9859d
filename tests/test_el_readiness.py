"""A role that says it runs on EL has what EL needs (lint over the roles' own files).

No EL machine or repository is reachable here (README, "Enterprise Linux"),
so what can be read is enforced: a role whose meta/main.yml lists EL
  - has vars/RedHat.yml beside every vars/Debian.yml, defining the same names;
  - guards every package-manager task of one family with that family's
    os_family condition (on the task, an enclosing block, or the import
    that pulls its file in), so neither family's run reaches the other's.
A role with OS variables refuses, before any change, every family it has
none for (an assert on os_family), rather than fail half-way through an
apt task.
"""

from __future__ import annotations

import re

import pytest
import yaml
from aerie_testutil import REPO

DEBIAN_ONLY = {"ansible.builtin.apt", "ansible.builtin.apt_key", "ansible.builtin.apt_repository",
               "ansible.builtin.deb822_repository", "ansible.builtin.debconf", "ansible.builtin.dpkg_selections"}
REDHAT_ONLY = {"ansible.builtin.dnf", "ansible.builtin.dnf5", "ansible.builtin.yum_repository",
               "ansible.builtin.rpm_key", "community.general.dnf_config_manager"}
FAMILY = {**dict.fromkeys(DEBIAN_ONLY, "Debian"), **dict.fromkeys(REDHAT_ONLY, "RedHat")}
ROLES = sorted(p.parent.parent for p in REPO.glob("roles/*/meta/main.yml"))


def platforms(role) -> set[str]:
    meta = yaml.safe_load((role / "meta/main.yml").read_text())
    return {p["name"] for p in meta["galaxy_info"].get("platforms", [])}


def el_roles():
    return [r for r in ROLES if "EL" in platforms(r)]


def conditions(item) -> str:
    when = item.get("when", "")
    return " ".join(when) if isinstance(when, list) else str(when)


def walk(tasks, guard=""):
    """(task, its guard: every `when` from the task up through its blocks) for each task."""
    for task in tasks or []:
        own = f"{guard} {conditions(task)}"
        for key in ("block", "rescue", "always"):
            if key in task:
                yield from walk(task[key], own)
        if not any(k in task for k in ("block", "rescue", "always")):
            yield task, own


def imported_guards(role) -> dict[str, str]:
    """Task file name -> the `when` of the import or include that pulls it in from another file."""
    found = {}
    for path in (role / "tasks").glob("*.yml"):
        for task, guard in walk(yaml.safe_load(path.read_text())):
            for key in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
                target = task.get(key)
                if isinstance(target, dict):
                    target = target.get("file")
                if isinstance(target, str) and "{{" not in target:
                    found[target] = guard
    return found


def unguarded(role) -> list[str]:
    wrong = []
    pulled_in = imported_guards(role)
    for path in sorted((role / "tasks").glob("*.yml")):
        for task, guard in walk(yaml.safe_load(path.read_text()), pulled_in.get(path.name, "")):
            family = next((FAMILY[k] for k in task if k in FAMILY), None)
            if family and not ("os_family" in guard and family in guard):
                where = path.relative_to(role.parent)
                wrong.append(f"{where}: {task.get('name')!r} ({family} only) has no {family} guard")
    return wrong


@pytest.mark.parametrize("role", el_roles(), ids=lambda r: r.name)
def test_an_el_role_has_redhat_vars_for_every_debian_name(role):
    debian = role / "vars/Debian.yml"
    if not debian.exists():
        return
    redhat = role / "vars/RedHat.yml"
    assert redhat.exists(), f"{role.name} lists EL but has no vars/RedHat.yml beside vars/Debian.yml"
    missing = set(yaml.safe_load(debian.read_text())) - set(yaml.safe_load(redhat.read_text()) or {})
    assert not missing, f"{role.name}: vars/RedHat.yml lacks {sorted(missing)}"


@pytest.mark.parametrize("role", el_roles(), ids=lambda r: r.name)
def test_an_el_roles_package_manager_tasks_are_guarded_by_os_family(role):
    assert unguarded(role) == []


OS_VARS_ROLES = [r for r in ROLES if (r / "vars/Debian.yml").exists()]


@pytest.mark.parametrize("role", OS_VARS_ROLES, ids=lambda r: r.name)
def test_a_role_with_os_variables_refuses_every_family_it_has_none_for(role):
    """Its OS assert names exactly the families of its vars files, which are those its metadata lists."""
    main = (role / "tasks/main.yml").read_text()
    asserted = re.search(r"ansible_facts\['os_family'\] \| default\(''\) in \[([^]]*)\]", main)
    assert asserted, f"{role.name} loads vars/<os_family>.yml but never refuses another family"
    families = {f.strip(" '\"") for f in asserted.group(1).split(",")}
    have_vars = {p.stem for p in (role / "vars").glob("*.yml")} & {"Debian", "RedHat"}
    declared = {"Debian"} | ({"RedHat"} if "EL" in platforms(role) else set())
    assert families == have_vars == declared


def test_the_lint_sees_an_unguarded_task(tmp_path):
    """The check itself can fail: an apt task without a guard in a fake EL role."""
    role = tmp_path / "fake"
    (role / "tasks").mkdir(parents=True)
    (role / "tasks/main.yml").write_text(yaml.safe_dump([
        {"name": "Guarded", "ansible.builtin.apt": {"name": "x"}, "when": "ansible_facts['os_family'] == 'Debian'"},
        {"name": "In a guarded block", "when": ["ansible_facts['os_family'] == 'RedHat'"],
         "block": [{"name": "Inner", "ansible.builtin.dnf": {"name": "x"}}]},
        {"name": "Bare", "ansible.builtin.apt": {"name": "x"}},
    ]))
    assert [w.split(": ", 1)[1] for w in unguarded(role)] == ["'Bare' (Debian only) has no Debian guard"]
