"""vm_template: a tree made into a bootable qcow2 template, published immutably.

The pure parts (layout, preparation plan, names) directly; the module through
real ansible-playbook runs that assemble real disks with sfdisk, mkfs.fat,
mtools, syslinux and mkfs.ext4, read back with sfdisk, mtools and debugfs.
The template booting as a real VM-universe job and running its payload is
molecule/condor_vm (tests/test_vm_jobs.py there).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
import yaml
from aerie_testutil import ansible_playbook
from ansible_collections.aerie.grid.plugins.module_utils import aerie_vm_image as vmi
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError

TOOLS = ("sfdisk", "mkfs.fat", "mcopy", "syslinux", "mkfs.ext4", "debugfs", "qemu-img")
needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS) or os.geteuid() != 0,
                                 reason="needs root and " + ", ".join(TOOLS) + " (scripts/bootstrap installs them)")


def fake_tree(path, kernel=b"kernel", with_ssh=True):
    (path / "boot").mkdir(parents=True)
    (path / "boot/vmlinuz-6.1.0-test").write_bytes(kernel)
    (path / "boot/initrd.img-6.1.0-test").write_bytes(b"initrd")
    (path / "etc").mkdir()
    (path / "etc/os-release").write_text("ID=debian\n")
    (path / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    if with_ssh:
        (path / "etc/ssh").mkdir()
        (path / "etc/ssh/sshd_config").write_text("PermitRootLogin no\n")
        (path / "etc/ssh/ssh_host_ed25519_key").write_text("SECRET HOST KEY\n")
        (path / "etc/ssh/ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA\n")
    (path / "lib/systemd/system").mkdir(parents=True)
    return path


def test_names_and_versions_are_checked():
    assert vmi.check_name("el9_worker") == "el9_worker"
    for bad in ("../x", "a/b", "", "-x", "el9-worker"):
        with pytest.raises(AerieError, match="template name"):
            vmi.check_name(bad)
    with pytest.raises(AerieError, match="template version"):
        vmi.check_version("1-2")
    assert vmi.image_name("el9", "3") == "el9-v3.qcow2"


def test_el_initramfs_names_are_found(tmp_path):
    tree = tmp_path / "el"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot/vmlinuz-5.14.0-427.el9.x86_64").write_bytes(b"k")
    (tree / "boot/initramfs-5.14.0-427.el9.x86_64.img").write_bytes(b"i")
    assert vmi.find_boot_files(str(tree))[1:] == (str(tree / "boot/initramfs-5.14.0-427.el9.x86_64.img"),
                                                  "5.14.0-427.el9.x86_64")


def test_a_tree_without_exactly_one_kernel_is_refused(tmp_path):
    tree = fake_tree(tmp_path / "t")
    (tree / "boot/vmlinuz-6.1.0-other").write_bytes(b"k")
    with pytest.raises(AerieError, match="exactly one kernel"):
        vmi.find_boot_files(str(tree))
    (tree / "boot/vmlinuz-6.1.0-other").unlink()
    (tree / "boot/initrd.img-6.1.0-test").unlink()
    with pytest.raises(AerieError, match="has no initrd"):
        vmi.find_boot_files(str(tree))


def test_preparation_drops_host_keys_and_machine_id_and_adds_the_job_entry(tmp_path):
    tree = fake_tree(tmp_path / "t")
    steps = vmi.prepare_plan(str(tree), "aerie-vm", "console=ttyS0")
    removed = {s["path"] for s in steps if s["op"] == "remove"}
    assert {"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"} <= removed
    vmi.apply_prepare(str(tree), steps)
    assert not list((tree / "etc/ssh").glob("ssh_host_*"))
    assert (tree / "etc/ssh/sshd_config").exists()
    assert (tree / "etc/machine-id").read_text() == ""
    assert "LABEL=aerie-root / ext4" in (tree / "etc/fstab").read_text()
    entry = tree / "usr/local/sbin/aerie-vm-job"
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755 and "AERIE-VM-OUTPUT" in entry.read_text()
    assert os.readlink(tree / "etc/systemd/system/multi-user.target.wants/aerie-vm-job.service") == \
        "/etc/systemd/system/aerie-vm-job.service"


def test_preparation_never_writes_through_a_link_out_of_the_tree(tmp_path):
    tree = fake_tree(tmp_path / "t")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree / "usr/local").mkdir(parents=True)
    os.symlink(str(outside), tree / "usr/local/sbin")
    with pytest.raises(AerieError, match="leads out of the tree"):
        vmi.apply_prepare(str(tree), vmi.prepare_plan(str(tree), "aerie-vm", ""))
    assert not list(outside.iterdir())


def test_the_layout_leaves_room_and_aligns_the_partitions():
    lay = vmi.layout(tree_mb=400, boot_mb=64, free_mb=512)
    assert lay["boot_start"] == 2048 and lay["root_start"] == 2048 + 64 * 2048
    assert lay["root_sectors"] * 512 >= (400 * 1.3 + 512) * 1024 * 1024 - 1024 * 1024
    assert "type=e, bootable" in vmi.sfdisk_script(lay)
    cfg = vmi.syslinux_cfg("6.1.0-test", "console=ttyS0")
    assert "APPEND root=LABEL=aerie-root ro console=ttyS0" in cfg


def run_template(tmp_path, *args, **params):
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [
        {"name": "template", "aerie.grid.vm_template": params, "register": "out"},
        {"name": "show", "ansible.builtin.debug": {"var": "out"}}]}]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return ansible_playbook("-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}", str(path),
                            *args, env={"ANSIBLE_CACHE_PLUGIN": "memory"})


def disk_of(qcow2, dest):
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow2), str(dest)], check=True)
    return dest


@needs_tools
def test_the_module_publishes_a_bootable_disk_once_and_refuses_to_change_a_version(tmp_path):
    tree = fake_tree(tmp_path / "tree")
    root = tmp_path / "templates"
    params = {"name": "deb12", "version": "1", "root": str(root), "tree": str(tree), "free_mb": 16}

    check = run_template(tmp_path, "--check", "--diff", **params)
    assert check.returncode == 0 and "changed=1" in check.stdout, check.stdout[-3000:]
    assert not root.exists() or not list(root.iterdir())  # check mode builds nothing
    # --check on a fresh builder, before the tree exists either: reported, not failed.
    fresh = run_template(tmp_path, "--check", **{**params, "tree": str(tmp_path / "not-built-yet")})
    assert fresh.returncode == 0 and "changed=1" in fresh.stdout, fresh.stdout[-3000:]

    first = run_template(tmp_path, **params)
    assert first.returncode == 0 and "changed=1" in first.stdout, first.stdout[-3000:]
    image = root / "deb12-v1.qcow2"
    assert stat.S_IMODE(image.stat().st_mode) == 0o444
    assert os.readlink(root / "deb12.qcow2") == "deb12-v1.qcow2"
    manifest = json.loads((root / "deb12-v1.json").read_text())
    assert manifest["sha256"] == vmi.sha256_file(str(image)) and manifest["kernel"] == "6.1.0-test"
    assert sorted(p.name for p in root.iterdir()) == ["deb12-v1.json", "deb12-v1.qcow2", "deb12.qcow2"]
    # The source tree is read, never changed.
    assert (tree / "etc/ssh/ssh_host_ed25519_key").exists()

    raw = disk_of(image, tmp_path / "disk.raw")
    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    boot, rootp = table["partitions"]
    assert boot.get("bootable") and boot["start"] == 2048 and rootp["start"] == 2048 + 64 * 2048
    with open(raw, "rb") as handle, open(vmi.MBR_CODE, "rb") as mbr:
        assert handle.read(440) == mbr.read(440)  # syslinux's boot code
    fat = f"{raw}@@{2048 * 512}"
    # ldlinux.sys is hidden (-a): syslinux installed it.
    listing = subprocess.run(["mdir", "-a", "-b", "-i", fat, "::/"], capture_output=True, text=True, check=True).stdout
    assert {"::/VMLINUZ", "::/INITRD.IMG", "::/SYSLINUX.CFG", "::/LDLINUX.SYS"} <= \
        {line.strip().upper() for line in listing.splitlines()}
    ext4 = f"{raw}?offset={rootp['start'] * 512}"
    ls = subprocess.run(["debugfs", "-R", "ls -l /etc/ssh", ext4], capture_output=True, text=True, check=True).stdout
    assert "sshd_config" in ls and "ssh_host_" not in ls
    entry = subprocess.run(["debugfs", "-R", "cat /usr/local/sbin/aerie-vm-job", ext4], capture_output=True,
                           text=True, check=True).stdout
    assert entry.startswith("#!/bin/sh")

    again = run_template(tmp_path, "--check", "--diff", **params)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
    same = run_template(tmp_path, **params)
    assert same.returncode == 0 and "changed=0" in same.stdout
    assert manifest == json.loads((root / "deb12-v1.json").read_text())

    other = run_template(tmp_path, **{**params, "hostname": "other"})
    assert other.returncode != 0 and "versions are immutable" in other.stdout and "hostname" in other.stdout
    assert vmi.sha256_file(str(image)) == manifest["sha256"]


@needs_tools
def test_a_new_version_switches_the_stable_name_and_keeps_the_old_image(tmp_path):
    tree = fake_tree(tmp_path / "tree")
    root = tmp_path / "templates"
    params = {"name": "deb12", "root": str(root), "tree": str(tree), "free_mb": 16}
    assert run_template(tmp_path, version="1", **params).returncode == 0
    old = vmi.sha256_file(str(root / "deb12-v1.qcow2"))
    staged = run_template(tmp_path, version="2", current=False, **params)
    assert staged.returncode == 0 and os.readlink(root / "deb12.qcow2") == "deb12-v1.qcow2"
    switched = run_template(tmp_path, "--diff", version="2", **params)
    assert switched.returncode == 0 and "changed=1" in switched.stdout
    assert f"-{root}/deb12.qcow2 -> deb12-v1.qcow2" in switched.stdout
    assert os.readlink(root / "deb12.qcow2") == "deb12-v2.qcow2"
    assert vmi.sha256_file(str(root / "deb12-v1.qcow2")) == old

