"""VM templates: a userland tree made into a bootable, immutable qcow2 (stdlib only).

A template is what a VM-universe job boots: ``ROOT/NAME-vVERSION.qcow2``
(read-only, never changed once published; jobs get copy-on-write overlays
of it from the nfs transfer plugin), its manifest ``NAME-vVERSION.json``
(checksum, kernel, inputs) and the stable name ``NAME.qcow2``, a symlink
switched atomically to the version jobs should use, as for chroot trees.

The disk is a real BIOS-bootable disk, as virt-install would leave it, so
HTCondor's own domain XML (which boots from the disk) starts it: an MBR with
syslinux's boot code, partition 1 FAT (syslinux, the tree's kernel and
initrd), partition 2 ext4 (the tree, labelled ``aerie-root``). It is
assembled in a plain file, with no loop device or mount: ``mkfs.fat`` and
``mkfs.ext4 -d`` write their file systems at the partitions' offsets,
``mtools`` copies into the FAT and ``syslinux --offset`` installs there.

Template preparation (:func:`prepare_plan`): no SSH host keys (made at
first boot), no machine-id, a serial console, DHCP on the first NIC, a root
file system found by label, and the job entry point (``aerie-vm-job``) that
runs the payload a job brings on its CD and powers the VM off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot as chroot
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError

# Partition 1 (FAT, boot files) and where partition 2 (the root) starts.
SECTOR = 512
BOOT_START = 2048  # 1 MiB, the usual alignment
ROOT_LABEL = "aerie-root"
MBR_CODE = "/usr/lib/syslinux/mbr/mbr.bin"
# Marker the job entry point looks for on a disk the job hands in for its results.
OUTPUT_MAGIC = "AERIE-VM-OUTPUT"

JOB_ENTRY = r"""#!/bin/sh
# aerie-vm-job: run a VM-universe job's payload once at boot, keep its result,
# power off (installed by aerie's vm_image role).
#
# The job's files come on a CD image the job lists in vm_disk (HTCondor
# attaches a file whose name contains "iso" as a CD); the payload is the
# executable "aerie-job" at the CD's root. Its output (stdout
# and stderr, then a line with its exit code) is written to the job's result
# disk: a raw disk whose first bytes are "AERIE-VM-OUTPUT", which HTCondor
# returns with the job. Without a CD carrying "aerie-job" the VM boots as a
# plain machine and nothing here runs.
set -u
cd=/run/aerie-vm-job/cd
mkdir -p "$cd"
found=
for dev in /dev/sr0 /dev/sr1 /dev/vd[b-z] /dev/sd[a-z]; do
  [ -b "$dev" ] || continue
  if mount -o ro "$dev" "$cd" 2>/dev/null; then
    if [ -x "$cd/aerie-job" ]; then found=$dev; break; fi
    umount "$cd"
  fi
done
[ -n "$found" ] || exit 0

out=
for dev in /dev/vd[b-z] /dev/sd[a-z]; do
  [ -b "$dev" ] || continue
  if [ "$(head -c 15 "$dev" 2>/dev/null)" = "AERIE-VM-OUTPUT" ]; then out=$dev; break; fi
done

work=$(mktemp -d /var/tmp/aerie-job.XXXXXX)
cp -a "$cd/." "$work/"
( cd "$work" && ./aerie-job ) >"$work/.output" 2>&1
rc=$?
printf 'exit %s\n' "$rc" >>"$work/.output"
if [ -n "$out" ]; then
  keep=$(( $(blockdev --getsize64 "$out") - 4096 ))
  { printf 'AERIE-VM-OUTPUT\n'; head -c "$keep" "$work/.output"; } | dd of="$out" conv=notrunc,fsync status=none
  sync
fi
cat "$work/.output" >/dev/console
systemctl --no-block poweroff
"""

JOB_UNIT = """[Unit]
Description=Run a VM-universe job's payload and power off (aerie)
After=local-fs.target
ConditionVirtualization=vm

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/aerie-vm-job
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""

HOSTKEY_UNIT = """[Unit]
Description=Generate this VM's SSH host keys (templates carry none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""

NETWORK = """[Match]
Name=e*

