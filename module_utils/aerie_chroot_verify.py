"""A chroot tree's inventory and what differs from it on disk (stdlib only).

At build time (aerie_chroot_build.build) the manifest gains ``inventory``:
relative path -> ``"TYPE MODE UID GID [EXTRA]"`` for every entry of the tree
(``f 4755 0 0 <sha256>``: EXTRA is the content digest of a setuid/setgid
or executable regular file, or a symbolic link's target). Run-time places keep their own
entry but not their content (``inventory_skipped``: /proc, /sys, /dev,
/home, /tmp, /var/tmp, HTCondor's execute directory); other filesystems
mounted inside are never entered. The chroot_verify module compares every
kept version with a fresh walk (``differences``) and reports what differs.
"""

from __future__ import annotations

import hashlib
import os
import stat

INVENTORY = "inventory"
SKIPPED = "inventory_skipped"
# Kept as an entry, content not recorded: bind-mounted (proc, sys, dev, home)
# or written by jobs at run time (tmp, the execute directory).
RUNTIME_DIRS = ("/proc", "/sys", "/dev", "/home", "/tmp", "/var/tmp")
NO_INVENTORY = "no inventory: built by an older aerie, rebuild to cover"
FOLD_AFTER = 30

_TYPES = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b",
          stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}  # fmt: skip
