"""Each tag of the condor_vm role alone changes nothing on the converged node (issue 13).

No change, no failure, the VM universe fragment, the fact, the plugin and
libvirtd's drop-in byte-identical, libvirtd not restarted.
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra

SCENARIO = Path(__file__).resolve().parent.parent
FILES = ["/etc/condor/config.d", "/etc/ansible/facts.d/condor_vm.fact", "/etc/aerie",
         "/etc/systemd/system/libvirtd.service.d", "/usr/local/libexec/aerie-vm-nfs-plugin"]
LIBVIRTD = "systemctl show -p MainPID -p ExecMainStartTimestampMonotonic libvirtd"


def test_each_tag_alone_changes_nothing():
    tags = aerie_testinfra.role_tags("condor_vm")
    assert tags == ["condor_vm_install", "condor_vm_config"]
    problems = aerie_testinfra.tags_alone(SCENARIO / "converge.yml", tags, FILES, watch=[LIBVIRTD])
    assert not problems, "\n".join(problems)