[Network]
DHCP=yes
"""


def check_name(name: str) -> str:
    # Chroot tree names: the vm_image role builds the userland as a tree of the same name.
    if not isinstance(name, str) or not chroot.NAME_RE.match(name):
        raise AerieError(f"template name {name!r}: use letters, digits and '_'")
    return name


def check_version(version) -> str:
    text = str(version)
    if not chroot.VERSION_RE.match(text):
        raise AerieError(f"template version {text!r}: use letters, digits, '.' and '_'")
    return text


def image_name(name: str, version: str) -> str:
    return f"{name}-v{version}.qcow2"


def find_boot_files(tree: str) -> tuple[str, str, str]:
    """(kernel, initrd, kernel release) inside the tree's /boot; exactly one kernel."""
    boot = os.path.join(tree, "boot")
    kernels = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-")) if os.path.isdir(boot) else []
    if len(kernels) != 1:
        raise AerieError(f"{tree}: a template needs exactly one kernel in /boot, found {kernels or 'none'}"
                         " (include a kernel package such as linux-image-amd64 in the recipe)")
    release = kernels[0][len("vmlinuz-"):]
    # Debian's initramfs-tools and EL's dracut name the initrd differently.
    for initrd in (os.path.join(boot, f"initrd.img-{release}"), os.path.join(boot, f"initramfs-{release}.img")):
        if os.path.isfile(initrd):
            return os.path.join(boot, kernels[0]), initrd, release
    raise AerieError(f"{tree}: kernel {release} has no initrd (initrd.img-{release} or initramfs-{release}.img)")


def prepare_plan(tree: str, hostname: str, cmdline: str) -> list[dict]:
    """What makes a tree a template: files to write, remove or link (paths inside the tree).

    Pure: reads the tree, changes nothing. Each step is
    {"op": "write"|"remove"|"link", "path", ["content", "mode"] | ["target"]}.
    """
    steps: list[dict] = [
        {"op": "write", "path": "/etc/hostname", "content": hostname + "\n", "mode": 0o644},
        {"op": "write", "path": "/etc/fstab", "content": f"LABEL={ROOT_LABEL} / ext4 rw,relatime 0 1\n", "mode": 0o644},
        # systemd makes a new machine-id at each instance's first boot.
        {"op": "write", "path": "/etc/machine-id", "content": "", "mode": 0o444},
        {"op": "remove", "path": "/var/lib/dbus/machine-id"},
        {"op": "write", "path": "/etc/systemd/network/10-aerie-vm.network", "content": NETWORK, "mode": 0o644},
        {"op": "link", "path": "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
         "target": "/lib/systemd/system/systemd-networkd.service"},
        {"op": "write", "path": "/usr/local/sbin/aerie-vm-job", "content": JOB_ENTRY, "mode": 0o755},
        {"op": "write", "path": "/etc/systemd/system/aerie-vm-job.service", "content": JOB_UNIT, "mode": 0o644},
        {"op": "link", "path": "/etc/systemd/system/multi-user.target.wants/aerie-vm-job.service",
         "target": "/etc/systemd/system/aerie-vm-job.service"},
        {"op": "write", "path": "/boot/aerie-cmdline", "content": cmdline + "\n", "mode": 0o644},
    ]
    ssh = os.path.join(tree, "etc/ssh")
    if os.path.isdir(ssh):
        steps += [{"op": "remove", "path": f"/etc/ssh/{f}"} for f in sorted(os.listdir(ssh))
                  if f.startswith("ssh_host_")]
        steps += [
            {"op": "write", "path": "/etc/systemd/system/aerie-ssh-hostkeys.service", "content": HOSTKEY_UNIT,
             "mode": 0o644},
            {"op": "link", "path": "/etc/systemd/system/multi-user.target.wants/aerie-ssh-hostkeys.service",
             "target": "/etc/systemd/system/aerie-ssh-hostkeys.service"},
        ]
    return steps


def _inside(tree: str, path: str) -> str:
    # Paths are the plan's own constants or names listed from the tree; a
    # symlink on the way out of the tree would still be followed, so refuse one.
    full = os.path.join(tree, path.lstrip("/"))
    parent = os.path.dirname(full)
    real = os.path.realpath(parent)
    if real != os.path.realpath(tree) and not real.startswith(os.path.realpath(tree) + os.sep):
        raise AerieError(f"{path}: its directory leads out of the tree ({real})")
    return full


