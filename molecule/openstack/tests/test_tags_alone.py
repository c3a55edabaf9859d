"""Each tag of the openstack_controller and openstack_compute roles alone changes nothing (issue 13).

No change, no failure, every rendered configuration byte-identical, no
service of the control plane or the compute node restarted.
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra

SCENARIO = Path(__file__).resolve().parent.parent
FILES = ["/etc/nova", "/var/lib/aerie/openstack_compute", "/etc/systemd/system/nova-compute.service.d",
         "/etc/systemd/system/libvirtd.service.d", "/etc/keystone/keystone.conf", "/etc/glance/glance-api.conf",
         "/etc/placement/placement.conf", "/var/lib/aerie/openstack_controller", "/root/admin-openrc",
         "/etc/*/*-uwsgi.ini"]
UNITS = ("nova-compute", "libvirtd", "keystone", "glance-api", "placement-api", "nova-api", "nova-conductor",
         "nova-scheduler", "mariadb", "rabbitmq-server")
WATCH = [f"systemctl show -p MainPID -p ExecMainStartTimestampMonotonic {unit}" for unit in UNITS]


def test_each_tag_alone_changes_nothing():
    tags = aerie_testinfra.role_tags("openstack_controller", "openstack_compute")
    assert tags == ["openstack_controller_install", "openstack_controller_config", "openstack_controller_service",
                    "openstack_compute_install", "openstack_compute_config", "openstack_compute_service"]
    problems = aerie_testinfra.tags_alone(SCENARIO / "converge.yml", tags, FILES, watch=WATCH)
    assert not problems, "\n".join(problems)
