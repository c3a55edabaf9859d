"""Helpers shared by the unit tests (importable on Python 3.9: tests/test_old_python.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
# Where ansible, ansible-playbook and ansible-galaxy are: beside the Python
# running the tests, or (when the node-side tests run under a target's older
# Python, scripts/aerie unit) the controller's venv. Modules then run on
# the test's Python as their target interpreter (ansible_python_interpreter).
CONTROLLER_BIN = Path(os.environ.get("AERIE_CONTROLLER_BIN") or Path(sys.executable).parent)


def load_script(relpath: str, name: str | None = None) -> ModuleType:
    """Import a Python script without a .py suffix (scripts/lab, a plugin) as a module."""
    path = REPO / relpath
    name = name or path.name.replace("-", "_")
    loader = SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def isolated_ansible_env(tmp_path: Path, defaults: str = "") -> dict[str, str]:
    """Environment for Ansible run from the tests on this machine: this checkout's roles and plugins,
    JSON output, and an ansible.cfg of its own in ``tmp_path`` (not the checkout's: its lab inventory
    has no localhost, its fact cache is on disk) with ``defaults`` as its [defaults] body."""
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n" + defaults)
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOCALHOST_WARNING": "0",
    }


def ansible_playbook(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run this checkout's ansible-playbook with its ansible.cfg; plain output, results as JSON."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        **(env or {}),
    }
    return subprocess.run(
        [str(CONTROLLER_BIN / "ansible-playbook"), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout,
    )
