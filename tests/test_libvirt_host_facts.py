"""libvirt_host_facts against libvirt's test driver (no daemon, no root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest
from aerie_testutil import CONTROLLER_BIN, isolated_ansible_env
from ansible_collections.aerie.grid.plugins.module_utils import aerie_libvirt

REPO = Path(__file__).resolve().parent.parent

# A custom test-driver node: libvirt's test:///<file> boots from this description.
NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>2</threads>
       <active>4</active><mhz>2000</mhz><model>x86_64</model></cpu>
  <memory>8388608</memory>
  <network>
    <name>condor-nat</name>
    <bridge name='virbr7'/>
    <forward mode='nat'/>
    <ip address='192.168.77.1' netmask='255.255.255.0'/>
  </network>
</node>
"""

# The guest part of `virsh capabilities` on a Debian 12 KVM host (libvirt 9.0, qemu 7.2),
# trimmed: i686 and x86_64 offer qemu and kvm, aarch64 only emulation.
QEMU_CAPS = """<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest><os_type>hvm</os_type>
    <arch name='i686'><wordsize>32</wordsize><emulator>/usr/bin/qemu-system-i386</emulator>
      <domain type='qemu'/><domain type='kvm'/></arch></guest>
  <guest><os_type>hvm</os_type>
    <arch name='x86_64'><wordsize>64</wordsize><emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine>pc</machine><domain type='qemu'/><domain type='kvm'/></arch></guest>
  <guest><os_type>hvm</os_type>
    <arch name='aarch64'><emulator>/usr/bin/qemu-system-aarch64</emulator><domain type='qemu'/></arch></guest>
</capabilities>"""


@pytest.fixture(autouse=True)
def quiet_libvirt():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


@pytest.fixture
def node(tmp_path):
    path = tmp_path / "node.xml"
    path.write_text(NODE_XML)
    conn = libvirt.open(f"test://{path}")
    yield conn
    conn.close()


def test_default_test_driver_facts():
    conn = libvirt.openReadOnly("test:///default")
    facts = aerie_libvirt.host_facts(conn, kvm_device="/nonexistent/kvm")
    conn.close()
    assert facts["uri"] == "test:///default"
    assert facts["hypervisor_type"] == "TEST"
    # The test driver describes a 16-CPU, 3 GiB, two-cell i686 host running "test" domains.
    assert facts["cpu_count"] == 16
    assert facts["memory_mb"] == 3072
    assert facts["numa_nodes"] == 2
    assert facts["host_arch"] == "i686"
    assert facts["domain_types"] == {"i686": ["test"]}
    assert facts["os_types"] == {"i686": ["hvm", "xen"]}
    assert facts["kvm_domain_archs"] == []
    assert facts["kvm_usable"] is False
    assert facts["active_networks"] == ["default"]
    assert facts["networks"][0]["bridge"] == "virbr0"
    assert facts["libvirt_version"] == aerie_libvirt.version_string(libvirt.getVersion())


def test_custom_node_memory_cpus_and_networks(node):
    facts = aerie_libvirt.host_facts(node)
    assert facts["memory_mb"] == 8192
    assert facts["cpu_count"] == 4
    assert facts["active_networks"] == ["condor-nat"]


def test_defined_but_inactive_network_is_told_apart(node):
    node.networkDefineXML("<network><name>spare</name><bridge name='virbr9'/></network>")
    transient = node.networkCreateXML("<network><name>scratch</name><bridge name='virbr8'/></network>")
    facts = aerie_libvirt.host_facts(node)
    assert facts["defined_networks"] == ["condor-nat", "spare"]
    assert facts["active_networks"] == ["condor-nat", "scratch"]
    by_name = {n["name"]: n for n in facts["networks"]}
    assert by_name["spare"] == {
        "name": "spare",
        "active": False,
        "persistent": True,
        "autostart": False,
        "bridge": "virbr9",
    }
    transient.destroy()
    assert aerie_libvirt.host_facts(node)["active_networks"] == ["condor-nat"]


def test_capabilities_of_a_kvm_host():
    caps = aerie_libvirt.parse_capabilities(QEMU_CAPS)
    assert caps["host_arch"] == "x86_64"
    assert caps["domain_types"] == {"aarch64": ["qemu"], "i686": ["kvm", "qemu"], "x86_64": ["kvm", "qemu"]}


@pytest.mark.parametrize(("number", "text"), [(9000000, "9.0.0"), (7002022, "7.2.22"), (10010001, "10.10.1")])
def test_version_string(number, text):
    assert aerie_libvirt.version_string(number) == text


def test_device_status_of_a_character_device():
    status = aerie_libvirt.device_status("/dev/null")
    assert status["exists"] and status["is_char_device"]
    assert status["mode"] == "0666"
    assert status["owner"] == "root"
    assert status["usable"] is True


def test_device_status_of_a_regular_file_is_not_usable(tmp_path):
    fake = tmp_path / "kvm"
    fake.write_text("")
    fake.chmod(0o640)
    status = aerie_libvirt.device_status(str(fake))
    assert status["exists"] is True
    assert status["is_char_device"] is False
    assert status["mode"] == "0640"
    assert status["usable"] is False


def test_device_status_of_a_missing_device():
    status = aerie_libvirt.device_status("/nonexistent/kvm")
    assert status["exists"] is False
    assert status["usable"] is False


def run_ansible(tmp_path: Path, tool: str, *args: str) -> dict:
    """Run ansible or ansible-playbook from .venv; return its JSON output."""
    done = subprocess.run(
        [str(CONTROLLER_BIN / tool), *args],
        capture_output=True,
        text=True,
        env=isolated_ansible_env(tmp_path),
        cwd=tmp_path,
        timeout=180,
        check=False,
    )
    return json.loads(done.stdout)


def run_module(tmp_path: Path, *args: str) -> dict:
    """Run the module through Ansible itself, as a playbook task would."""
    python = f"ansible_python_interpreter={sys.executable}"
    out = run_ansible(tmp_path, "ansible", "localhost", "-c", "local", "-e", python,
                      "-m", "aerie.grid.libvirt_host_facts", *args)
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_module_reports_facts_and_no_change_in_check_mode(tmp_path):
    result = run_module(tmp_path, "-a", "uri=test:///default kvm_device=/dev/null", "--check")
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    facts = result["ansible_facts"]["libvirt_host"]
    assert facts["domain_types"] == {"i686": ["test"]}
    assert facts["kvm_device"]["is_char_device"] is True
    assert facts["kvm_usable"] is False  # the test driver offers no kvm domain type


def test_module_fails_clearly_when_libvirt_is_unreachable(tmp_path):
    result = run_module(tmp_path, "-a", f"uri=test://{tmp_path}/missing.xml")
    assert result["failed"] is True
    assert "cannot connect to libvirt at test://" in result["msg"]
