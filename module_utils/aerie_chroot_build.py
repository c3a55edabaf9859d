"""How chroot_tree builds one version of a tree: one class per bootstrapper behind one interface.

``Bootstrapper`` is the interface: ``check`` validates a version's inputs
(before anything is touched), ``bootstrap`` populates an empty directory,
``update`` is the package step of an incremental build inside a copy of a
kept version. ``Dnf`` (dnf and yum), ``Debootstrap`` and ``Tarball``
implement it; ``build`` does what every tree gets whatever its bootstrapper
(scratch directory, copy of a base, secure pass, manifest, rename).

Every command runs through ``Steps.run``: a child bound to the module
(aerie_core.run_bound) that holds the tree lock while it lives.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time

from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot as chroot
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot_verify as verify
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot_mounts import unmount_under
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError, run_bound

MANIFEST_FORMAT = 1
RPM_DBPATH = "/var/lib/rpm"
SIGNATURE_FAILURES = ("GPG check FAILED", "is not signed", "Public key for", "NOKEY", "BAD signature")


def failure_text(what: str, rc: int, argv: list, output: str) -> str:
    """A failed command as the module reports it: what failed, the command and its last lines."""
    tail = "\n".join(output.strip().splitlines()[-15:])
    return f"{what} (rc={rc}): {' '.join(argv)}\n{tail}"


class Steps:
    """How a build runs its commands and fetches its downloads.

    ``lock_fd`` is the tree lock's descriptor, inherited by every command
    (aerie_core.run_bound); ``timeout_seconds`` bounds the bootstrapper's
    long steps; ``fetch(url)`` returns (response, info) like Ansible's
    fetch_url.
    """

    def __init__(self, lock_fd: int, timeout_seconds: int, fetch=None):
        self.lock_fd = lock_fd
        self.timeout_seconds = timeout_seconds
        self.fetch = fetch

    def call(self, argv: list[str], env: dict | None = None, bounded: bool = False) -> tuple[int, str, str]:
        """(rc, stdout, stderr) of ``argv``; ``bounded`` applies the bootstrapper's time limit."""
        return run_bound(argv, hold_fds=(self.lock_fd,), env=env,
                         timeout_seconds=self.timeout_seconds if bounded else 0)  # fmt: skip

    def run(self, argv: list[str], what: str, env: dict | None = None, bounded: bool = False) -> str:
        """stdout of ``argv``; AerieError naming ``what`` when it fails."""
        rc, out, err = self.call(argv, env, bounded)
        if rc != 0:
            raise AerieError(failure_text(f"{what} failed", rc, argv, err or out))
        return out

    def unmount(self, top: str) -> None:
        unmount_under(top, self.call)


class Bootstrapper:
    """One way to populate a tree. ``cfg`` is the bootstrapper's checked option section."""

    section = ""  # the module option holding the inputs

    def __init__(self, steps: Steps, cfg: dict):
        self.steps = steps
        self.cfg = cfg

    @classmethod
    def check(cls, given: dict) -> dict:
        """The inputs as the manifest records them; AerieError for inputs that cannot build."""
        return dict(given)

    def bootstrap(self, tree: str) -> None:
        raise NotImplementedError

    def update(self, tree: str) -> None:
        raise AerieError(f"a {self.section} tree cannot be updated in place")


def repo_file(repos: list[dict]) -> str:
    """dnf .repo text for the given repositories (gpgcheck defaults on)."""
    out = []
    for repo in repos:
        gpgcheck = repo.get("gpgcheck", True) is not False
        out += [f"[{repo['name']}]", f"name={repo['name']}", f"baseurl={repo['baseurl']}", f"gpgcheck={int(gpgcheck)}"]
        if repo.get("gpgkey"):
            out.append(f"gpgkey={repo['gpgkey']}")
        out += ["enabled=1", "skip_if_unavailable=0", ""]
    return "\n".join(out)


def dnf_failure(rc: int, argv: list, output: str) -> str:
    """The failure message of a dnf run: signature failures said as such."""
    if any(marker in output for marker in SIGNATURE_FAILURES):
        what = "package signature check failed (gpgcheck is on: is gpgkey the key the repository signs with?)"
    else:
        what = "dnf --installroot failed (repository unreachable or package missing?)"
    return failure_text(what, rc, argv, output)


