"""nova-compute on a converged node: the lab controller's rabbitmq-server, the real validator.

The second half drives the role again with ansible-playbook (bad input, a
bogus option, a --check --diff run with rotated passwords) and checks that
each run fails or reports before changing anything, and never prints a
password.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aerie_testinfra
import pytest
import testinfra
import yaml

testinfra_hosts = aerie_testinfra.hosts("compute_nodes")

SCENARIO = Path(__file__).resolve().parent.parent
ROLE = SCENARIO.parent.parent / "roles" / "openstack_compute"
# The compute play's variables; its passwords are the controller's (group_vars).
CONVERGE_VARS = yaml.safe_load((SCENARIO / "converge.yml").read_text())[1]["vars"]
CONTROLLER_PASSWORDS = yaml.safe_load((SCENARIO / "group_vars" / "all" / "openstack.yml").read_text())[
    "openstack_controller_passwords"]


def resolved(name: str) -> str:
    """A compute variable's value, "{{ openstack_controller_passwords.X }}" looked up."""
    value = CONVERGE_VARS[name]
    if value.startswith("{{ openstack_controller_passwords."):
        return CONTROLLER_PASSWORDS[value.split(".", 1)[1].split()[0]]
    return value


NAMESPACES = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__openstack_compute_validator_namespaces"]
VALIDATE = ["oslo-config-validator", *(f"--namespace={n}" for n in NAMESPACES)]
PASSWORDS = [
    resolved("openstack_compute_rabbit_password"),
    resolved("openstack_compute_nova_password"),
    resolved("openstack_compute_placement_password"),
    resolved("openstack_compute_neutron_password"),
    CONVERGE_VARS["openstack_compute_config_overrides"]["cinder"]["password"],
]
ROTATED = {
    "openstack_compute_rabbit_password": "rotated-rabbit-secret-5811",
    "openstack_compute_nova_password": "rotated-nova-secret-5812",
    "openstack_compute_placement_password": "rotated-placement-secret-5813",
    "openstack_compute_neutron_password": "rotated-neutron-secret-5814",
}
NOVA_LOG = "/var/log/nova/nova-compute.log"


def nova_conf(host, path="/etc/nova/nova.conf") -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(host.file(path).content_string)
    return parser


# --- the converged node -----------------------------------------------------


def test_libvirtd_and_nova_compute_run_and_start_at_boot(host):
    # Minutes after converge: libvirtd no longer exits when idle.
    for unit in ("libvirtd", "nova-compute"):
        service = host.service(unit)
        assert service.is_running, unit
        assert service.is_enabled, unit


def test_libvirt_answers_on_the_system_uri(host):
    assert host.check_output("virsh -c qemu:///system uri") == "qemu:///system"


def test_nova_compute_is_ready_only_through_its_own_unit(host):
    # No drop-in makes a nova-compute that waits for a conductor look started:
    # the packaged unit reports ready once the controller answered.
    assert not host.file("/etc/systemd/system/nova-compute.service.d/aerie.conf").exists
    assert host.check_output("systemctl show -p Type --value nova-compute") == "notify"
    assert host.check_output("systemctl show -p ActiveState --value nova-compute") == "active"
    log = host.file(NOVA_LOG).content_string
    for bad in ("ACCESS_REFUSED", "is unreachable", "ECONNREFUSED", "Timed out waiting for nova-conductor"):
        assert bad not in log, bad


def test_the_message_bus_sees_this_node_logged_in_as_nova_on_its_vhost(host):
    controller = testinfra.get_host("podman://openstack-controller")
    out = controller.check_output("rabbitmqctl -q list_connections user vhost peer_host state")
    rows = [line.split() for line in out.splitlines()]
    addresses = host.check_output("hostname -I").split()
    assert any(row[:2] == ["nova", "/nova"] and row[2] in addresses and row[3] == "running" for row in rows), rows


