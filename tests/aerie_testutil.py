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
