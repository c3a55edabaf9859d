"""The one core every aerie module shares (stdlib only).

One error type, one way to read a file, one atomic write, one mountinfo
parser, one fstab editor and one way to run a child that cannot outlive the
module. The topic helpers (aerie_cgroup, aerie_chroot*) and the modules
import these instead of growing their own; tests/test_core.py calls them
without root.

Kernel references: Documentation/filesystems/proc.rst (mountinfo), fstab(5).
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field


class AerieError(Exception):
    """A problem the module reports to the user: the message names it."""


def read_text(path: str, default: str | None = "") -> str | None:
    """Content of a text file; ``default`` when it (or the process it describes, under /proc) is gone."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
        return default


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` so that a reader (or a crash) sees the old or the new file, never half.

    A temporary file in the same directory (so rename(2) stays on one
    filesystem), fsync'd before the rename; the directory is created 0755
    when missing.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- mountinfo ---------------------------------------------------------------

_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(text: str) -> str:
    """mountinfo/fstab octal escapes (``\\040`` is a space) back to characters."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def escape(path: str) -> str:
    """A path as one mountinfo/fstab field."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@dataclass(frozen=True)
class Mount:
    """One line of /proc/<pid>/mountinfo."""

    mount_id: int
    parent_id: int
    device: str
    root: str
    mount_point: str
    mount_options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...] = field(default_factory=tuple)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of /proc/<pid>/mountinfo, in kernel (mount) order.

    Line format (proc(5)): ``id parent major:minor root mount_point options
    [optional fields...] - fstype source super_options``; fields are single
    space separated and a source may be empty.
    """
    mounts = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(" "), right.split(" ")
        try:
            if not sep or len(fields) < 6 or len(tail) < 2:
                raise ValueError(line)
            mounts.append(
                Mount(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    device=fields[2],
                    root=unescape(fields[3]),
                    mount_point=unescape(fields[4]),
                    mount_options=tuple(fields[5].split(",")),
                    fstype=tail[0],
                    source=unescape(tail[1]),
                    super_options=tuple(tail[2].split(",")) if len(tail) > 2 else (),
                )
            )
        except ValueError as exc:
            raise AerieError(f"mountinfo line {lineno} is malformed: {line!r}") from exc
    return mounts


def read_mounts(path: str = "/proc/self/mountinfo") -> list[Mount]:
    return parse_mountinfo(read_text(path))


def is_under(path: str, top: str) -> bool:
    """``path`` is ``top`` or inside it (``/chroot/a-v10`` is not inside ``/chroot/a-v1``)."""
    top = top.rstrip("/") or "/"
    return path == top or path.startswith(top + "/") or top == "/"


def mounts_under(mounts: list[Mount], top: str) -> list[str]:
    """Mount points at or below ``top``, in the order to unmount them (last mounted first)."""
    return [m.mount_point for m in reversed(mounts) if is_under(m.mount_point, top)]


# --- fstab -------------------------------------------------------------------


def fstab_entry(what: str, where: str, fstype: str, options: str) -> str:
    """One fstab line, paths escaped, never dumped nor fsck'd."""
    return f"{escape(what)} {escape(where)} {fstype} {options} 0 0"


def fstab_mount_point(line: str) -> str | None:
    """The mount point of an fstab entry line; None for comments and blank lines."""
    fields = line.split()
    if len(fields) < 2 or fields[0].startswith("#"):
        return None
    return unescape(fields[1])


def normpath(path: str) -> str:
    """Absolute path without duplicate or trailing slashes (no symlink resolution)."""
    return "/" + "/".join(p for p in path.split("/") if p)


def set_fstab_entry(text: str, path: str, line: str) -> str:
    """fstab ``text`` with exactly one entry for mount point ``path``, equal to ``line`` (first one replaced)."""
    target = normpath(path)
    out, placed = [], False
    for existing in text.splitlines():
        point = fstab_mount_point(existing)
        if point is not None and normpath(point) == target:
            if not placed:
                out.append(line)
                placed = True
            continue
        out.append(existing)
    if not placed:
        out.append(line)
    return "\n".join(out) + "\n"


def drop_fstab_entries_under(lines: list[str], top: str) -> list[str]:
    """fstab lines without the entries mounted at or below ``top``."""
    return [line for line in lines if (point := fstab_mount_point(line)) is None or not is_under(point, top)]


def _markers(label: str) -> tuple[str, str]:
    return f"# BEGIN aerie {label}", f"# END aerie {label}"


def fstab_block(text: str, label: str) -> list[str]:
    """Lines of aerie's managed block ``label`` in fstab ``text`` (without the markers)."""
    begin, end = _markers(label)
    lines = text.splitlines()
    if begin not in lines:
        return []
    start = lines.index(begin) + 1
    stop = lines.index(end, start) if end in lines[start:] else len(lines)
    return lines[start:stop]


def set_fstab_block(text: str, label: str, body: list[str], banner: str = "") -> str:
    """fstab ``text`` with the managed block ``label`` replaced by ``body`` in place (removed when empty)."""
    begin, end = _markers(label)
    lines = text.splitlines()
    if begin in lines:
        start = lines.index(begin)
        stop = lines.index(end, start) + 1 if end in lines[start:] else len(lines)
        del lines[start:stop]
    else:
        start = len(lines)
    if body:
        lines[start:start] = [begin] + [f"# {b}" for b in banner.splitlines() if b] + list(body) + [end]
    return "\n".join(lines) + "\n" if lines else ""


# --- children that die with the module ----------------------------------------

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. PR_SET_PDEATHSIG survives exec
    # (not set-user-ID ones): the kernel sends SIGTERM when the module dies.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def run_bound(argv: list[str], hold_fds: tuple[int, ...] = (), env: dict | None = None,
              timeout_seconds: int = 0, kill_after_seconds: int = 10) -> tuple[int, str, str]:
    """Run ``argv`` so that it and every process it starts end with this process; (rc, stdout, stderr).

    Two guards, because either alone has a hole:

    - ``timeout`` (coreutils) is the direct child, with PR_SET_PDEATHSIG:
      when the module dies (SIGKILL included) the kernel sends it SIGTERM and
      it passes the signal to its whole process group (debootstrap's dpkg,
      dnf's scriptlets, tar), then SIGKILL after ``kill_after_seconds``. A
      plain PDEATHSIG on the command would kill only the command, not its
      children. ``timeout_seconds`` 0 means no time limit.
    - ``hold_fds`` (the tree lock) are inherited: a flock belongs to the open
      file, so the lock stays held until the last process holding it exits.
      Whatever outlives the signals (a process that ignores SIGTERM, the
      instant between fork and prctl) keeps the next run waiting instead of
      letting it delete the build directory under a live bootstrapper.
    """
    wrapped = ["timeout", "-k", f"{kill_after_seconds}s", f"{timeout_seconds}s", *argv]
    proc = subprocess.Popen(
        wrapped,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        pass_fds=tuple(hold_fds),
        preexec_fn=_die_with_parent,  # the module is single-threaded: safe between fork and exec
        text=True,
        errors="replace",
    )
    out, err = proc.communicate()
    return proc.returncode, out, err
