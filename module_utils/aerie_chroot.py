"""Pure helpers for aerie's versioned chroot trees (stdlib only).

Layout under a root directory (default ``/chroot``)::

    /chroot/sl5           -> sl5-v4          stable path: a relative symlink
    /chroot/sl5-v3/                          kept versions, immutable once built
    /chroot/sl5-v4/.aerie-chroot.json        manifest of the version
    /chroot/.sl5-v5.build-XXXX/              a build in progress (never final)
    /chroot/.sl5-v2.delete-XXXX/             a tree being deleted
    /chroot/.sl5-v5.clone-XXXX/              read-only view of the version an
                                             incremental build copies

The chroot_tree, chroot_release, chroot_mounts and chroot_retention modules
import this file; tests/test_chroot.py calls it without root.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile

from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError, read_text

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._]*$")
MANIFEST = ".aerie-chroot.json"
BUILD_MARK = ".build-"
DELETE_MARK = ".delete-"
CLONE_MARK = ".clone-"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise AerieError(f"invalid tree name {name!r}: use letters, digits and '_' (no '-' or '/')")
    return name


def check_version(version) -> str:
    version = str(version)
    if not VERSION_RE.match(version):
        raise AerieError(f"invalid version {version!r}: use letters, digits, '.' and '_' (no '-' or '/')")
    return version


def tree_dirname(name: str, version: str) -> str:
    """Directory name of one version: ``sl5-v4``."""
    return f"{check_name(name)}-v{check_version(version)}"


def version_of(name: str, dirname: str) -> str | None:
    """The version a final-named directory holds, or None when it is not one of ``name``'s trees."""
    prefix = f"{name}-v"
    if not dirname.startswith(prefix):
        return None
    version = dirname[len(prefix) :]
    return version if VERSION_RE.match(version) else None


def version_key(version: str) -> tuple:
    """Natural order: 2 < 10, 1.9 < 1.10; digits sort before letters."""
    parts = re.findall(r"\d+|[^\d._]+", version)
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts)


def scratch_prefix(name: str, version: str, mark: str) -> str:
    """Prefix of a hidden scratch directory (build or delete) for one version."""
    return f".{tree_dirname(name, version)}{mark}"


def list_versions(root: str, name: str) -> list[str]:
    """Versions of ``name`` present under ``root`` as final-named directories, oldest first."""
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        version = version_of(name, entry)
        full = os.path.join(root, entry)
        if version is not None and os.path.isdir(full) and not os.path.islink(full):
            found.append(version)
    return sorted(found, key=version_key)


def list_scratch(root: str, name: str, mark: str) -> list[str]:
    """Leftover scratch directories of ``name`` (any version) under ``root``."""
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return []
    prefix = f".{name}-v"
    return sorted(os.path.join(root, e) for e in entries if e.startswith(prefix) and mark in e)


def read_manifest(tree: str) -> dict | None:
    text = read_text(os.path.join(tree, MANIFEST), None)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AerieError(f"{tree}: unreadable manifest {MANIFEST}: {exc}") from exc


def inputs_differences(old: dict, new: dict) -> list[str]:
    """Top-level input keys whose values differ between two manifests' ``inputs``."""
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


def clone_blockers(old: dict, new: dict) -> list[str]:
    """Why a tree built from ``old`` inputs cannot be cloned and updated into one for ``new`` inputs.

    An incremental build copies a kept version and runs the bootstrapper's
    package step in the copy (install the list, upgrade the rest). That gives
    the tree a full build would give only when the base was made from the same
    distribution, repositories and mirror, and when nothing must leave it:
    packages dropped from the list would stay, and a setuid bit that the old
    secure pass stripped cannot come back. Empty list: cloning is sound.
    """
    kind_old, kind_new = old.get("bootstrapper"), new.get("bootstrapper")
    if kind_new == "tarball":
        return ["a tarball tree is always unpacked whole"]
    section = "dnf" if kind_new in ("dnf", "yum") else kind_new
    if ("dnf" if kind_old in ("dnf", "yum") else kind_old) != section:
        return [f"bootstrapper changed ({kind_old} -> {kind_new})"]
    before, after = old.get(section) or {}, new.get(section) or {}
    listed = "packages" if section == "dnf" else "include"
    blockers = [f"{section}.{key} changed" for key in sorted(set(before) | set(after))
                if key != listed and before.get(key) != after.get(key)]  # fmt: skip
    dropped = sorted(set(before.get(listed) or []) - set(after.get(listed) or []))
    if dropped:
        blockers.append(f"{section}.{listed} no longer lists {', '.join(dropped)} (a clone would keep them)")
    regained = sorted(set(new.get("setuid_allow") or []) - set(old.get("setuid_allow") or []))
    if regained:
        blockers.append(f"setuid_allow gained {', '.join(regained)} (the copy's bits were stripped)")
    return blockers


