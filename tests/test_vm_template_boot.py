"""A published template boots, runs a job's payload from its CD and powers off (qemu).

A real Debian 12 userland with its kernel, built by debootstrap as the
vm_image role's recipe does, made into a template by the vm_template module
(a real ansible-playbook run), an overlay of it booted under qemu as a
VM-universe job's disk would be, with the job's CD and result disk. Not in
tests/node_python.txt: the module's Python is tested by test_vm_template.py;
this boot is minutes of emulated CPU, run once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest
from ansible_collections.aerie.grid.plugins.module_utils import aerie_vm_image as vmi
from test_vm_template import needs_tools, run_template

# The userland is cached per recipe outside the checkout (a clean clone
# reuses it; the build is a few minutes, the boot about one).
RECIPE = {"suite": "bookworm", "mirror": os.environ.get("AERIE_MIRROR", "http://deb.debian.org/debian"),
          "include": ["linux-image-amd64", "systemd-sysv", "udev", "kmod"]}
TREE_CACHE = os.environ.get("AERIE_VM_TEMPLATE_TEST_DIR", "/var/cache/aerie/vm-template-test")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or shutil.which("debootstrap") is None
                                or shutil.which("genisoimage") is None,
                                reason="needs qemu-system-x86_64, debootstrap and genisoimage (scripts/bootstrap)")


@pytest.fixture(scope="module")
def debian_tree():
    key = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    tree = os.path.join(TREE_CACHE, f"{RECIPE['suite']}-{key}")
    if not os.path.exists(os.path.join(tree, ".complete")):
        os.makedirs(os.path.join(TREE_CACHE, "debs"), exist_ok=True)
        subprocess.run(["rm", "-rf", "--one-file-system", tree], check=True)
        res = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(RECIPE["include"]),
                              "--cache-dir=" + os.path.join(TREE_CACHE, "debs"), RECIPE["suite"], tree,
                              RECIPE["mirror"]], capture_output=True, text=True, check=False, timeout=1800)
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        open(os.path.join(tree, ".complete"), "w").close()
    return tree


@needs_tools
@needs_qemu
def test_a_template_boots_runs_the_jobs_payload_and_powers_off(tmp_path, debian_tree):
    root = tmp_path / "templates"
    res = run_template(tmp_path, name="deb12", version="1", root=str(root), tree=debian_tree, free_mb=64)
    assert res.returncode == 0, res.stdout[-3000:]
    template = root / "deb12-v1.qcow2"
    checksum = vmi.sha256_file(str(template))

    # What a VM-universe job brings: its payload on a CD, a result disk.
    cd = tmp_path / "cd"
    cd.mkdir()
    (cd / "aerie-job").write_text("#!/bin/sh\necho \"payload ran on $(uname -r) as $(id -un)\"\n"
                                  "grep -o 'root=LABEL=[^ ]*' /proc/cmdline\nexit 3\n")
    (cd / "aerie-job").chmod(0o755)
    subprocess.run(["genisoimage", "-quiet", "-r", "-J", "-V", "AERIEJOB", "-o", str(tmp_path / "job.iso"), str(cd)],
                   check=True)
    out = tmp_path / "out.img"
    out.write_bytes(vmi.OUTPUT_MAGIC.encode() + b"\0" * (1024 * 1024 - len(vmi.OUTPUT_MAGIC)))
    # The instance is an overlay on the template, as the nfs plugin stages it.
    overlay = tmp_path / "instance.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(template), "-F", "qcow2", str(overlay)],
                   check=True)
    console = tmp_path / "console.log"
    qemu = subprocess.run(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "1", "-nodefaults", "-display", "none",
         "-no-reboot", "-serial", f"file:{console}",
         "-drive", f"file={overlay},if=virtio,format=qcow2",
         "-drive", f"file={out},if=virtio,format=raw",
         "-drive", f"file={tmp_path / 'job.iso'},if=ide,media=cdrom,readonly=on"],
        capture_output=True, text=True, timeout=900, check=False)
    log = console.read_text(errors="replace")
    # The guest powered itself off: qemu exits 0 (a crash or the timeout would not).
    assert qemu.returncode == 0, qemu.stderr + log[-3000:]
    result = out.read_bytes().split(b"\0", 1)[0].decode()
    assert result.startswith("AERIE-VM-OUTPUT\npayload ran on 6.1"), log[-3000:]
    assert " as root\nroot=LABEL=aerie-root\nexit 3\n" in result
    assert vmi.sha256_file(str(template)) == checksum  # the template is never written
