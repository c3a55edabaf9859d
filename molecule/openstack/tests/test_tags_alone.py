"""Each tag of the openstack_controller and openstack_compute roles alone changes nothing (issue 13).

No change, no failure, every rendered configuration byte-identical, no
service of the control plane or the compute node restarted. Each role's tags
run against its own hosts (--limit): the other play would only repeat its
argument checks and probes.
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra
import pytest

SCENARIO = Path(__file__).resolve().parent.parent
ROLES = {
    "openstack_controller": (
        "openstack_controllers",
        ["/etc/nova", "/etc/keystone/keystone.conf", "/etc/glance/glance-api.conf", "/etc/placement/placement.conf",
         "/etc/neutron/neutron.conf", "/etc/neutron/plugins/ml2/ml2_conf.ini", "/etc/*/*-uwsgi.ini",
         "/var/lib/aerie/openstack_controller", "/root/admin-openrc", "/usr/local/lib/aerie"],
        ("keystone", "glance-api", "placement-api", "neutron-api", "nova-api", "nova-conductor", "nova-scheduler",
         "mariadb", "rabbitmq-server"),
    ),
    "openstack_compute": (
        "compute_nodes",
        ["/etc/nova", "/var/lib/aerie/openstack_compute", "/etc/systemd/system/nova-compute.service.d",
         "/etc/systemd/system/libvirtd.service.d"],
        ("nova-compute", "libvirtd"),
    ),
}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_tag_alone_changes_nothing(role):
    group, files, units = ROLES[role]
    tags = aerie_testinfra.role_tags(role)
    assert tags == [f"{role}_install", f"{role}_config", f"{role}_service"]
    watch = [f"systemctl show -p MainPID -p ExecMainStartTimestampMonotonic {unit}" for unit in units]
    problems = aerie_testinfra.tags_alone(SCENARIO / "converge.yml", tags, files, group=group, watch=watch,
                                          extra_args=["--limit", group])
    assert not problems, "\n".join(problems)