def test_nova_conf_is_private_to_nova(host):
    conf = host.file("/etc/nova/nova.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "nova", 0o640)


def test_nova_conf_passes_oslo_config_validator(host):
    result = host.run_expect([0], " ".join([*VALIDATE, "--input-file=/etc/nova/nova.conf"]))
    assert "not part of the sample config" not in result.stderr


def test_nova_conf_carries_what_a_compute_node_needs(host):
    conf = nova_conf(host)
    assert conf.get("DEFAULT", "transport_url") == (
        f"rabbit://nova:{resolved('openstack_compute_rabbit_password')}@openstack-controller:5672/%2Fnova"
    )
    assert conf.get("DEFAULT", "my_ip") in host.check_output("hostname -I").split()
    # The host's reserve plus HTCondor's VM_MEMORY: nova plans only for the rest.
    assert conf.get("DEFAULT", "reserved_host_memory_mb") == "4096"
    assert conf.get("DEFAULT", "ram_allocation_ratio") == "1.0"
    assert conf.get("service_user", "send_service_user_token") == "true"
    for section in ("keystone_authtoken", "service_user", "placement", "neutron", "glance", "vnc"):
        assert conf.has_section(section), section
    assert conf.get("oslo_concurrency", "lock_path") == "/var/lib/nova/tmp"
    # The override mapping reaches the file.
    assert conf.get("DEFAULT", "debug") == "false"
    assert conf.get("cinder", "password") == CONVERGE_VARS["openstack_compute_config_overrides"]["cinder"]["password"]


def test_virt_type_is_what_the_inventory_asks(host):
    # "auto" would pick kvm on this machine, whose guests do not boot under KVM.
    assert nova_conf(host).get("libvirt", "virt_type") == CONVERGE_VARS["openstack_compute_virt_type"] == "qemu"


def test_debians_nova_compute_conf_no_longer_overrides_nova_conf(host):
    lines = host.file("/etc/nova/nova-compute.conf").content_string.splitlines()
    assert [line for line in lines if line.strip() and not line.startswith("#")] == []


def test_redacted_copy_has_no_secret_and_differs_only_in_them(host):
    redacted = host.file("/var/lib/aerie/openstack_compute/nova.conf").content_string
    real = host.file("/etc/nova/nova.conf").content_string
    for password in PASSWORDS:
        assert password not in redacted
        assert password in real
    masked = real
    for password in PASSWORDS:
        masked = masked.replace(password, "********")
    body = [line for line in redacted.splitlines() if not line.startswith("#")]
    assert body == [line for line in masked.splitlines() if not line.startswith("#")]


# --- runs that must not change anything -------------------------------------


def run_role(tmp: Path, name: str, variables: dict, *args: str) -> subprocess.CompletedProcess:
    """ansible-playbook applying the role to the node with exactly ``variables``."""
    play = tmp / f"{name}.yml"
    play.write_text(yaml.safe_dump([{"name": name, "hosts": "compute_nodes", "vars": variables,
                                     "roles": ["openstack_compute"]}]))
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    return subprocess.run(["ansible-playbook", "-i", inventory, str(play), *args],
                          capture_output=True, text=True, check=False, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})


def without(key: str) -> dict:
    return {k: v for k, v in CONVERGE_VARS.items() if k != key}


def bad_runs(memtotal_mb: int) -> dict:
    """Name -> (variables, ansible-playbook options) of runs that must not change anything."""
    reserved = CONVERGE_VARS["openstack_compute_reserved_host_memory_mb"]
    return {
        "bogus_option": ({**CONVERGE_VARS, "openstack_compute_config_overrides": {
            "DEFAULT": {"aerie_no_such_option": 1}}}, ()),
        "rotated_passwords_check_diff": ({**CONVERGE_VARS, **ROTATED,
                                          "openstack_compute_reserved_host_memory_mb": 3584}, ("--check", "--diff")),
        "no_rabbit_host": (without("openstack_compute_rabbit_host"), ("--diff",)),
        "no_rabbit_password": (without("openstack_compute_rabbit_password"), ("--diff",)),
        "empty_rabbit_password": ({**CONVERGE_VARS, "openstack_compute_rabbit_password": ""}, ("--diff",)),
        "bad_virt_type": ({**CONVERGE_VARS, "openstack_compute_virt_type": "xen"}, ("--diff",)),
        "reserved_beyond_memory": ({**CONVERGE_VARS, "openstack_compute_reserved_host_memory_mb": memtotal_mb},
                                   ("--diff",)),
        # Each fits alone; together they are 1 MiB too many.
        "condor_vm_overlaps_nova": ({**CONVERGE_VARS, "condor_vm_memory_mb": memtotal_mb - reserved + 1}, ("--diff",)),
        # The same, as roles/condor_vm records it on the node (see CONDOR_VM_FACT).
        "condor_vm_fact_overlaps_nova": (without("condor_vm_memory_mb"), ("--diff",)),
        # nova's default initial ratio (1.5) would plan for HTCondor's share too.
        "nova_overcommits_htcondors_share": ({**CONVERGE_VARS, "openstack_compute_ram_allocation_ratio": 1.5},
                                             ("--diff",)),
    }


