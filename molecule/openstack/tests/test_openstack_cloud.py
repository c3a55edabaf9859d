"""The lab control plane and the compute node, proven by what OpenStack itself reports.

The compute node registered (compute service up, hypervisor listed,
placement has its resource provider with the memory HTCondor owns kept out),
an instance boots to ACTIVE on it under software emulation and its console
log shows the guest's kernel ran, and it is deleted again. Then the whole
converge in --check --diff changes nothing and prints no password.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import aerie_testinfra
import instance_image
import pytest
import testinfra
import yaml

SCENARIO = Path(__file__).resolve().parent.parent
PASSWORDS = yaml.safe_load((SCENARIO / "group_vars" / "all" / "openstack.yml").read_text())[
    "openstack_controller_passwords"]
COMPUTE_VARS = yaml.safe_load((SCENARIO / "converge.yml").read_text())[1]["vars"]
COMPUTE = "openstack-compute"

testinfra_hosts = aerie_testinfra.hosts("openstack_controllers")


def openstack(host, command: str, fmt: bool = True):
    """The openstack client on the controller as keystone's admin; JSON when ``fmt``."""
    out = host.check_output(". /root/admin-openrc && openstack " + command + (" -f json" if fmt else ""))
    return json.loads(out) if fmt else out


def placement(host, path: str) -> dict:
    token = openstack(host, "token issue -f value -c id", fmt=False).strip()
    out = host.check_output(
        f"curl -sf -H {shlex.quote('X-Auth-Token: ' + token)} "
        f"-H 'OpenStack-API-Version: placement 1.6' http://127.0.0.1:8778{path}")
    return json.loads(out)


def test_the_compute_service_is_up(host):
    services = openstack(host, "compute service list --service nova-compute")
    assert [(s["Host"], s["State"], s["Status"]) for s in services] == [(COMPUTE, "up", "enabled")]


def test_the_hypervisor_is_listed(host):
    hypervisors = openstack(host, "hypervisor list")
    assert [(h["Hypervisor Hostname"], h["State"]) for h in hypervisors] == [(COMPUTE, "up")]


def test_placement_has_the_node_with_htcondors_memory_kept_out(host):
    providers = placement(host, "/resource_providers")["resource_providers"]
    assert [p["name"] for p in providers] == [COMPUTE]
    memory = placement(host, f"/resource_providers/{providers[0]['uuid']}/inventories")["inventories"]["MEMORY_MB"]
    # nova owns what the host (3072) and HTCondor's VMs (1024) do not.
    assert memory["reserved"] == COMPUTE_VARS["openstack_compute_reserved_host_memory_mb"] + COMPUTE_VARS[
        "condor_vm_memory_mb"]
    assert memory["allocation_ratio"] == 1.0


def test_the_compute_node_is_mapped_into_the_cell(host):
    out = host.check_output("runuser -u nova -- nova-manage cell_v2 list_hosts")
    assert COMPUTE in out and "cell1" in out


def remove_test_resources(host) -> None:
    """What the fixture below makes, gone (also what an interrupted earlier run left)."""
    host.run(". /root/admin-openrc && openstack server delete --wait aerie-vm")
    for name in ("aerie-tiny", "aerie-kernel", "aerie-ramdisk"):
        host.run(f". /root/admin-openrc && openstack image list --name {name} -f value -c ID"
                 " | xargs -r openstack image delete")
    host.run(". /root/admin-openrc && openstack flavor delete aerie.tiny")