class Dnf(Bootstrapper):
    """``dnf --installroot`` from the given repositories only (``yum`` runs dnf too)."""

    section = "dnf"

    @classmethod
    def check(cls, given: dict) -> dict:
        given = dict(given)
        given["repos"] = [{k: v for k, v in r.items() if v is not None} for r in given["repos"]]
        for repo in given["repos"]:
            if repo.get("gpgcheck", True) and not repo.get("gpgkey"):
                raise AerieError(
                    f"repository {repo['name']!r} has gpgcheck on but no gpgkey: give its key "
                    "(or set gpgcheck: false for a repository you build yourself)"
                )
        return given

    def bootstrap(self, tree: str) -> None:
        self.dnf(tree, ["install", *self.cfg["packages"]])

    def update(self, tree: str) -> None:
        self.dnf(tree, ["upgrade"])
        self.dnf(tree, ["install", *self.cfg["packages"]])

    def dnf(self, tree: str, command: list[str]) -> None:
        """Run one dnf command with ``tree`` as the installroot."""
        if not shutil.which("dnf"):
            raise AerieError("dnf is not installed on the node")
        repodir = tempfile.mkdtemp(prefix=".repos-", dir=os.path.dirname(tree))
        try:
            with open(os.path.join(repodir, "aerie.repo"), "w", encoding="utf-8") as handle:
                handle.write(repo_file(self.cfg["repos"]))
            # Debian's rpm defaults its database to ~/.rpmdb; a tree's own rpm looks in /var/lib/rpm.
            with open(os.path.join(repodir, ".rpmmacros"), "w", encoding="utf-8") as handle:
                handle.write(f"%_dbpath {RPM_DBPATH}\n")
            argv = [
                "dnf", "-y", "-q", f"--installroot={tree}", f"--releasever={self.cfg['releasever']}",
                f"--setopt=reposdir={repodir}", "--setopt=keepcache=0", "--setopt=cachedir=/var/cache/aerie-dnf",
                f"--setopt=install_weak_deps={self.cfg['install_weak_deps']}", "--disableplugin=*",
                *command,
            ]  # fmt: skip
            rc, out, err = self.steps.call(argv, env={"HOME": repodir}, bounded=True)
            if rc != 0:
                raise AerieError(dnf_failure(rc, argv, out + err))
        finally:
            shutil.rmtree(repodir, ignore_errors=True)
        shutil.rmtree(os.path.join(tree, "var/cache/aerie-dnf"), ignore_errors=True)


class Debootstrap(Bootstrapper):
    """``debootstrap`` of a Debian suite; incremental builds run apt-get inside the copy."""

    section = "debootstrap"

    def bootstrap(self, tree: str) -> None:
        argv = ["debootstrap", f"--variant={self.cfg['variant']}"]
        if self.cfg["include"]:
            argv.append("--include=" + ",".join(self.cfg["include"]))
        argv += [self.cfg["suite"], tree, self.cfg["mirror"]]
        self.steps.run(argv, "debootstrap", bounded=True)

    def update(self, tree: str) -> None:
        """apt-get inside a copied Debian tree: what a fresh debootstrap of the same inputs would install."""
        run = self.steps.run
        run(["mount", "-t", "proc", "proc", os.path.join(tree, "proc")], "mounting /proc in the copy")
        resolv = os.path.join(tree, "etc/resolv.conf")
        if os.path.isfile("/etc/resolv.conf") and os.path.isfile(resolv) and not os.path.islink(resolv):
            # The tree's copy is the resolver of the day it was bootstrapped.
            run(["mount", "--bind", "/etc/resolv.conf", resolv], "bind-mounting the host's resolv.conf")
        policy = os.path.join(tree, "usr/sbin/policy-rc.d")
        ours = not os.path.lexists(policy)
        if ours:  # no maintainer script may start a daemon in the copy
            with open(policy, "w", encoding="utf-8") as handle:
                handle.write("#!/bin/sh\nexit 101\n")
            os.chmod(policy, 0o755)
        env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        apt = ["chroot", tree, "apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confdef",
               "-o", "Dpkg::Options::=--force-confold"]  # fmt: skip
        try:
            run([*apt, "update"], "apt-get update in the copy (mirror unreachable?)", env, bounded=True)
            run([*apt, "dist-upgrade"], "apt-get dist-upgrade in the copy", env, bounded=True)
            if self.cfg["include"]:
                argv = [*apt, "install", "--no-install-recommends", *self.cfg["include"]]
                run(argv, "apt-get install in the copy", env, bounded=True)
            run([*apt, "clean"], "apt-get clean in the copy", env)
        finally:
            if ours:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(policy)
            self.steps.unmount(tree)


