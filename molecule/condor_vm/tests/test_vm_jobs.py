"""Real VM-universe jobs (issue 17): a template the vm_image role built, staged by the nfs plugin, booted by HTCondor.

An ordinary user submits two VM jobs on the access point. Each lists the
template as an ``nfs:`` URL: the plugin makes a qcow2 overlay of it in the
job's sandbox. condor_vm-gahp defines the domain through aerie's XML script
(software emulation here, domain type qemu), the guest's entry point runs the
payload from the job's CD and writes its output to the job's result disk,
then powers off; the result disk comes back to the user as the job's output.
Both jobs run at once; the template's checksum is the same afterwards.
"""

from __future__ import annotations

import json
import re
import subprocess

import aerie_jobs
import aerie_testinfra
import pytest
from ansible_collections.aerie.grid.plugins.module_utils.aerie_vm_image import OUTPUT_MAGIC

testinfra_hosts = aerie_testinfra.hosts("access_points")

TEMPLATE_LINK = "/srv/vm-templates/aerie_test.qcow2"
TEMPLATE = "/srv/vm-templates/aerie_test-v1.qcow2"
JOBDIR = "/home/alice/vmjobs"
PAYLOAD = """#!/bin/sh
echo "payload ran on $(uname -r) as $(id -un)"
echo "machine-id $(cat /etc/machine-id)"
# The job's NIC on the node's NAT network: wait for networkd's DHCP lease.
for i in $(seq 90); do grep -h '^ADDRESS=' /run/systemd/netif/leases/* 2>/dev/null && break; sleep 1; done
grep -o 'root=LABEL=[^ ]*' /proc/cmdline
exit 3
"""
SUBMIT = f"""universe = vm
vm_type = kvm
vm_memory = 384
vm_networking = true
vm_networking_type = nat
vm_no_output_vm = false
executable = aerie-vm-test
log = vm.log
transfer_input_files = nfs://{TEMPLATE_LINK}:vm.qcow2, job.iso, out.img
vm_disk = vm.qcow2:vda:w:qcow2,job.iso:hdc:r,out.img:vdb:w:raw
transfer_output_files = out.img
transfer_output_remaps = "out.img = out-$(Cluster).$(Process).img"
queue 2
"""


def sha256(host, path):
    return host.check_output("sha256sum %s", path).split()[0]


def two_guests(host):
    """The command lines of the node's qemu processes when there are exactly two, else None."""
    procs = [line for line in host.run("ps -eo args").stdout.splitlines() if line.startswith("/usr/bin/qemu-system")]
    return procs if len(procs) == 2 else None


@pytest.fixture(scope="module")
def vm_jobs(host, tmp_path_factory):
    """Submit the two jobs, look into their sandboxes while the guests run, wait for both to end."""
    work = tmp_path_factory.mktemp("vmjob")
    (work / "cd").mkdir()
    (work / "cd" / "aerie-job").write_text(PAYLOAD)
    (work / "cd" / "aerie-job").chmod(0o755)
    subprocess.run(["genisoimage", "-quiet", "-r", "-J", "-V", "AERIEJOB", "-o", str(work / "job.iso"),
                    str(work / "cd")], check=True)
    # The result disk: raw, its first bytes the marker the guest's entry point looks for.
    (work / "out.img").write_bytes(OUTPUT_MAGIC.encode().ljust(1024 * 1024, b"\0"))
    (work / "vm.sub").write_text(SUBMIT)
    host.run_expect([0], "rm -rf %s && install -d -o alice -g alice %s", JOBDIR, JOBDIR)
    for f in ("job.iso", "out.img", "vm.sub"):
        subprocess.run(["podman", "cp", str(work / f), f"{host.backend.name}:{JOBDIR}/{f}"], check=True)
    host.run_expect([0], "chown alice: %s/*", JOBDIR)

    before = sha256(host, TEMPLATE)
    out = host.check_output("su - alice -c %s", f"cd {JOBDIR} && condor_submit vm.sub")
    cluster = re.search(r"submitted to cluster (\d+)", out).group(1)

    # While both guests run: their sandboxes hold overlays of the template, not copies.
    both = aerie_jobs.wait_for(lambda: two_guests(host), timeout=420, step=2)
    domains = host.run("virsh -c qemu:///system list --name").stdout.split()
    disks = host.run("ls /var/lib/condor/execute/*/vm.qcow2").stdout.split()
    overlays = [json.loads(host.check_output("qemu-img info -U --output=json %s", d)) for d in disks]

    done = aerie_jobs.wait_for(
        lambda: host.run("condor_q %s -af ProcId", cluster).stdout.strip() == "", timeout=900, step=5)
    history = [line.split() for line in host.check_output(
        "condor_history %s -af ProcId JobStatus NumJobStarts ExitCode Owner", cluster).splitlines()]
    log = host.file(f"{JOBDIR}/vm.log").content_string
    results = {}
    for proc in (0, 1):
        path = f"{JOBDIR}/out-{cluster}.{proc}.img"
        if host.file(path).exists:
            raw = host.check_output("head -c 4096 %s | tr -d '\\000'", path)
            results[proc] = (raw, host.file(path).user)
    return {"cluster": cluster, "both_running": both, "domains": domains, "overlays": overlays, "done": done,
            "history": history, "log": log, "results": results, "before": before, "after": sha256(host, TEMPLATE)}