_PRIVILEGED = stat.S_ISUID | stat.S_ISGID
# Digests of executables too: 0.14 s and ~30 KB more for a minbase tree (bench/chroot_verify.md).
_EXECUTABLE = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def file_digest(path: str) -> str:
    """sha256 of a regular file, opened without following a symbolic link."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def entry(full: str, st: os.stat_result) -> str:
    """The inventory value of one entry: ``TYPE MODE UID GID`` and the digest or link target."""
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "?")
    text = f"{kind} {stat.S_IMODE(st.st_mode):04o} {st.st_uid} {st.st_gid}"
    if kind == "f" and st.st_mode & (_PRIVILEGED | _EXECUTABLE):
        text += " " + file_digest(full)
    elif kind == "l":
        text += " " + os.readlink(full)
    return text


def walk(tree: str, skip_content=(), skip_whole=()):
    """Yield (relative path, lstat) of every entry under ``tree``.

    Never follows a symbolic link, never enters another filesystem (a mount
    point is left out, entry and content, as is every path in ``skip_whole``),
    and yields but does not enter the directories of ``skip_content``.
    """
    top_dev = os.lstat(tree).st_dev
    skip_content, skip_whole = set(skip_content), set(skip_whole)
    stack = [("", tree)]
    while stack:
        rel_dir, full_dir = stack.pop()
        try:
            entries = list(os.scandir(full_dir))
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed while walking
        for item in entries:
            rel = f"{rel_dir}/{item.name}"
            if rel in skip_whole:
                continue
            try:
                st = os.lstat(item.path)
            except FileNotFoundError:
                continue
            if st.st_dev != top_dev:
                continue
            yield rel, st
            if stat.S_ISDIR(st.st_mode) and rel not in skip_content:
                stack.append((rel, item.path))


def content_skipped(tree: str, execute_dir: str | None, resolve) -> list[str]:
    """Relative paths whose content the inventory leaves out (``resolve(tree, path)``: aerie_chroot.resolve_in_tree)."""
    paths = list(RUNTIME_DIRS) + ([execute_dir] if execute_dir else [])
    return sorted({"/" + os.path.relpath(resolve(tree, p), tree) for p in paths})


def inventory(tree: str, skip_content=(), skip_whole=(), exclude=("/.aerie-chroot.json",)) -> dict:
    """Relative path -> inventory value for the tree as it is now."""
    excluded = set(exclude)
    return {rel: entry(os.path.join(tree, rel.lstrip("/")), st)
            for rel, st in walk(tree, skip_content, skip_whole) if rel not in excluded}  # fmt: skip


def _fields(value: str) -> tuple[str, int, str, str, str]:
    kind, mode, uid, gid, *extra = value.split(" ", 4)
    return kind, int(mode, 8), uid, gid, extra[0] if extra else ""


def _comparable(before: str | None, after: str | None) -> str | None:
    """``after`` without a digest the recorded entry has no counterpart for (a file made executable, an
    inventory from a build that kept fewer digests): its content was not recorded, its mode still is."""
    if before and after and before.startswith("f ") and after.startswith("f ") and before.count(" ") == 3:
        return " ".join(after.split(" ", 4)[:4])
    return after


def _is_under(path: str, tops) -> bool:
    return any(path == top or path.startswith(top.rstrip("/") + "/") for top in tops)


def why_differs(before: str | None, after: str | None) -> str | None:
    """What a difference between an inventory value and the entry on disk means, in a few words.

    None for a difference that is not reported: a new root-owned directory
    without setuid/setgid or world-write bits (what lands in it is).
    """
    if after is None:
        return "removed"
    kind, mode, uid, gid, extra = _fields(after)
    if before is None:
        if kind != "d" and mode & _PRIVILEGED:
            return "added with setuid/setgid"
        if kind != "l" and mode & stat.S_IWOTH and not (kind == "d" and mode & stat.S_ISVTX):
            return "added world-writable"
        if kind == "d":
            # An empty root-owned directory grants nothing (chroot_mounts creates its mount targets so).
            return f"new directory owned by uid {uid}" if uid != "0" else None
        return {"f": "new file", "l": "new symbolic link"}.get(kind, "new special file")
    old_kind, old_mode, old_uid, old_gid, old_extra = _fields(before)
    reasons = []
    if kind != old_kind:
        reasons.append("type changed")
    else:
        if mode != old_mode:
            gained = mode & ~old_mode
            if gained & _PRIVILEGED:
                reasons.append("gained setuid/setgid")
            elif gained & stat.S_IWOTH and not (kind == "d" and mode & stat.S_ISVTX):
                reasons.append("made world-writable")
            else:
                reasons.append("mode changed")
        if (uid, gid) != (old_uid, old_gid):
            reasons.append("owner changed")
        if extra != old_extra and kind == "l":
            reasons.append("link target changed")
        elif extra != old_extra and old_extra and extra:
            reasons.append("content changed")
    return ", ".join(reasons) or "changed"


def differences(recorded: dict, found: dict, ignore=()) -> list[dict]:
    """What differs between a manifest's ``inventory`` and a fresh one, sorted by path.

    Each item: path, why, before (the manifest's value or None), after (on
    disk or None). Paths at or below ``ignore`` (mount points, run-time
    directories) are compared on neither side.
    """
    out = []
    for path in sorted(set(recorded) | set(found)):
        before, after = recorded.get(path), found.get(path)
        if before == _comparable(before, after) or _is_under(path, ignore):
            continue
        why = why_differs(before, after)
        if why:
            out.append({"path": path, "why": why, "before": before, "after": after})
    return out


def fold(diffs: list[dict], limit: int = FOLD_AFTER) -> list[dict]:
    """At most ``limit`` new plain files listed; the rest become one line per parent directory."""
    plain = [d for d in diffs if d["why"] in ("new file", "new symbolic link")]
    if len(plain) <= limit:
        return diffs
    hidden = {id(d) for d in plain[limit:]}
    per_dir: dict[str, int] = {}
    for d in plain[limit:]:
        parent = os.path.dirname(d["path"]) or "/"
        per_dir[parent] = per_dir.get(parent, 0) + 1
    kept = [d for d in diffs if id(d) not in hidden]
    for parent, count in sorted(per_dir.items()):
        kept.append({"path": f"{parent}/...", "why": f"{count} more new files (folded)", "before": None,
                     "after": f"{count} more"})  # fmt: skip
    return kept


def diff_lines(tree_label: str, diffs: list[dict]) -> tuple[str, str]:
    """(before, after) texts for Ansible's diff: one line per path, the manifest's view and the disk's."""
    before, after = [], []
    for d in diffs:
        before.append(f"{tree_label}{d['path']}  {d['before'] or '(absent)'}")
        after.append(f"{tree_label}{d['path']}  {d['after'] or '(absent)'}  # {d['why']}")
    return "".join(line + "\n" for line in before), "".join(line + "\n" for line in after)


def describe(tree: str, diffs: list[dict], limit: int = 20) -> str:
    """One sentence per tree for a failure message."""
    items = [f"{d['path']} ({d['why']})" for d in diffs[:limit]]
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return f"{tree} differs from its manifest: {'; '.join(items)}{more}"
