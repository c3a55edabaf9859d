#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Make a userland tree into an immutable, bootable qcow2 VM template and publish it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_template
short_description: Publish one immutable version of a bootable qcow2 VM template
description:
  - Ensures C(ROOT/NAME-vVERSION.qcow2) exists, made from O(tree) (a userland
    with exactly one kernel and its initrd in C(/boot), for example a tree the
    M(aerie.grid.chroot_tree) module built by debootstrap), with its manifest
    C(ROOT/NAME-vVERSION.json) (checksum, kernel, inputs).
  - The disk boots as virt-install would leave it, so HTCondor's VM universe
    (which boots from the disk) starts it; an MBR with syslinux, partition 1
    FAT with the kernel and initrd, partition 2 ext4 labelled C(aerie-root)
    holding the tree. It is assembled in a plain file (no loop device, no
    mount) from a prepared copy of the tree, never the tree itself.
  - Template preparation, on the copy; no SSH host keys (made at each
    instance's first boot), an empty machine-id, a serial console, DHCP on the
    first NIC, and the job entry point C(aerie-vm-job), which runs the
    C(aerie-job) executable a job brings on its CD, writes the output to the
    job's result disk (a raw disk starting with C(AERIE-VM-OUTPUT)) and powers
    the VM off.
  - The copy of the tree and the raw disk are made beside O(tree), outside
    O(root); the image enters O(root) as a hidden C(.NAME-vVERSION.build-XXXX.qcow2)
    of mode C(0600) and is renamed to its final name and made read-only
    (C(0444)) when complete, so a half-built image never carries the final name
    and no job can read it. Versions are immutable; the same inputs again change
    nothing, different inputs for an existing version fail.
  - With O(current=true) the stable name C(ROOT/NAME.qcow2) (a symbolic link)
    is switched to this version atomically; jobs that already staged an
    overlay of the previous version keep it.
version_added: "0.1.0"
options:
  name:
    description: Template name; letters, digits, C(.), C(_), C(-).
    type: str
    required: true
  version:
    description: Version to publish; letters, digits, C(.), C(_).
    type: str
    required: true
  root:
    description: Template directory (the export jobs' C(nfs:) URLs name; the plugin's allowed root).
    type: path
    required: true
  tree:
    description: The userland to make into the template. Read, never changed.
    type: path
    required: true
  hostname:
    description: Host name of the template's instances.
    type: str
    default: aerie-vm
  kernel_cmdline:
    description: Kernel command line after C(root=LABEL=aerie-root ro).
    type: str
    default: console=ttyS0,115200 net.ifnames=0
  boot_mb:
    description: Size of the FAT boot partition in MiB.
    type: int
    default: 64
  free_mb:
    description: Free space in the root file system in MiB, beyond 30 % over the tree's size.
    type: int
    default: 512
  current:
    description: Point C(ROOT/NAME.qcow2) at this version.
    type: bool
    default: true
  timeout_seconds:
    description: Give up on one build step (copying, making a file system, converting) after this long.
    type: int
    default: 1800
requirements:
  - On the host that builds - cp, sfdisk (fdisk), mkfs.fat (dosfstools), mtools, syslinux,
    syslinux-common, mkfs.ext4 (e2fsprogs >= 1.43), qemu-img (qemu-utils).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Ensure the el9-worker template version 3 is published and current
  aerie.grid.vm_template:
    name: el9-worker
    version: "3"
    root: /srv/aerie/vm-templates
    tree: /var/lib/aerie/vm-image-trees/el9-worker-v3
"""

RETURN = r"""
image:
  description: Path of this version's image.
  type: str
  returned: always
  sample: /srv/aerie/vm-templates/el9-worker-v3.qcow2
sha256:
  description: Checksum of the image (from its manifest).
  type: str
  returned: success
kernel:
  description: Kernel release inside the image.
  type: str
  returned: success
built:
  description: Whether this run built the image (or would have, in check mode).
  type: bool
  returned: always
current:
  description: Version C(ROOT/NAME.qcow2) points at after the run (null when there is no link).
  type: str
  returned: always
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils import aerie_vm_image as vmi
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot import switch_link
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError, run_bound, write_atomic


def tree_identity(tree):
    """What of the tree the image depends on: its chroot manifest when it has one."""
    path = os.path.join(tree, ".aerie-chroot.json")
    return "sha256:" + vmi.sha256_file(path) if os.path.isfile(path) else None


def plan(p, check_mode=False):
    """(inputs, what to do) from the parameters and what is on disk; changes nothing."""
    name, version = vmi.check_name(p["name"]), vmi.check_version(p["version"])
    tree = p["tree"]
    image = os.path.join(p["root"], vmi.image_name(name, version))
    if not os.path.isdir(tree):
        if check_mode and not os.path.isfile(image):
            # --check on a fresh builder: the tree is not built yet either.
            link = os.path.join(p["root"], f"{name}.qcow2")
            before = os.readlink(link) if os.path.islink(link) else None
            return None, {"name": name, "version": version, "image": image, "build": True, "link": link,
                          "link_before": before, "link_after": os.path.basename(image) if p["current"] else before}
        raise AerieError(f"tree {tree} does not exist")
    _kernel, _initrd, release = vmi.find_boot_files(tree)
    inputs = {"tree": os.path.normpath(tree), "tree_manifest": tree_identity(tree), "kernel": release,
              "hostname": p["hostname"], "kernel_cmdline": p["kernel_cmdline"], "boot_mb": p["boot_mb"],
              "free_mb": p["free_mb"]}
    have = vmi.read_manifest(p["root"], name, version) if os.path.isdir(p["root"]) else None
    if have is not None and os.path.isfile(image):
        if have.get("inputs") != inputs:
            changed = sorted(k for k in inputs if have.get("inputs", {}).get(k) != inputs[k])
            raise AerieError(f"{image} exists with other inputs ({', '.join(changed)}): versions are immutable,"
                             " publish a new version")
        build = False
    else:
        build = True
    link = os.path.join(p["root"], f"{name}.qcow2")
    if os.path.lexists(link) and not os.path.islink(link):
        raise AerieError(f"{link} exists and is not a symbolic link: move it away first")
    before = os.readlink(link) if os.path.islink(link) else None
    after = os.path.basename(image) if p["current"] else before
    return inputs, {"name": name, "version": version, "image": image, "build": build, "link": link,
                    "link_before": before, "link_after": after}


def run_step(argv, timeout, stdin_text=None):
    """Run one build step bound to this module's life; sfdisk reads its script on stdin."""
    wrapped = argv
    script = None
    if stdin_text is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".sfdisk", delete=False) as handle:
            handle.write(stdin_text)
        script = handle.name
        wrapped = ["sh", "-c", 'exec "$@" < "$0"', script, *argv]
    try:
        rc, out, err = run_bound(wrapped, timeout_seconds=timeout)
    finally:
        if script:
            os.unlink(script)
    if rc != 0:
        raise AerieError(f"{argv[0]} failed (rc={rc}): {(err or out).strip()[-800:]}")


