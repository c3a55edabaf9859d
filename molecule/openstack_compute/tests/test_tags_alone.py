"""Each tag of the openstack_compute role alone changes nothing on the converged node (issue 13).

No change, no failure, nova's configuration and the unit drop-ins
byte-identical, nova-compute and libvirtd not restarted.
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra

SCENARIO = Path(__file__).resolve().parent.parent
FILES = ["/etc/nova", "/var/lib/aerie/openstack_compute", "/etc/systemd/system/nova-compute.service.d",
         "/etc/systemd/system/libvirtd.service.d"]
WATCH = [f"systemctl show -p MainPID -p ExecMainStartTimestampMonotonic {unit}"
         for unit in ("nova-compute", "libvirtd")]


def test_each_tag_alone_changes_nothing():
    tags = aerie_testinfra.role_tags("openstack_compute")
    assert tags == ["openstack_compute_install", "openstack_compute_config", "openstack_compute_service"]
    problems = aerie_testinfra.tags_alone(SCENARIO / "converge.yml", tags, FILES, group="compute_nodes", watch=WATCH)
    assert not problems, "\n".join(problems)
