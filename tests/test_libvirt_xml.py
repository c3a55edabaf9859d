"""aerie-libvirt-xml, the condor_vm role's LIBVIRT_XML_SCRIPT: the job's ad to domain XML.

Pure: the ad as condor_vm-gahp writes it on the script's stdin, the XML it
prints parsed back. (libvirt starting such a domain is the condor_vm
scenario's VM job.)
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from aerie_testutil import load_script

xml_script = load_script("roles/condor_vm/files/aerie-libvirt-xml")

AD = """JobVMType = "kvm"
VMPARAM_VM_NAME = "slot1_2_alice_vm"
VM_WORKING_DIR = "/var/lib/condor/execute/dir_123"
JobVMMemory = 512
RequestCpus = 1
JobVMNetworking = false
VMPARAM_vm_Disk = "instance.qcow2:vda:w:qcow2,out.img:vdb:w:raw,job.iso:hdc:r"
"""


def run(ad, *args):
    out, err = io.StringIO(), io.StringIO()
    rc = xml_script.main(list(args), io.StringIO(ad), out, err)
    return rc, out.getvalue(), err.getvalue()


def test_a_job_gets_a_domain_of_the_asked_type_with_its_disks_in_its_directory():
    rc, out, _err = run(AD, "--domain-type", "qemu")
    assert rc == 0
    dom = ET.fromstring(out)
    assert dom.get("type") == "qemu" and dom.find("cpu") is None  # no host CPU under emulation
    assert dom.findtext("name") == "slot1_2_alice_vm" and dom.findtext("memory") == "512"
    disks = [(d.get("device"), d.find("source").get("file"), d.find("target").get("dev"), d.find("driver").get("type"),
              d.find("readonly") is not None) for d in dom.iter("disk")]
    assert disks == [
        ("disk", "/var/lib/condor/execute/dir_123/instance.qcow2", "vda", "qcow2", False),
        ("disk", "/var/lib/condor/execute/dir_123/out.img", "vdb", "raw", False),
        ("cdrom", "/var/lib/condor/execute/dir_123/job.iso", "hdc", "raw", True),
    ]
    assert dom.find("devices/interface") is None
    kvm = ET.fromstring(run(AD)[1])
    assert kvm.get("type") == "kvm" and kvm.find("cpu").get("mode") == "host-passthrough"


@pytest.mark.parametrize("disk, reason", [
    ("/etc/shadow:vda:r", "must be a file name in the job's directory"),
    ("../../../../etc/shadow:vda:r", "must be a file name"),
    ("a/b.img:vda:r", "must be a file name"),
    ("x.img:vda'/><disk:r", "not a disk device name"),
    ("x.img:vda:r:vmdk", "format 'vmdk'"),
    ("x.iso:vdc:r", "is a CD image"),
    ("x.img", "not file:device:permission"),
])
def test_a_disk_outside_the_jobs_directory_or_a_strange_one_is_refused(disk, reason):
    rc, out, err = run(AD.replace("instance.qcow2:vda:w:qcow2,out.img:vdb:w:raw,job.iso:hdc:r", disk))
    assert rc == 1 and out == "" and reason in err


def test_the_jobs_own_values_cannot_inject_xml():
    ad = AD.replace('"slot1_2_alice_vm"', '"x</name><devices><disk/></devices><name>y"') + \
        'JobVMNetworking = true\nJobVMNetworkingType = "bridge"\nVMPARAM_Bridge_Interface = "br0\'/><x a=\'"\n'
    rc, out, _err = run(ad)
    assert rc == 0
    dom = ET.fromstring(out)
    assert dom.findtext("name") == "x</name><devices><disk/></devices><name>y"
    assert dom.find("devices/interface/source").get("bridge") == "br0'/><x a='"
    assert len(list(dom.iter("disk"))) == 3


@pytest.mark.parametrize("kind, expect", [("nat", ("network", "default")), ("user", ("user", None)),
                                         ("bridge", ("bridge", "virbr0"))])
def test_networking_follows_the_jobs_type(kind, expect):
    ad = AD.replace("JobVMNetworking = false", f'JobVMNetworking = true\nJobVMNetworkingType = "{kind}"')
    rc, out, _err = run(ad, "--bridge", "virbr0")
    iface = ET.fromstring(out).find("devices/interface")
    assert rc == 0 and iface.get("type") == expect[0]
    source = iface.find("source")
    named = None if source is None else source.get("network") or source.get("bridge")
    assert named == expect[1]


def test_a_job_without_memory_or_disks_is_refused_with_the_reason():
    assert "JobVMMemory, RequestMemory" in run(AD.replace("JobVMMemory = 512\n", ""))[2]
    assert "names no disk" in run(AD.replace('VMPARAM_vm_Disk = "instance.qcow2:vda:w:qcow2,out.img:vdb:w:raw,'
                                             'job.iso:hdc:r"\n', ""))[2]