def choose_base(new: dict, candidates: list[tuple[str, dict]], current: str | None) -> tuple[str | None, list[str]]:
    """The kept version an incremental build clones: (version or None, why each candidate was passed over).

    ``candidates`` are (version, manifest) of the kept versions. The current
    version goes first (it passed its smoke test and serves jobs), then the
    others newest first.
    """
    ordered = sorted(candidates, key=lambda c: version_key(c[0]), reverse=True)
    ordered.sort(key=lambda c: c[0] != current)  # stable: current first, then newest first
    passed_over = []
    for version, manifest in ordered:
        blockers = clone_blockers((manifest or {}).get("inputs") or {}, new)
        if not blockers:
            return version, passed_over
        passed_over.append(f"version {version}: {'; '.join(blockers)}")
    return None, passed_over


def select_for_removal(versions: list[str], keep_count: int, protected: set) -> list[str]:
    """Versions to delete: all but the newest ``keep_count`` and the protected ones (current, previous)."""
    if keep_count < 1:
        raise AerieError(f"keep_count must be at least 1, got {keep_count}")
    ordered = sorted(versions, key=version_key)
    keep = set(ordered[-keep_count:]) | {v for v in protected if v}
    return [v for v in ordered if v not in keep]


def resolve_in_tree(tree: str, path: str, max_links: int = 40) -> str:
    """Host path of ``path`` as seen from inside ``tree`` (symlinks resolved with ``tree`` as /).

    A missing final component is allowed (the result is where it would be).
    Absolute links inside the tree are taken relative to the tree, as chroot
    would; ``..`` never climbs above the tree.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(tree, *resolved, part)
        if os.path.islink(candidate):
            links += 1
            if links > max_links:
                raise AerieError(f"too many symbolic links resolving {path} in {tree}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(tree, *resolved)


def walk_tree(tree: str):
    """Yield (relative path, lstat) for every entry under ``tree``, staying on its filesystem."""
    top_dev = os.lstat(tree).st_dev
    for dirpath, dirnames, filenames in os.walk(tree):
        keep = []
        for entry in dirnames + filenames:
            full = os.path.join(dirpath, entry)
            st = os.lstat(full)
            yield "/" + os.path.relpath(full, tree), st
            if entry in dirnames and st.st_dev == top_dev and not stat.S_ISLNK(st.st_mode):
                keep.append(entry)
        dirnames[:] = [d for d in dirnames if d in keep]


def plan_secure(entries, allow: set) -> list[dict]:
    """Mode changes of the secure pass.

    ``entries``: (relative path, st_mode) pairs. Regular files lose setuid
    and setgid unless their path is in ``allow``; world-writable directories
    without the sticky bit get it (what /tmp has), other group/world-writable
    bits on directories are left alone. Symlinks never change.
    """
    changes = []
    for rel, mode in entries:
        new = mode
        if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID) and rel not in allow:
            new = mode & ~(stat.S_ISUID | stat.S_ISGID)
            reason = "setuid/setgid stripped"
        elif stat.S_ISDIR(mode) and mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            new = mode | stat.S_ISVTX
            reason = "sticky bit added to world-writable directory"
        if new != mode:
            before, after = oct(stat.S_IMODE(mode)), oct(stat.S_IMODE(new))
            changes.append({"path": rel, "before": before, "after": after, "reason": reason})
    return changes


def chain_problems(chain) -> list[str]:
    """What HTCondor would refuse in a path chain: ``chain`` is (path, uid, mode) from / down to the tree."""
    problems = []
    for path, uid, mode in chain:
        if uid != 0:
            problems.append(f"{path} is owned by uid {uid}, not root")
        if stat.S_ISDIR(mode) and mode & (stat.S_IWGRP | stat.S_IWOTH):
            problems.append(f"{path} is group- or world-writable ({oct(stat.S_IMODE(mode))})")
    return problems


def path_chain(path: str) -> list[str]:
    """``/a/b/c`` -> ['/', '/a', '/a/b', '/a/b/c']."""
    path = os.path.normpath(path)
    chain = ["/"]
    for part in [p for p in path.split("/") if p]:
        chain.append(os.path.join(chain[-1], part))
    return chain


def switch_link(link: str, target: str) -> str | None:
    """Point ``link`` at ``target`` (relative) atomically; return the previous target.

    A temporary link is created beside ``link`` and rename(2)d over it: a
    reader resolving the path at any instant sees the old or the new tree,
    never nothing (``ln -sfn`` unlinks first).
    """
    previous = os.readlink(link) if os.path.islink(link) else None
    if os.path.lexists(link) and previous is None:
        raise AerieError(f"{link} exists and is not a symbolic link: move it away first")
    directory = os.path.dirname(link) or "."
    for _attempt in range(100):
        tmp = os.path.join(directory, f".{os.path.basename(link)}.switch-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.symlink(target, tmp)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 random collisions
        raise AerieError(f"cannot create a temporary link beside {link}")
    try:
        os.rename(tmp, link)
    except OSError:
        os.unlink(tmp)
        raise
    return previous


def current_version(root: str, name: str) -> str | None:
    """Version the stable path points at, or None."""
    link = os.path.join(root, name)
    if not os.path.islink(link):
        return None
    return version_of(name, os.path.basename(os.readlink(link).rstrip("/")))


def record_switch(facts: dict, name: str, stable_path: str, version: str, previous: str | None, when: str,
                  history_max: int = 20) -> dict:
    """New local-fact data after ``name`` switched to ``version`` (``facts`` is not modified)."""
    data = json.loads(json.dumps(facts or {}))
    tree = data.setdefault("trees", {}).setdefault(name, {})
    history = tree.get("history", [])
    history.append({"version": version, "previous": previous, "at": when})
    tree.update({"path": stable_path, "current": version, "previous": previous, "history": history[-history_max:]})
    return data


def facts_agree(facts: dict, name: str, stable_path: str, version: str) -> bool:
    tree = (facts or {}).get("trees", {}).get(name, {})
    return tree.get("current") == version and tree.get("path") == stable_path


@contextlib.contextmanager
def tree_lock(name: str, lock_dir: str = "/run/lock"):
    """Serialise builds and deletions of one tree name on this node; yields the open lock file.

    Without it a second run's clean-up of "leftover" build directories would
    delete a build still in progress. The kernel drops the lock when the last
    process holding the file dies (a build's children inherit it, see
    aerie_core.run_bound), so a crashed run never blocks the next one for
    longer than its children live.
    """
    os.makedirs(lock_dir, mode=0o755, exist_ok=True)
    path = os.path.join(lock_dir, f"aerie-chroot-{check_name(name)}.lock")
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_facts(path: str) -> dict:
    """The local fact file's data ({} when missing)."""
    try:
        return json.loads(read_text(path) or "{}")
    except ValueError as exc:
        raise AerieError(f"{path} is not valid JSON: {exc}") from exc


