"""Fail when a variable named after the calling role is one its argument spec does not know.

Ansible's own argument spec validation only checks the variables a spec
names; a misspelt one (``condor_worker_centrl_manager``) is silently
ignored and the default wins. This action runs as the first task of a role
(``aerie_role_vars:`` with ``tags: [always]``), looks at every variable the
host sees (inventory, group_vars, play and role vars, extra vars, facts) and
fails, before any change, naming each ``<role>_`` variable that
``meta/argument_specs.yml`` does not know and the closest name it does know.

Not judged: ``<role>__`` internals, variables of a role whose name is a
longer match (``squid_client_location`` belongs to ``squid_client``, not to
``squid``), and the names the role itself publishes for other roles (facts,
registered results), which the role lists in the task's ``published``
argument.

The pure logic (``owning_role``, ``unknown_variables``, ``message``) is
unit-tested in tests/test_aerie_role_vars.py.
"""

from __future__ import annotations

import difflib
import os

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase


def owning_role(name: str, role_names) -> str | None:
    """The role a variable is named after: the longest role name that prefixes it with ``_``."""
    owners = [role for role in role_names if name.startswith(role + "_")]
    return max(owners, key=len) if owners else None


def closest(name: str, role: str, known, elsewhere=(), role_names=()) -> str | None:
    """The known name most like ``name``, compared without the shared ``<role>_`` prefix.

    Without a close one in the role, another role's variable of the same
    suffix wins (a variable that moved: ``condor_worker_central_manager``
    -> ``htcondor_central_manager``); failing that, the role's least unlike.
    """
    prefix = role + "_"
    suffix = name[len(prefix):]
    own = {k[len(prefix):]: k for k in known if k.startswith(prefix)}
    match = difflib.get_close_matches(suffix, list(own), n=1, cutoff=0.6)
    if match:
        return own[match[0]]
    moved = sorted({f"{other}_{suffix}" for other in role_names if other != role} & set(elsewhere))
    if moved:
        return moved[0]
    match = difflib.get_close_matches(suffix, list(own), n=1, cutoff=0.0)
    return own[match[0]] if match else None


def unknown_variables(names, role: str, role_names, known, published=(), elsewhere=()) -> dict[str, str | None]:
    """Each variable of ``role`` among ``names`` that is neither known nor published, with its closest known name.

    ``elsewhere``: the variables other roles know, for variables that moved.
    """
    role_names = set(role_names) | {role}
    accepted = set(known) | set(published)
    unknown = {}
    for name in sorted(names):
        if name.startswith(role + "__") or name in accepted:
            continue
        if owning_role(name, role_names) != role:
            continue
        unknown[name] = closest(name, role, known, elsewhere, role_names)
    return unknown


def message(role: str, unknown: dict[str, str | None]) -> str:
    """One line naming every unknown variable and its closest known name."""
    parts = [
        f"{name} (closest known name: {suggestion})" if suggestion else f"{name} (the role knows no variables)"
        for name, suggestion in unknown.items()
    ]
    return (
        f"role {role}: unknown variable{'s' if len(parts) > 1 else ''} {', '.join(parts)}; "
        f"roles/{role}/meta/argument_specs.yml lists the variables the role reads"
    )


def spec_options(argument_specs) -> set[str]:
    """Every top-level option of every entry point of an argument spec."""
    known = set()
    for entry_point in (argument_specs or {}).values():
        known.update((entry_point or {}).get("options") or {})
    return known


class ActionModule(ActionBase):
    """Check the calling role's variables against its argument spec; changes nothing."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        role = self._task._role
        if role is None:
            raise AnsibleError("aerie_role_vars checks a role's variables: call it from a role's tasks")
        name = role.get_name(include_role_fqcn=False)
        role_path = role.get_role_path()

        known = spec_options(self._load_specs(role_path))
        published = self._task.args.get("published") or []
        if not isinstance(published, list) or set(self._task.args) - {"published"}:
            raise AnsibleError("aerie_role_vars takes one optional argument: published, a list of variable names")
        role_names = self._role_names(role_path, task_vars)
        unknown = unknown_variables(task_vars, name, role_names, known, published)
        if unknown:
            elsewhere = self._known_elsewhere(role_path)
            unknown = unknown_variables(unknown, name, role_names, known, published, elsewhere)

        result.update(changed=False, unknown=unknown)
        if unknown:
            result.update(failed=True, msg=message(name, unknown))
        else:
            result["msg"] = f"role {name}: every {name}_ variable is one the role knows"
        return result

    def _load_specs(self, role_path):
        for ext in (".yml", ".yaml"):
            path = os.path.join(role_path, "meta", "argument_specs" + ext)
            if os.path.exists(path):
                return (self._loader.load_from_file(path) or {}).get("argument_specs") or {}
        meta = os.path.join(role_path, "meta", "main.yml")
        if os.path.exists(meta):
            return (self._loader.load_from_file(meta) or {}).get("argument_specs") or {}
        raise AnsibleError(f"{role_path} has no argument spec to check the role's variables against")

    def _known_elsewhere(self, role_path):
        """The variables the argument specs of the roles beside this one know."""
        parent = os.path.dirname(os.path.realpath(role_path))
        known = set()
        for entry in sorted(os.listdir(parent)):
            other = os.path.join(parent, entry)
            if other != os.path.realpath(role_path) and os.path.isdir(os.path.join(other, "meta")):
                try:
                    known |= spec_options(self._load_specs(other))
                except AnsibleError:
                    continue
        return known

    @staticmethod
    def _role_names(role_path, task_vars):
        """The roles beside this one and the roles of the play: any may own a longer prefix."""
        parent = os.path.dirname(os.path.realpath(role_path))
        names = {entry for entry in os.listdir(parent) if os.path.isdir(os.path.join(parent, entry))}
        names.update(str(r).rsplit(".", 1)[-1] for r in task_vars.get("ansible_role_names") or [])
        return names
