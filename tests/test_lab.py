"""scripts/lab builds the lab from the inventory; bad inventories are refused."""

import copy
import json
import subprocess

import pytest
from aerie_testutil import REPO, load_script

lab = load_script("scripts/lab")


@pytest.fixture(scope="module")
def lab_inventory():
    out = subprocess.run(
        [str(REPO / ".venv/bin/ansible-inventory"), "-i", str(REPO / "inventories/lab"), "--list"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def test_lab_inventory_is_a_complete_small_site(lab_inventory):
    settings, hosts = lab.parse_inventory(lab_inventory)
    assert settings["aerie_lab_image"] == "localhost/aerie-node:debian12"
    by_group = {}
    for name, info in hosts.items():
        for group in info["groups"]:
            by_group.setdefault(group, []).append(name)
    # Two workers, a squid, a compute node and its OpenStack control plane, a
    # management host, and the pool's central manager, which is also its access point.
    assert {g: len(v) for g, v in by_group.items()} == {
        "worker_nodes": 2, "squid_servers": 1, "compute_nodes": 1, "openstack_controllers": 1, "drift_checkers": 1,
        "central_managers": 1, "access_points": 1,
    }
    assert by_group["central_managers"] == by_group["access_points"]


def test_duplicate_address_is_refused(lab_inventory):
    raw = copy.deepcopy(lab_inventory)
    hv = raw["_meta"]["hostvars"]
    hv["lab-worker2"]["ansible_host"] = hv["lab-worker1"]["ansible_host"]
    with pytest.raises(ValueError, match="share the address"):
        lab.parse_inventory(raw)


def test_address_outside_subnet_is_refused(lab_inventory):
    raw = copy.deepcopy(lab_inventory)
    raw["_meta"]["hostvars"]["lab-squid1"]["ansible_host"] = "192.0.2.7"
    with pytest.raises(ValueError, match="outside aerie_lab_subnet"):
        lab.parse_inventory(raw)


def test_host_without_address_is_refused(lab_inventory):
    raw = copy.deepcopy(lab_inventory)
    del raw["_meta"]["hostvars"]["lab-mgmt1"]["ansible_host"]
    with pytest.raises(ValueError, match="lab-mgmt1 has no ansible_host"):
        lab.parse_inventory(raw)