def test_both_vm_jobs_complete_first_time(vm_jobs):
    assert vm_jobs["done"], f"the VM jobs did not finish:\n{vm_jobs['log'][-3000:]}"
    # JobStatus 4 (completed), started once each: no retry hid a failed start.
    assert sorted(row[:3] for row in vm_jobs["history"]) == [["0", "4", "1"], ["1", "4", "1"]], vm_jobs["log"][-3000:]
    assert {row[4] for row in vm_jobs["history"]} == {"alice"}


def test_both_guests_ran_at_once_under_software_emulation(vm_jobs):
    procs = vm_jobs["both_running"]
    assert procs, "two guests never ran at the same time"
    # aerie's domain XML with the node's domain type: qemu's TCG, not KVM.
    assert all("-accel tcg" in p for p in procs)
    assert all("/srv/vm-templates/aerie_test-v1.qcow2" in p for p in procs)


def test_the_jobs_domains_live_in_the_system_libvirt_and_use_its_nat_network(vm_jobs, host):
    # condor_vm-gahp opens qemu:///session as root, which is the system daemon:
    # the network the role made ready there is the one the jobs attach to.
    assert sorted(vm_jobs["domains"]) == [f"alice_condor-vm-node_{vm_jobs['cluster']}.{p}" for p in (0, 1)]
    leases = host.run("cat /var/lib/libvirt/dnsmasq/virbr0.status").stdout
    for raw, _owner in vm_jobs["results"].values():
        address = re.search(r"ADDRESS=(192\.168\.122\.\d+)", raw)
        assert address, raw
        # The role's dnsmasq on virbr0 handed it out.
        assert f'"ip-address": "{address.group(1)}"' in leases


def test_each_sandbox_holds_an_overlay_of_the_template(vm_jobs):
    overlays = vm_jobs["overlays"]
    assert len(overlays) == 2
    for info in overlays:
        assert info["format"] == "qcow2"
        # The plugin resolved the link: a new template version cannot swap a running job's disk.
        assert info["backing-filename"] == TEMPLATE
        # Kilobytes of qcow2 header and the guest's writes, not the 300+ MiB template.
        assert info["actual-size"] < 64 * 1024 * 1024


def test_the_guests_output_comes_back_to_the_user(vm_jobs):
    results = vm_jobs["results"]
    assert sorted(results) == [0, 1], vm_jobs["log"][-3000:]
    ids = set()
    for raw, owner in results.values():
        assert owner == "alice"
        assert raw.startswith(f"{OUTPUT_MAGIC}\npayload ran on 6.1"), raw
        assert " as root\n" in raw and raw.endswith("root=LABEL=aerie-root\nexit 3")
        ids.add(re.search(r"machine-id (\w+)", raw).group(1))
    # The template carries no machine-id: each guest made its own.
    assert len(ids) == 2


def test_the_template_is_unchanged_by_checksum(vm_jobs, host):
    assert vm_jobs["after"] == vm_jobs["before"]
    manifest = json.loads(host.file("/srv/vm-templates/aerie_test-v1.json").content_string)
    assert manifest["sha256"] == vm_jobs["after"]


def test_the_starter_ran_aeries_plugin_for_the_disk(host, vm_jobs):
    # HTCondor's file transfer handed the nfs URL to aerie's plugin, which succeeded.
    starter = host.run("cat /var/log/condor/StarterLog.slot1_*").stdout
    assert "plugin /usr/local/libexec/aerie-vm-nfs-plugin: exit_code 0" in starter