BAD_INPUT = ["bogus_option", "no_rabbit_host", "no_rabbit_password", "empty_rabbit_password", "bad_virt_type",
             "reserved_beyond_memory", "condor_vm_overlaps_nova", "condor_vm_fact_overlaps_nova",
             "nova_overcommits_htcondors_share"]
CONDOR_VM_FACT = "/etc/ansible/facts.d/condor_vm.fact"


@pytest.fixture(scope="module")
def runs(host, tmp_path_factory):
    """Every run above, side by side, with the node's state before and after."""

    def state():
        files = ("/etc/nova/nova.conf", "/etc/nova/nova-compute.conf", "/var/lib/aerie/openstack_compute/nova.conf")
        return ({f: hashlib.sha256(host.file(f).content).hexdigest() for f in files},
                host.check_output("systemctl show -p MainPID --value nova-compute"))

    tmp = tmp_path_factory.mktemp("runs")
    meminfo = dict(line.split(":", 1) for line in host.file("/proc/meminfo").content_string.splitlines())
    memtotal_mb = int(meminfo["MemTotal"].split()[0]) // 1024  # as Ansible's memtotal_mb
    runs = bad_runs(memtotal_mb)
    before = state()
    # Only the run without condor_vm_memory_mb falls back to this fact.
    vm_memory_mb = memtotal_mb - CONVERGE_VARS["openstack_compute_reserved_host_memory_mb"] + 1
    fact = json.dumps({"vm_universe": True, "vm_memory_mb": vm_memory_mb})
    host.run_expect([0], f"mkdir -p /etc/ansible/facts.d && echo '{fact}' > {CONDOR_VM_FACT}")
    try:
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            futures = {name: pool.submit(run_role, tmp, name, v, *args) for name, (v, args) in runs.items()}
            results = {name: f.result() for name, f in futures.items()}
    finally:
        host.run_expect([0], f"rm -f {CONDOR_VM_FACT}")
    return results, before, state()


def recap_changed(output: str) -> int:
    line = next(line for line in output.splitlines() if "openstack-compute" in line and "changed=" in line)
    return int(line.split("changed=")[1].split()[0])


def test_no_run_changed_the_node_or_restarted_nova(runs):
    _, before, after = runs
    assert before == after


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_fails_before_any_change(runs, name):
    result = runs[0][name]
    assert result.returncode != 0, result.stdout
    assert recap_changed(result.stdout) == 0


@pytest.mark.parametrize(("name", "message"), [
    ("bogus_option", "DEFAULT/aerie_no_such_option is not part of the sample config"),
    ("no_rabbit_host", "openstack_compute_rabbit_host"),
    ("no_rabbit_password", "openstack_compute_rabbit_password"),
    ("empty_rabbit_password", "openstack_compute_rabbit_password"),
    ("bad_virt_type", "openstack_compute_virt_type"),
    ("reserved_beyond_memory", "openstack_compute_reserved_host_memory_mb"),
    ("condor_vm_overlaps_nova", "nothing left for nova"),
    ("condor_vm_fact_overlaps_nova", "nothing left for nova"),
    ("nova_overcommits_htcondors_share", "memory over-committed"),
])
def test_bad_input_names_the_problem(runs, name, message):
    result = runs[0][name]
    # ansible-core 2.19 prints task errors on stderr, wrapped as YAML.
    assert message in " ".join((result.stdout + result.stderr).split())


def test_check_diff_shows_the_change_but_no_password(runs):
    result = runs[0]["rotated_passwords_check_diff"]
    assert result.returncode == 0, result.stdout
    assert "+reserved_host_memory_mb = 4608" in result.stdout
    for password in [*PASSWORDS, *ROTATED.values()]:
        assert password not in result.stdout + result.stderr


def test_no_run_ever_printed_a_password(runs):
    for name, result in runs[0].items():
        for password in [*PASSWORDS, *ROTATED.values()]:
            assert password not in result.stdout + result.stderr, name
