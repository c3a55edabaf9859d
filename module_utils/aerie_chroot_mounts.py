"""Pure helpers for the bind mounts of aerie's chroot trees (stdlib only).

Parses /proc/self/mountinfo (the kernel's view, so nothing is ever mounted
twice) and keeps one managed block per tree name in /etc/fstab so that
systemd's fstab generator restores the mounts at boot.
"""

from __future__ import annotations

import re

FSTAB_BANNER = "Bind mounts of aerie's chroot trees (chroot_mounts module); managed, do not edit."
_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """mountinfo/fstab octal escapes (``\\040`` is a space) back to characters."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def escape(path: str) -> str:
    """A path as one fstab field."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def parse_mountinfo(text: str) -> list[dict]:
    """Entries of /proc/<pid>/mountinfo, in mount order.

    Line format (proc(5)): ``id parent major:minor root mount_point options
    [optional fields...] - fstype source super_options``.
    """
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, sep, right = line.partition(" - ")
        if not sep:
            raise ValueError(f"malformed mountinfo line: {line!r}")
        fields = left.split(" ")
        tail = right.split(" ")
        mounts.append(
            {
                "id": int(fields[0]),
                "parent": int(fields[1]),
                "root": unescape(fields[3]),
                "mount_point": unescape(fields[4]),
                "options": fields[5],
                "fstype": tail[0],
                "source": unescape(tail[1]) if len(tail) > 1 else "",
            }
        )
    return mounts


def is_under(path: str, top: str) -> bool:
    top = top.rstrip("/") or "/"
    return path == top or path.startswith(top + "/") or top == "/"


def mounts_under(mounts: list[dict], top: str) -> list[str]:
    """Mount points at or below ``top``, in the order to unmount them (last mounted first)."""
    points = [m["mount_point"] for m in mounts if is_under(m["mount_point"], top)]
    return list(reversed(points))


def mounted_points(mounts: list[dict]) -> set:
    return {m["mount_point"] for m in mounts}


def fstab_line(source: str, target: str, readonly: bool = False) -> str:
    options = "bind,ro" if readonly else "bind"
    return f"{escape(source)} {escape(target)} none {options} 0 0"


def _markers(name: str) -> tuple[str, str]:
    return f"# BEGIN aerie chroot {name}", f"# END aerie chroot {name}"


def fstab_block(text: str, name: str) -> list[str]:
    """Lines of the managed block for ``name`` (without markers)."""
    begin, end = _markers(name)
    lines = text.splitlines()
    if begin not in lines:
        return []
    start = lines.index(begin) + 1
    stop = lines.index(end, start) if end in lines[start:] else len(lines)
    return lines[start:stop]


def replace_fstab_block(text: str, name: str, body: list[str], banner: str = "") -> str:
    """``text`` with the managed block of ``name`` replaced by ``body`` (removed when empty)."""
    begin, end = _markers(name)
    lines = text.splitlines()
    if begin in lines:
        start = lines.index(begin)
        stop = lines.index(end, start) + 1 if end in lines[start:] else len(lines)
        del lines[start:stop]
    else:
        start = len(lines)
    if body:
        block = [begin] + [f"# {b}" for b in banner.splitlines() if b] + list(body) + [end]
        lines[start:start] = block
    return "\n".join(lines) + "\n" if lines else ""


def fstab_targets(lines: list[str]) -> list[str]:
    """Mount points of fstab entry lines (comments skipped)."""
    targets = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            targets.append(unescape(fields[1]))
    return targets


def drop_under(lines: list[str], top: str) -> list[str]:
    """fstab block lines without the entries mounted at or below ``top``."""
    kept = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and is_under(unescape(fields[1]), top):
            continue
        kept.append(line)
    return kept


def unmount_under(top: str, run, read_mountinfo) -> list[str]:
    """Unmount everything at or below ``top``, deepest first, and verify nothing is left.

    ``run(argv)`` returns (rc, stdout, stderr); ``read_mountinfo()`` returns
    the text of /proc/self/mountinfo. Returns the unmounted mount points.
    """
    done = []
    for point in mounts_under(parse_mountinfo(read_mountinfo()), top):
        rc, _out, err = run(["umount", point])
        if rc != 0:
            raise RuntimeError(f"cannot unmount {point}: {err.strip()}")
        done.append(point)
    left = mounts_under(parse_mountinfo(read_mountinfo()), top)
    if left:
        raise RuntimeError(f"still mounted under {top} after unmounting: {', '.join(left)}")
    return done
