"""The VM universe node: libvirt, the NAT network, the knobs HTCondor reads, the plugin at work."""

from __future__ import annotations

import json

import aerie_testinfra

testinfra_hosts = aerie_testinfra.hosts("worker_nodes")

PLUGIN = "/usr/local/libexec/aerie-vm-nfs-plugin"


def params(host, *names):
    """What the installed HTCondor reads for each knob."""
    return {name: host.check_output("condor_config_val %s", name) for name in names}


def test_libvirtd_runs_and_starts_at_boot(host):
    libvirtd = host.service("libvirtd")
    assert libvirtd.is_running
    assert libvirtd.is_enabled


def test_libvirtd_does_not_exit_when_idle(host):
    # Debian's unit passes --timeout 120; the role's drop-in clears it, so the
    # daemon is still there on the next run (and for HTCondor's probes).
    env = host.run("systemctl show libvirtd -p Environment").stdout
    assert "--timeout" not in env
    cmdline = host.run("cat /proc/$(systemctl show libvirtd -p MainPID --value)/cmdline | tr '\\0' ' '").stdout
    assert "libvirtd" in cmdline and "--timeout" not in cmdline


def test_nat_network_is_active_and_autostarts(host):
    info = host.run_expect([0], "virsh -c qemu:///system net-info default").stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    assert fields["Active"].strip() == "yes"
    assert fields["Autostart"].strip() == "yes"
    assert fields["Bridge"].strip() == "virbr0"
    assert host.interface("virbr0").exists


def test_facts_module_found_kvm_and_the_role_turned_the_vm_universe_on(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/condor_vm.fact").content_string)
    assert fact["vm_universe"] is True
    assert "x86_64" in fact["kvm_domain_archs"]
    assert fact["libvirt_version"].startswith("9.")


def test_plugin_answers_classad(host):
    out = host.run_expect([0], "%s -classad", PLUGIN).stdout
    assert 'SupportedMethods = "nfs"' in out
    assert "MultipleFileSupport = true" in out


def test_htcondor_reads_the_vm_knobs_and_the_plugin(host):
    got = params(
        host, "VM_TYPE", "VM_MEMORY", "VM_MAX_NUMBER", "VM_NETWORKING", "VM_NETWORKING_TYPE", "FILETRANSFER_PLUGINS"
    )
    assert got["VM_TYPE"] == "kvm"
    assert got["VM_MAX_NUMBER"] == "2"
    assert got["VM_NETWORKING"] == "true"
    assert got["VM_NETWORKING_TYPE"] == "nat"
    plugins = [p.strip() for p in got["FILETRANSFER_PLUGINS"].split(",")]
    # Appended: HTCondor's own plugins (curl for http/https) stay.
    assert plugins[-1] == PLUGIN
    assert any(p.endswith("/curl_plugin") for p in plugins)
    # A compute node: HTCondor owns exactly the share the inventory names
    # (nova plans for the rest; molecule/openstack shows nova's side).
    assert int(got["VM_MEMORY"]) == 4096


def test_vm_jobs_get_their_domain_from_aeries_script_with_the_nodes_domain_type(host):
    got = params(host, "LIBVIRT_XML_SCRIPT", "LIBVIRT_XML_SCRIPT_ARGS")
    assert got == {"LIBVIRT_XML_SCRIPT": "/usr/local/libexec/aerie-libvirt-xml",
                   "LIBVIRT_XML_SCRIPT_ARGS": "--domain-type qemu"}
    # condor_vm-gahp feeds it the job's ad; what it prints is a domain of that type.
    ad = ('JobVMType = "kvm"\nVMPARAM_VM_NAME = "slot1_1_vm"\nVM_WORKING_DIR = "/var/lib/condor/execute/dir_1"\n'
          'JobVMMemory = 256\nVMPARAM_vm_Disk = "disk.qcow2:vda:w:qcow2"\n')
    out = host.run_expect([0], "printf %%s %s | /usr/local/libexec/aerie-libvirt-xml --domain-type qemu", ad).stdout
    assert out.startswith("<domain type=\"qemu\">") and "/var/lib/condor/execute/dir_1/disk.qcow2" in out
    refused = host.run("printf %%s %s | /usr/local/libexec/aerie-libvirt-xml",
                       ad.replace("disk.qcow2:vda", "/etc/shadow:vda"))
    assert refused.rc == 1 and "must be a file name in the job's directory" in refused.stderr


def test_plugin_stages_a_qcow2_overlay_in_a_job_sandbox(host):
    root, sandbox = "/srv/vm-templates", "/var/lib/condor/execute/dir_4242"
    # Beside the published templates, which the VM job tests use: only this file is removed.
    host.run_expect([0], "mkdir -p %s && truncate -s 64M %s/sl6.img", sandbox, root)
    try:
        host.run_expect([0], "%s nfs:%s/sl6.img:vmimage.img %s/sl6.img:vmimage.img", PLUGIN, root, sandbox)
        info = json.loads(host.run_expect([0], "qemu-img info --output=json %s/vmimage.img", sandbox).stdout)
        assert info["format"] == "qcow2"
        assert info["backing-filename"] == f"{root}/sl6.img"
        assert info["backing-filename-format"] == "raw"
        refused = host.run("%s nfs:/etc/shadow:x.img %s/x", PLUGIN, sandbox)
        assert refused.rc == 1
        assert "outside the allowed roots" in refused.stderr
    finally:
        host.run("rm -rf %s/sl6.img %s", root, sandbox)