def build(p, inputs, todo):
    """Build the image beside the tree and move it into the template directory under its final name.

    The copy of the tree and the raw disk stay out of the template directory
    (which jobs name files in); the qcow2 enters it hidden and mode 0600, and
    gets its name and mode 0444 only when complete.
    """
    root, timeout = p["root"], p["timeout_seconds"]
    os.makedirs(root, mode=0o755, exist_ok=True)
    stem = f".{todo['name']}-v{todo['version']}.build-"
    for name in os.listdir(root):  # an interrupted earlier build of this version
        if name.startswith(stem):
            os.unlink(os.path.join(root, name))
    scratch = tempfile.mkdtemp(prefix=stem, dir=os.path.dirname(os.path.normpath(p["tree"])))
    fd, qcow2 = tempfile.mkstemp(prefix=stem, suffix=".qcow2", dir=root)
    os.close(fd)
    try:
        tree = os.path.join(scratch, "tree")
        os.mkdir(tree, 0o755)
        run_step(vmi.copy_command(p["tree"], tree), timeout)
        vmi.apply_prepare(tree, vmi.prepare_plan(tree, p["hostname"], p["kernel_cmdline"]))
        kernel, initrd, release = vmi.find_boot_files(tree)
        cfg = os.path.join(scratch, "syslinux.cfg")
        with open(cfg, "w", encoding="utf-8") as handle:
            handle.write(vmi.syslinux_cfg(release, p["kernel_cmdline"]))
        lay = vmi.layout(vmi.tree_size_mb(tree), p["boot_mb"], p["free_mb"])
        raw = os.path.join(scratch, "disk.raw")
        with open(raw, "wb") as handle:
            handle.truncate(lay["total_bytes"])
        for argv in vmi.assemble_commands(tree, raw, kernel, initrd, cfg, lay):
            run_step(argv, timeout, vmi.sfdisk_script(lay) if argv[0] == "sfdisk" else None)
        run_step(["qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", raw, qcow2], timeout)
        manifest = vmi.manifest(todo["name"], todo["version"], qcow2, release, inputs)
        os.chmod(qcow2, 0o444)
        # The manifest goes last: an image without one is an interrupted
        # publish, which the next run redoes.
        os.rename(qcow2, todo["image"])
        write_atomic(os.path.join(root, f"{todo['name']}-v{todo['version']}.json"),
                     json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        return manifest
    finally:
        if os.path.exists(qcow2):
            os.unlink(qcow2)
        run_bound(["rm", "-rf", "--one-file-system", scratch])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str", required=True),
            root=dict(type="path", required=True),
            tree=dict(type="path", required=True),
            hostname=dict(type="str", default="aerie-vm"),
            kernel_cmdline=dict(type="str", default="console=ttyS0,115200 net.ifnames=0"),
            boot_mb=dict(type="int", default=64),
            free_mb=dict(type="int", default=512),
            current=dict(type="bool", default=True),
            timeout_seconds=dict(type="int", default=1800),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "built": False, "image": None, "current": None}
    try:
        inputs, todo = plan(p, module.check_mode)
        result["image"] = todo["image"]
        result["built"] = todo["build"]
        result["changed"] = todo["build"] or todo["link_before"] != todo["link_after"]
        result["diff"] = {
            "before": f"{todo['image']}: {'absent' if todo['build'] else 'published'}\n"
                      f"{todo['link']} -> {todo['link_before']}\n",
            "after": f"{todo['image']}: published\n{todo['link']} -> {todo['link_after']}\n",
        }
        if not module.check_mode:
            if todo["build"]:
                build(p, inputs, todo)
            if todo["link_before"] != todo["link_after"]:
                switch_link(todo["link"], todo["link_after"])
        if not module.check_mode or not todo["build"]:
            have = vmi.read_manifest(p["root"], todo["name"], todo["version"]) or {}
            result["sha256"], result["kernel"] = have.get("sha256"), have.get("kernel")
        after = todo["link_after"] or ""
        result["current"] = after[len(todo["name"]) + 2:-len(".qcow2")] if after else None
        module.exit_json(**result)
    except AerieError as exc:
        module.fail_json(msg=str(exc), **result)


if __name__ == "__main__":
    main()