class Tarball(Bootstrapper):
    """A checksummed tar archive of a tree built elsewhere (local path or http(s) URL); always unpacked whole."""

    section = "tarball"

    @classmethod
    def check(cls, given: dict) -> dict:
        algo, _sep, digest = (given.get("checksum") or "").partition(":")
        if algo not in ("sha256", "sha512") or not digest:
            raise AerieError("tarball needs checksum: 'sha256:HEX' (or 'sha512:HEX')")
        return dict(given)

    def bootstrap(self, tree: str) -> None:
        algo, _sep, want = self.cfg["checksum"].partition(":")
        archive = tree + ".archive"
        src = self.cfg["src"]
        digest = hashlib.new(algo)
        with open(archive, "wb") as out, contextlib.ExitStack() as stack:
            if src.startswith(("http://", "https://")):
                resp, info = self.steps.fetch(src)
                if info["status"] != 200:
                    raise AerieError(f"cannot fetch tarball {src}: {info.get('msg')} (HTTP {info['status']})")
                reader = resp.read
            else:
                try:
                    reader = stack.enter_context(open(src, "rb")).read
                except OSError as exc:
                    raise AerieError(f"cannot read tarball {src}: {exc}") from exc
            while chunk := reader(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        try:
            if digest.hexdigest() != want.lower():
                got = digest.hexdigest()
                raise AerieError(f"checksum mismatch for {src}: expected {algo}:{want}, got {algo}:{got}")
            self.steps.run(["tar", "-x", "-p", "--numeric-owner", "-f", archive, "-C", tree], "tar")
        finally:
            os.unlink(archive)


BOOTSTRAPPERS = {"dnf": Dnf, "yum": Dnf, "debootstrap": Debootstrap, "tarball": Tarball}


def normalise_inputs(params: dict) -> dict:
    """The inputs a version is defined by: what the manifest records and compares."""
    kind = params["bootstrapper"]
    cls = BOOTSTRAPPERS[kind]
    given = params.get(cls.section)
    if not given:
        raise AerieError(f"bootstrapper {kind!r} needs the {cls.section!r} option")
    return {
        "bootstrapper": kind,
        cls.section: cls.check(given),
        "setuid_allow": sorted(params["setuid_allow"]),
        "execute_dir": params["execute_dir"],
    }


def bootstrapper_for(inputs: dict, steps: Steps) -> Bootstrapper:
    cls = BOOTSTRAPPERS[inputs["bootstrapper"]]
    return cls(steps, inputs[cls.section])


# --- what every tree gets, whatever its bootstrapper -----------------------------


def plan_root(root: str) -> bool:
    """Whether the trees' parent must be created or made root-owned 0755 (see fix_root).

    AerieError when a directory above it would make HTCondor refuse every
    tree (not root-owned, or group/world-writable).
    """
    chain = [(p, os.stat(p).st_uid, os.stat(p).st_mode) for p in chroot.path_chain(root)[:-1] if os.path.isdir(p)]
    problems = chroot.chain_problems(chain)
    if problems:
        raise AerieError(
            "the path chain to the trees must be root-owned and not group/world-writable: " + "; ".join(problems)
        )
    if not os.path.isdir(root):
        return True
    st = os.stat(root)
    return (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (0, 0, 0o755)


def fix_root(root: str) -> None:
    os.makedirs(root, mode=0o755, exist_ok=True)
    os.chown(root, 0, 0)
    os.chmod(root, 0o755)


def clone(steps: Steps, base: str, tree: str, view_prefix: str) -> None:
    """Copy the tree ``base`` into ``tree`` as it is on disk.

    A non-recursive bind mount of the base shows the tree itself, not what
    is mounted into it (/proc, /home, the host's /etc/passwd over the
    tree's own), and read-only it guarantees the copy never writes to the
    version that serves jobs. ``--reflink=auto`` shares extents on btrfs
    and XFS; a hard-link copy would let the update write through into the
    base (bench/chroot.md).
    """
    view = tempfile.mkdtemp(prefix=view_prefix, dir=os.path.dirname(tree))
    try:
        steps.run(["mount", "--bind", base, view], "bind-mounting the base version")
        steps.run(["mount", "-o", "remount,bind,ro", view], "making the view of the base version read-only")
        steps.run(["cp", "-a", "--reflink=auto", view + "/.", tree], "copying the base version")
    finally:
        release_view(steps, view)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(tree, chroot.MANIFEST))


def release_view(steps: Steps, view: str) -> None:
    """Unmount a read-only view of a base version and remove its mount point (never its content)."""
    steps.unmount(view)
    try:
        os.rmdir(view)
    except OSError as exc:
        raise AerieError(f"cannot remove the base view {view}: {exc}") from exc


def installed_packages(steps: Steps, tree: str) -> dict:
    """Package name -> version from the tree's own package database (dpkg or rpm), {} when it has none."""
    if os.path.isdir(os.path.join(tree, "var/lib/dpkg")) and shutil.which("dpkg-query"):
        argv = ["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-W", "-f", "${Package}\t${Version}\n"]
        out = steps.run(argv, "dpkg-query")
    elif shutil.which("rpm") and os.path.isdir(os.path.join(tree, RPM_DBPATH.lstrip("/"))):
        fmt = "%{NAME}\t%{VERSION}-%{RELEASE}.%{ARCH}\n"
        out = steps.run(["rpm", "--root", tree, "--dbpath", RPM_DBPATH, "-qa", "--qf", fmt], "rpm -qa")
    else:
        return {}
    return dict(sorted(line.split("\t", 1) for line in out.splitlines() if "\t" in line))


def secure(tree: str, allow_paths: list[str], execute_dir: str) -> list[dict]:
    """The secure pass (see aerie_chroot.plan_secure) and HTCondor's EXECUTE path chain; returns the mode changes."""
    allow = {"/" + os.path.relpath(chroot.resolve_in_tree(tree, path), tree) for path in allow_paths}
    changes = chroot.plan_secure([(rel, st.st_mode) for rel, st in chroot.walk_tree(tree)], allow)
    for change in changes:
        os.chmod(os.path.join(tree, change["path"].lstrip("/")), int(change["after"], 8))
    # The EXECUTE path chain inside the tree: root-owned, 0755 (HTCondor checks each component).
    target = chroot.resolve_in_tree(tree, execute_dir)
    os.makedirs(target, mode=0o755, exist_ok=True)
    for sub in chroot.path_chain("/" + os.path.relpath(target, tree))[1:]:
        full = os.path.join(tree, sub.lstrip("/"))
        os.chown(full, 0, 0)
        os.chmod(full, os.lstat(full).st_mode & 0o1755 | 0o755)
    return changes


def inherited_secure_pass(base_manifest, tree, secured):
    """The secure pass of a copied tree: the base's changes that still hold in it, then this pass's."""
    fresh = {c["path"] for c in secured}
    kept = []
    for change in (base_manifest or {}).get("secure_pass") or []:
        try:
            mode = os.lstat(os.path.join(tree, change["path"].lstrip("/"))).st_mode
        except OSError:
            continue  # the update removed the file
        if change["path"] not in fresh and oct(mode & 0o7777) == change["after"]:
            kept.append(change)
    return sorted(kept + secured, key=lambda c: c["path"])


def record_inventory(tree: str, execute_dir: str) -> dict:
    """The manifest's ``inventory`` of ``tree`` and the paths whose content it leaves out (aerie_chroot_verify)."""
    skipped = verify.content_skipped(tree, execute_dir, chroot.resolve_in_tree)
    return {verify.INVENTORY: verify.inventory(tree, skipped), verify.SKIPPED: skipped}


def plan_mode(params: dict, inputs: dict) -> tuple[str, str | None, list[str]]:
    """(mode, base version or None, notes): how the version would be built now."""
    if params["build_mode"] == "full":
        return "full", None, []
    root, name = params["root"], params["name"]
    candidates = [(v, chroot.read_manifest(os.path.join(root, chroot.tree_dirname(name, v))))
                  for v in chroot.list_versions(root, name) if v != params["version"]]  # fmt: skip
    candidates = [(v, m) for v, m in candidates if m is not None]
    if not candidates:
        return "full", None, [f"no kept version of {name} to clone"]
    base, notes = chroot.choose_base(inputs, candidates, chroot.current_version(root, name))
    return ("incremental" if base else "full"), base, notes


def clear_leftovers(steps: Steps, root: str, name: str) -> list[str]:
    """Remove what killed builds of ``name`` left (scratch trees, still-mounted base views).

    Called under the tree lock, which every build's children hold while they
    live: no build of this name is in progress, so every leftover is stale,
    whatever version it was for.
    """
    cleaned = []
    for stale in chroot.list_scratch(root, name, chroot.CLONE_MARK):
        release_view(steps, stale)
        cleaned.append(stale)
    for stale in chroot.list_scratch(root, name, chroot.BUILD_MARK):
        chroot.delete_tree(stale, steps.unmount, root)
        cleaned.append(stale)
    return cleaned


def build(steps: Steps, params: dict, inputs: dict, final: str, existing: dict | None, result: dict) -> dict:
    """Build ``final`` in a scratch directory beside it; return the manifest (caller holds the tree lock)."""
    name, version, root = params["name"], params["version"], params["root"]
    if existing is None and chroot.read_manifest(final) is not None:
        # Another run built it while this one waited for the lock.
        result["changed"] = result["built"] = False
        return chroot.read_manifest(final)
    result["cleaned"] += clear_leftovers(steps, root, name)
    if existing is not None:
        in_use = chroot.busy_processes(final)
        if in_use:
            raise AerieError(chroot.describe_busy(final, in_use))
        chroot.delete_tree(final, steps.unmount, root)

    # Planned again under the lock: a base chosen before it may have been deleted since.
    mode, base, notes = plan_mode(params, inputs)
    result.update(build_mode=mode, base_version=base, build_notes=notes)
    bootstrapper = bootstrapper_for(inputs, steps)
    base_tree = os.path.join(root, chroot.tree_dirname(name, base)) if base is not None else None
    tmp = tempfile.mkdtemp(prefix=chroot.scratch_prefix(name, version, chroot.BUILD_MARK), dir=root)
    os.chmod(tmp, 0o755)
    started = time.time()
    try:
        if base is None:
            bootstrapper.bootstrap(tmp)
        else:
            clone(steps, base_tree, tmp, chroot.scratch_prefix(name, version, chroot.CLONE_MARK))
            bootstrapper.update(tmp)
        secured = secure(tmp, params["setuid_allow"], params["execute_dir"])
        if base is not None:
            secured = inherited_secure_pass(chroot.read_manifest(base_tree), tmp, secured)
        manifest = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "version": version,
            "inputs": inputs,
            "build": {"mode": mode, "base_version": base, "notes": notes},
            "packages": installed_packages(steps, tmp),
            "secure_pass": secured,
        }
        # Last, once nothing writes to the tree: what chroot_verify compares every later run with.
        manifest.update(record_inventory(tmp, params["execute_dir"]))
        manifest["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest["build_seconds"] = round(time.time() - started, 1)
        with open(os.path.join(tmp, chroot.MANIFEST), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
        os.chmod(os.path.join(tmp, chroot.MANIFEST), 0o644)
        steps.unmount(tmp)
        os.rename(tmp, final)
    except BaseException:
        # Report the build's error; a scratch directory left behind is removed by the next run.
        with contextlib.suppress(Exception):
            chroot.delete_tree(tmp, steps.unmount, root)
        raise
    return manifest
