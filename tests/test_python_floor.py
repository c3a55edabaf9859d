"""aerie refuses a node whose Python is older than 3.9, before any change.

The real thing: site.yml's first play (playbooks/common.yml) against a host
whose interpreter is a real older CPython (pyenv's builds on this machine),
and the pure version logic of the aerie_python_floor action beside it.
"""

from __future__ import annotations

import glob
import subprocess
import sys

import pytest
import yaml
from aerie_testutil import REPO, ansible_playbook
from ansible_collections.aerie.grid.plugins.action.aerie_python_floor import below_floor, message, parse_version


def interpreter(minor: str) -> str:
    """A real CPython 3.<minor> (pyenv's, as scripts/bootstrap finds 3.9)."""
    found = sorted(glob.glob(f"/root/.pyenv/versions/3.{minor}.*/bin/python3.{minor}"))
    assert found, f"this test needs a real Python 3.{minor} (pyenv install 3.{minor})"
    return found[-1]


def run_common(tmp_path, python: str, programs: str = "/usr/bin/python3", *extra: str):
    """playbooks/common.yml (site.yml's first play) on one local host using ``python``."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"old-node": {
        "ansible_connection": "local", "ansible_python_interpreter": python,
    }}}}))
    return ansible_playbook("-i", str(inventory), "-e", f"aerie_node_programs_interpreter={programs}",
                            *extra, str(REPO / "playbooks/common.yml"))


@pytest.mark.parametrize("minor", ["6", "8"])
def test_a_node_on_an_older_python_is_refused_naming_it_before_any_change(tmp_path, minor):
    python = interpreter(minor)
    version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    done = run_common(tmp_path, python)
    assert done.returncode != 0
    out = done.stdout
    assert f"{python} (Ansible's interpreter) is Python {version}" in out, out
    assert "aerie needs Python 3.9 or newer" in out and "python39" in out, out
    assert "Nothing was changed" in out
    # Only the controller-side checks ran before it: no facts gathered, nothing written.
    assert "Gathering Facts" not in out and "Configure" not in out
    assert "changed=0 " in out and "failed=1 " in out, out
    assert "deserialization" not in out


def test_node_programs_on_an_older_python3_are_refused_too(tmp_path):
    old = interpreter("8")
    done = run_common(tmp_path, interpreter("9"), old)
    assert done.returncode != 0
    assert f"{old} (aerie's node programs) is Python 3.8" in done.stdout, done.stdout
    assert "Ansible's interpreter) is" not in done.stdout


def test_a_node_on_python_3_9_passes_and_the_play_goes_on(tmp_path):
    done = run_common(tmp_path, interpreter("9"), interpreter("9"), "--check", "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is Python 3.9." in done.stdout


def test_a_missing_interpreter_is_named(tmp_path):
    done = run_common(tmp_path, str(tmp_path / "no-python"))
    assert done.returncode != 0
    assert f"{tmp_path / 'no-python'} (Ansible's interpreter) does not run" in done.stdout, done.stdout


def test_this_controllers_own_python_passes(tmp_path):
    done = run_common(tmp_path, sys.executable, "/usr/bin/python3", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_version_arithmetic():
    assert parse_version("3.9.18") == (3, 9, 18)
    assert parse_version("Python 3.9") is None
    floor = (3, 9)
    assert below_floor({"a": "3.9.0", "b": "3.11.2", "c": "3.10.1"}, floor) == {}
    assert below_floor({"a": "3.8.18", "b": "2.7.18", "c": None, "d": "junk"}, floor) == {
        "a": "is Python 3.8.18", "b": "is Python 2.7.18", "c": "does not run (no Python there)",
        "d": "does not run (no Python there)"}
    text = message("n1", {"a": "/usr/bin/python3"}, {"a": "is Python 3.6.8"}, floor)
    assert text.startswith("n1: aerie needs Python 3.9 or newer on its nodes; /usr/bin/python3 (a) is Python 3.6.8.")
