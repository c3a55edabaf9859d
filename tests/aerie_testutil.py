"""Helpers shared by the unit tests."""

import importlib.util
import os
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


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
    } | (env or {})
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout,
    )