def busy_processes(tree: str, proc: str = "/proc") -> list[dict]:
    """Processes whose root or cwd is inside ``tree`` (pid, command, what, path)."""
    tree = os.path.realpath(tree)
    found = []
    for pid in sorted((p for p in os.listdir(proc) if p.isdigit()), key=int):
        for what in ("root", "cwd"):
            try:
                target = os.readlink(os.path.join(proc, pid, what))
            except OSError:
                continue
            if target == tree or target.startswith(tree + "/"):
                comm = (read_text(os.path.join(proc, pid, "comm"), None) or "?").strip()
                found.append({"pid": int(pid), "command": comm, "what": what, "path": target})
    return found


def describe_busy(tree: str, busy: list[dict]) -> str:
    procs = ", ".join(f"pid {b['pid']} ({b['command']}) has its {b['what']} in {b['path']}" for b in busy)
    return f"refusing to delete {tree}: in use: {procs}"


def delete_tree(tree: str, unmount, root: str) -> str:
    """Unmount everything under ``tree`` (``unmount(path)``), then delete it.

    The tree is first renamed to a hidden ``.delete-`` name in ``root`` so an
    interrupted delete never leaves a half-deleted tree under a final name.
    Returns the scratch path that was removed.
    """
    if not os.path.isdir(tree) or os.path.islink(tree):
        os.unlink(tree)  # a partial download beside a build directory
        return tree
    unmount(tree)
    base = os.path.basename(tree.rstrip("/"))
    if DELETE_MARK in base or BUILD_MARK in base:
        scratch = tree
    else:
        scratch = tempfile.mkdtemp(prefix=f".{base}{DELETE_MARK}", dir=root)
        os.rmdir(scratch)
        os.rename(tree, scratch)
    shutil.rmtree(scratch)
    return scratch
