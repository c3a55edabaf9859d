"""aerie's modules run by Ansible itself on the interpreter running these tests.

scripts/aerie unit runs this file twice (tests/node_python.txt): on the
controller's Python and on Python 3.9, the oldest a node has, where Ansible
(from the controller's venv) ships each module as AnsiballZ to the 3.9 as
its target interpreter. The modules the other node-side tests do not
already run through Ansible are run here in check mode, so nothing on this
machine changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from test_libvirt_host_facts import run_ansible


def run_module(tmp_path: Path, module: str, args: str = "") -> dict:
    out = run_ansible(tmp_path, "ansible", "localhost", "-c", "local", "--check",
                      "-e", f"ansible_python_interpreter={sys.executable}",
                      "-m", f"aerie.grid.{module}", *(["-a", args] if args else []))
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_the_modules_run_on_this_python():
    """What the target runs: the interpreter these tests run on (3.9 in the second pass)."""
    assert sys.version_info >= (3, 9)


def test_cgroup_info_reports_this_hosts_layout(tmp_path):
    result = run_module(tmp_path, "cgroup_info")
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert result["cgroups"]["mode"] in ("v1", "hybrid", "v2")
    assert "memory" in result["cgroups"]["controllers"]


def test_cgroup_dir_plans_a_new_cgroup_without_making_it(tmp_path):
    path = "/sys/fs/cgroup/aerie-node-python-test" if Path("/sys/fs/cgroup/cgroup.controllers").exists() \
        else "/sys/fs/cgroup/memory/aerie-node-python-test"
    result = run_module(tmp_path, "cgroup_dir", f"path={path}")
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["created"] is True
    assert not Path(path).exists()


def test_chroot_retention_on_a_root_without_trees_keeps_and_removes_nothing(tmp_path):
    result = run_module(tmp_path, "chroot_retention", f"name=sl5 root={tmp_path / 'chroot'}")
    assert result.get("failed") is not True, result
    assert (result["changed"], result["kept"], result["removed"]) == (False, [], [])


def test_chroot_release_of_a_version_never_built_fails_with_a_reason(tmp_path):
    (tmp_path / "chroot").mkdir()
    result = run_module(tmp_path, "chroot_release", f"name=sl5 version=3 root={tmp_path / 'chroot'}")
    assert result.get("failed") is True
    assert "sl5-v3" in result["msg"], result
    assert "Traceback" not in str(result)
    assert not (tmp_path / "chroot" / "sl5").exists()
