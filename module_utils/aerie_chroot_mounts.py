"""Bind mounts of aerie's chroot trees (stdlib only).

The kernel's view (/proc/self/mountinfo, through aerie_core's parser) decides
what is mounted, so nothing is ever mounted twice; one managed block per tree
name in /etc/fstab (aerie_core's fstab editor) lets systemd's fstab generator
restore the mounts at boot.
"""

from __future__ import annotations

from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import (
    AerieError,
    Mount,
    fstab_entry,
    fstab_mount_point,
    mounts_under,
    read_mounts,
)

# The suboptions of a module's ``mounts`` list (chroot_mounts mounts them,
# chroot_verify leaves their targets out): one list, one spec.
MOUNT_OPTIONS = dict(
    src=dict(type="path", required=True),
    dest=dict(type="path"),
    optional=dict(type="bool", default=False),
    readonly=dict(type="bool", default=False),
)

FSTAB_BANNER = "Bind mounts of aerie's chroot trees (chroot_mounts module); managed, do not edit."


def block_label(name: str) -> str:
    """The label of tree ``name``'s managed fstab block (``# BEGIN aerie chroot sl5``)."""
    return f"chroot {name}"


def fstab_line(source: str, target: str, readonly: bool = False) -> str:
    return fstab_entry(source, target, "none", "bind,ro" if readonly else "bind")


def withdrawn(old_block: list[str], body: list[str]) -> list[str]:
    """Mount points the managed block listed and the new body no longer does, deepest first.

    The block is the record of what this module mounted: a mount taken out
    of the declared list (or a version gone) is unmounted, not left to the
    next reboot."""
    keep = {fstab_mount_point(line) for line in body}
    points = {fstab_mount_point(line) for line in old_block} - keep - {None}
    return sorted(points, key=lambda point: (-point.count("/"), point))


def mounted_points(mounts: list[Mount]) -> set:
    return {m.mount_point for m in mounts}


def unmount_under(top: str, run, mounts=read_mounts) -> list[str]:
    """Unmount everything at or below ``top``, deepest first, and verify nothing is left.

    ``run(argv)`` returns (rc, stdout, stderr); ``mounts()`` the current
    mounts. Returns the unmounted mount points.
    """
    done = []
    for point in mounts_under(mounts(), top):
        rc, _out, err = run(["umount", point])
        if rc != 0:
            raise AerieError(f"cannot unmount {point}: {err.strip()}")
        done.append(point)
    left = mounts_under(mounts(), top)
    if left:
        raise AerieError(f"still mounted under {top} after unmounting: {', '.join(left)}")
    return done