def apply_prepare(tree: str, steps: list[dict]) -> None:
    for step in steps:
        full = _inside(tree, step["path"])
        if step["op"] == "remove":
            if os.path.lexists(full):
                os.unlink(full)
        elif step["op"] == "link":
            os.makedirs(os.path.dirname(full), exist_ok=True)
            if os.path.lexists(full):
                os.unlink(full)
            os.symlink(step["target"], full)
        else:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            if os.path.lexists(full):
                os.unlink(full)
            with open(full, "w", encoding="utf-8") as handle:
                handle.write(step["content"])
            os.chmod(full, step["mode"])


def syslinux_cfg(release: str, cmdline: str) -> str:
    return (f"DEFAULT aerie\nPROMPT 0\nTIMEOUT 0\nSERIAL 0 115200\n"
            f"LABEL aerie\n  LINUX /vmlinuz\n  INITRD /initrd.img\n"
            f"  APPEND root=LABEL={ROOT_LABEL} ro {cmdline}\n"
            f"# kernel {release}\n")


def layout(tree_mb: int, boot_mb: int, free_mb: int) -> dict:
    """Partition sizes in sectors for a tree of ``tree_mb``; the root gets 30 % and ``free_mb`` more."""
    boot_sectors = boot_mb * 1024 * 1024 // SECTOR
    root_mb = tree_mb * 13 // 10 + free_mb
    root_start = BOOT_START + boot_sectors
    root_sectors = root_mb * 1024 * 1024 // SECTOR
    return {"boot_start": BOOT_START, "boot_sectors": boot_sectors, "root_start": root_start,
            "root_sectors": root_sectors, "total_bytes": (root_start + root_sectors) * SECTOR}


def sfdisk_script(lay: dict) -> str:
    return ("label: dos\n"
            f"start={lay['boot_start']}, size={lay['boot_sectors']}, type=e, bootable\n"
            f"start={lay['root_start']}, size={lay['root_sectors']}, type=83\n")


def assemble_commands(tree: str, raw: str, kernel: str, initrd: str, cfg_path: str, lay: dict) -> list[list[str]]:
    """The commands that turn ``tree`` into a bootable raw disk ``raw`` (which already has its size)."""
    boot_off = lay["boot_start"] * SECTOR
    root_off = lay["root_start"] * SECTOR
    fat = f"{raw}@@{boot_off}"
    return [
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", raw],  # stdin: sfdisk_script
        ["mkfs.fat", "-F", "16", "-n", "AERIE-BOOT", "--offset", str(lay["boot_start"]), raw,
         str(lay["boot_sectors"] * SECTOR // 1024)],
        ["mcopy", "-i", fat, kernel, "::/vmlinuz"],
        ["mcopy", "-i", fat, initrd, "::/initrd.img"],
        ["mcopy", "-i", fat, cfg_path, "::/syslinux.cfg"],
        ["syslinux", "--install", "--offset", str(boot_off), raw],
        ["dd", f"if={MBR_CODE}", f"of={raw}", "bs=440", "count=1", "conv=notrunc", "status=none"],
        ["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", tree, "-E", f"offset={root_off}", raw,
         f"{lay['root_sectors'] * SECTOR // 1024}k"],
    ]


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(name: str, version: str, built: str, release: str, inputs: dict) -> dict:
    """The manifest of ``built`` (the finished image, before it gets its final name)."""
    return {"name": name, "version": version, "image": image_name(name, version), "format": "qcow2",
            "sha256": sha256_file(built), "kernel": release, "root_label": ROOT_LABEL, "inputs": inputs}


def read_manifest(root: str, name: str, version: str) -> dict | None:
    path = os.path.join(root, f"{name}-v{version}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise AerieError(f"{path}: not a template manifest ({exc})") from exc


def tree_size_mb(tree: str) -> int:
    total = 0
    for top, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(top, d))]
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(top, f)).st_size
    return total // (1024 * 1024) + 1


def copy_command(src: str, dest: str) -> list[str]:
    """Copy the source tree to prepare (the source, a chroot tree, is immutable): owners,
    modes, links, xattrs, hard links kept, nothing mounted inside it."""
    return ["cp", "-a", "--one-file-system", src.rstrip("/") + "/.", dest]