@pytest.fixture(scope="module")
def server(host):
    """Upload the instance's kernel and ramdisk, boot it, read its console, delete it."""
    remove_test_resources(host)
    kernel, ramdisk = instance_image.build()
    ctl = "openstack-controller"
    host.run_expect([0], "mkdir -p /root/aerie-instance")
    for path in (kernel, ramdisk):
        subprocess.run(["podman", "cp", str(path), f"{ctl}:/root/aerie-instance/{path.name}"], check=True)
    host.run_expect([0], "truncate -s 1M /root/aerie-instance/root.raw")
    ids = {}
    for name, fmt, path in (("aerie-kernel", "aki", kernel.name), ("aerie-ramdisk", "ari", ramdisk.name)):
        ids[name] = openstack(host, f"image create {name} --public --disk-format {fmt} --container-format {fmt}"
                                    f" --file /root/aerie-instance/{path}")["id"]
    ids["aerie-tiny"] = openstack(host, "image create aerie-tiny --public --disk-format raw --container-format bare"
                    " --file /root/aerie-instance/root.raw"
                    f" --property kernel_id={ids['aerie-kernel']} --property ramdisk_id={ids['aerie-ramdisk']}"
                    " --property os_command_line='console=ttyS0'")["id"]
    openstack(host, "flavor create aerie.tiny --ram 128 --disk 1 --vcpus 1")
    created = openstack(host, "--os-compute-api-version 2.37 server create aerie-vm --flavor aerie.tiny"
                              f" --image {ids['aerie-tiny']} --nic none")
    # Polled by fresh clients, one request each (like --wait, but it can tell a
    # slow boot from a broken one: ERROR stops the wait).
    shown = {}
    for _ in range(150):
        shown = openstack(host, f"server show {created['id']}")
        if shown["status"] in ("ACTIVE", "ERROR"):
            break
        time.sleep(2)
    console = ""
    for _ in range(60):
        console = openstack(host, "console log show aerie-vm", fmt=False)
        if instance_image.MARKER in console:
            break
        time.sleep(2)
    node = testinfra.get_host(f"podman://{COMPUTE}")
    qemu = node.run("pgrep -a qemu-system").stdout
    domains = node.check_output("virsh -c qemu:///system list --name")
    openstack(host, f"server delete {created['id']}", fmt=False)
    for _ in range(60):
        if not openstack(host, "server list"):
            break
        time.sleep(2)
    after = {
        "servers": openstack(host, "server list"),
        "domains": node.check_output("virsh -c qemu:///system list --all --name"),
        "qemu": node.run("pgrep -a qemu-system").stdout,
    }
    yield {"created": created, "shown": shown, "console": console, "qemu": qemu, "domains": domains,
           "after": after}
    remove_test_resources(host)


def test_the_instance_reaches_active_on_the_compute_node(server):
    shown = server["shown"]
    assert shown["status"] == "ACTIVE", shown.get("fault")
    assert shown["OS-EXT-SRV-ATTR:host"] == COMPUTE
    assert shown["OS-EXT-STS:vm_state"] == "active"
    assert shown["OS-EXT-STS:power_state"] in ("Running", 1)


def test_the_instance_runs_as_an_emulated_qemu_guest(server):
    # virt_type qemu: software emulation, the only kind that boots here.
    assert "-accel tcg" in server["qemu"] or "accel=tcg" in server["qemu"], server["qemu"]
    assert server["shown"]["OS-EXT-SRV-ATTR:instance_name"] in server["domains"].split()


def test_the_console_log_shows_the_guest_booted(server):
    assert f"{instance_image.MARKER} kernel=6.1." in server["console"], server["console"][-2000:]


def test_the_deleted_instance_is_gone_everywhere(server):
    assert server["after"]["servers"] == []
    assert server["shown"]["OS-EXT-SRV-ATTR:instance_name"] not in server["after"]["domains"].split()
    assert server["after"]["qemu"] == ""


def test_a_check_diff_run_of_the_whole_converge_changes_nothing_and_prints_no_password():
    report = aerie_testinfra.run_playbook(SCENARIO / "converge.yml", "--check", "--diff")
    assert report["_returncode"] == 0, report.get("_stdout", "")[-3000:] + report["_stderr"][-3000:]
    assert {name: stats["changed"] for name, stats in report["stats"].items()} == {
        "openstack-controller": 0, COMPUTE: 0}
    text = json.dumps(report)
    secrets = [*PASSWORDS.values(), COMPUTE_VARS["openstack_compute_config_overrides"]["cinder"]["password"]]
    for password in secrets:
        assert password not in text
