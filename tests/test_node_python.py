"""Everything that runs on a node is tested on the node's oldest Python too.

scripts/aerie unit runs the test files listed in tests/node_python.txt a
second time on Python 3.9 (EL 9's Python; EL 8 with AppStream's python39).
This keeps the list honest: each module, module_utils file and program a
role installs is named by at least one listed file, and each listed file
exists. A program nobody tests on 3.9 is how `isinstance(v, int | float)`
reached the VM transfer plugin.
"""

from __future__ import annotations

import re

from aerie_testutil import REPO

LISTED = [REPO / line.strip() for line in (REPO / "tests/node_python.txt").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]

# Action plugins do the work of these modules on the controller; the module
# file holds only the documentation ansible-doc reads.
CONTROLLER_ONLY = {"aerie_python_floor", "aerie_role_vars"}
# Programs of roles that run on Debian 12 hosts only (their assert.yml refuses
# any other), so the oldest Python they meet is Debian 12's 3.11, whose
# packaged OpenStack clients they import.
DEBIAN12_ONLY = {"roles/openstack_controller/files/aerie-openstack-catalog"}


def node_programs() -> list[str]:
    """Paths (relative to the checkout) of the Python that runs on nodes."""
    found = [p for p in (*REPO.glob("library/*.py"), *REPO.glob("module_utils/*.py"))
             if p.stem not in CONTROLLER_ONLY]
    for path in (*REPO.glob("roles/*/files/*"), REPO / "scripts/aerie-release"):
        if path.is_file() and re.match(r"#!.*python", path.read_text(errors="replace").split("\n", 1)[0]):
            found.append(path)
    return sorted(str(p.relative_to(REPO)) for p in found)


def test_every_listed_test_file_exists():
    missing = [str(p) for p in LISTED if not p.is_file()]
    assert not missing, f"tests/node_python.txt lists files that do not exist: {missing}"


def test_every_node_program_is_exercised_by_a_node_python_test():
    texts = "\n".join(p.read_text() for p in LISTED if p.is_file())
    programs = node_programs()
    assert "roles/condor_vm/files/aerie-vm-nfs-plugin" in programs  # the finder sees scripts without .py
    untested = [p for p in programs
                if p.rsplit("/", 1)[-1].removesuffix(".py") not in texts and p not in DEBIAN12_ONLY]
    assert not untested, f"node-side code no test in tests/node_python.txt names: {untested}"


def test_the_debian12_only_programs_belong_to_roles_that_refuse_other_systems():
    for program in DEBIAN12_ONLY:
        role = program.split("/")[1]
        checks = (REPO / "roles" / role / "tasks" / "assert.yml").read_text()
        assert "ansible_facts['distribution'] | default('') == 'Debian'" in checks
        assert "ansible_facts['distribution_major_version'] | default('') == '12'" in checks


def test_the_controller_only_modules_really_are_documentation():
    for name in CONTROLLER_ONLY:
        code = (REPO / "library" / f"{name}.py").read_text()
        assert "def main" not in code and (REPO / "plugins/action" / f"{name}.py").is_file()
