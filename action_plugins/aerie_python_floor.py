"""Fail, before any module runs, on a node whose Python aerie cannot run on.

ansible-core 2.19 runs modules on Python 3.8 and newer; on an older
interpreter (EL 8's platform Python is 3.6) every module dies with "Module
result deserialization failed", which names neither the interpreter nor the
way out. aerie's node programs (the transfer plugins, aerie-fetch, the
health probe) run /usr/bin/python3 from their shebang. This action finds
the interpreter Ansible will use (the configured one, or the discovered one,
by Ansible's own discovery), asks both it and the programs' interpreter for
their version with a raw command (no module, so it works on any Python),
and fails naming each one below the floor and what to do.

The version arithmetic (``parse_version``, ``below_floor``, ``message``) is
pure and unit-tested in tests/test_python_floor.py, beside runs against real
3.6, 3.8 and 3.9 interpreters.
"""

from __future__ import annotations

import shlex

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.executor.interpreter_discovery import discover_interpreter
from ansible.plugins.action import ActionBase

# Prints "3.9.18"; valid on Python 2 and 3, so an old interpreter answers too.
PROBE = "import sys; sys.stdout.write('%d.%d.%d' % tuple(sys.version_info[:3]))"
ADVICE = ("On EL 8: dnf install python39, then `alternatives --set python3 /usr/bin/python3.9` "
          "(or set ansible_python_interpreter for Ansible alone).")


def parse_version(text: str) -> tuple[int, ...] | None:
    """(3, 9, 18) from "3.9.18"; None for anything else."""
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        return None


def below_floor(found: dict[str, str | None], floor: tuple[int, ...]) -> dict[str, str]:
    """Each role -> what is wrong, for the interpreters that are missing or older than the floor."""
    wrong = {}
    for role, answer in found.items():
        version = parse_version(answer) if answer else None
        if version is None:
            wrong[role] = "does not run (no Python there)"
        elif version[:len(floor)] < floor:
            wrong[role] = f"is Python {answer}"
    return wrong


def message(host: str, paths: dict[str, str], wrong: dict[str, str], floor: tuple[int, ...]) -> str:
    floor_text = ".".join(map(str, floor))
    parts = [f"{paths[role]} ({role}) {what}" for role, what in wrong.items()]
    return (f"{host}: aerie needs Python {floor_text} or newer on its nodes; " + "; ".join(parts)
            + f". Nothing was changed. {ADVICE}")


class ActionModule(ActionBase):
    """Check the node's interpreters against aerie's Python floor; changes nothing."""

    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        if set(args) - {"minimum", "programs_interpreter"}:
            raise AnsibleError("aerie_python_floor takes minimum and programs_interpreter")
        floor = parse_version(str(args.get("minimum", "3.9")))
        if not floor:
            raise AnsibleError(f"aerie_python_floor: minimum must read like 3.9, not {args.get('minimum')!r}")
        paths = {
            "Ansible's interpreter": self._ansible_interpreter(task_vars, result),
            "aerie's node programs": args.get("programs_interpreter", "/usr/bin/python3"),
        }
        # Each interpreter asked once (usually both roles name the same one).
        answers = {path: self._version_of(path) for path in set(paths.values())}
        found = {role: answers[path] for role, path in paths.items()}
        wrong = below_floor(found, floor)
        result.update(changed=False, interpreters={paths[role]: found[role] for role in paths})
        if wrong:
            result.update(failed=True, msg=message(task_vars.get("inventory_hostname", "?"), paths, wrong, floor))
        else:
            result["msg"] = ", ".join(f"{paths[r]} is Python {found[r]}" for r in paths)
        return result

    def _version_of(self, path):
        """ "3.9.18" as the interpreter at path prints it, None when it does not run."""
        res = self._low_level_execute_command(f"{shlex.quote(path)} -c {shlex.quote(PROBE)}", sudoable=False)
        return res.get("stdout", "").strip() if res.get("rc") == 0 else None

    def _ansible_interpreter(self, task_vars, result):
        """The interpreter Ansible's modules will run on, found as Ansible finds it."""
        configured = C.config.get_config_value("INTERPRETER_PYTHON", variables=task_vars)
        configured = self._templar.template(configured) if configured else configured
        if configured and not str(configured).startswith("auto"):
            return str(configured)
        facts = task_vars.get("ansible_facts", {})
        discovered = facts.get("discovered_interpreter_python")
        if not discovered:
            discovered = discover_interpreter(action=self, interpreter_name="python",
                                              discovery_mode=str(configured or "auto"), task_vars=task_vars)
            # As a module run would: later tasks reuse the discovery.
            result["ansible_facts"] = {"discovered_interpreter_python": discovered}
        return str(discovered)
