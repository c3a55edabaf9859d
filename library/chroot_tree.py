#!/usr/bin/python
"""Ansible module: one immutable, secured version of a named chroot tree."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chroot_tree
short_description: Build one immutable version of a named chroot tree
description:
  - Ensures C(ROOT/NAME-vVERSION) exists, built by a bootstrapper
    (C(dnf)/C(yum) with C(--installroot), C(debootstrap), or a checksummed
    C(tarball)), secured and prepared for HTCondor.
  - The tree is built in a hidden directory C(ROOT/.NAME-vVERSION.build-XXXX)
    beside the final one and renamed on success (O(root) is created
    root-owned C(0755) when missing), so a half-built tree never
    carries the final name. Leftovers of an interrupted build of any version
    of the tree are unmounted and removed by the next build of that tree.
  - The secure pass strips setuid/setgid bits from every file not in
    O(setuid_allow), adds the sticky bit to world-writable directories,
    creates O(execute_dir) inside the tree, and checks that the path chain
    from C(/) to the tree is root-owned and not group/world-writable
    (HTCondor's NAMED_CHROOT requirement).
  - A manifest C(.aerie-chroot.json) in the tree records the bootstrapper,
    the inputs, the installed packages with versions and the secure pass.
  - Versions are immutable. The same inputs again change nothing; different
    inputs for an existing version fail unless O(force=true), which deletes
    and rebuilds that version (never the one the stable path points at).
  - With O(build_mode=incremental) a new version starts as a copy of a kept
    version built from the same distribution inputs (the current one first)
    and gets the bootstrapper's package step (dnf C(upgrade) and C(install),
    or C(apt-get dist-upgrade) and C(install) inside the copy), then the same
    secure pass and manifest. The copy is taken through a read-only,
    non-recursive bind mount of the base, so the base stays byte-identical
    and what is bind-mounted into it (C(/proc), C(/home), the host's
    C(/etc/passwd)) is not copied. When no kept version qualifies (see
    RV(build_notes)), the version is built in full.
version_added: "0.1.0"
author: aerie
extends_documentation_fragment: [aerie_chroot]
options:
  version:
    description: Version to build; the tree is C(ROOT/NAME-vVERSION). Letters, digits, C(.), C(_).
    type: str
    required: true
  bootstrapper:
    description: How the tree is populated.
    type: str
    required: true
    choices: [dnf, yum, debootstrap, tarball]
  dnf:
    description: Inputs for O(bootstrapper=dnf) (and C(yum), which runs dnf).
    type: dict
    suboptions:
      releasever:
        description: Value of C(--releasever).
        type: str
        required: true
      repos:
        description: Repositories, the only ones used (host repositories are never read).
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Repository id.
            type: str
            required: true
          baseurl:
            description: Base URL (C(http://), C(https://) or C(file://)).
            type: str
            required: true
          gpgcheck:
            description: Verify package signatures. Turn off only for repositories you build yourself.
            type: bool
            default: true
          gpgkey:
            description: URL of the signing key (required when O(dnf.repos[].gpgcheck=true)).
            type: str
      packages:
        description: Packages to install.
        type: list
        elements: str
        required: true
      install_weak_deps:
        description: Also install weak dependencies.
        type: bool
        default: false
  debootstrap:
    description: Inputs for O(bootstrapper=debootstrap).
    type: dict
    suboptions:
      suite:
        description: Debian suite, for example C(bullseye).
        type: str
        required: true
      mirror:
        description: Archive URL.
        type: str
        default: http://deb.debian.org/debian
      variant:
        description: debootstrap C(--variant).
        type: str
        default: minbase
      include:
        description: Extra packages.
        type: list
        elements: str
        default: []
  tarball:
    description: Inputs for O(bootstrapper=tarball).
    type: dict
    suboptions:
      src:
        description: Local path or C(http(s)://) URL of a tar archive of the tree (any compression tar reads).
        type: str
        required: true
      checksum:
        description: Required C(sha256:HEX) (or C(sha512:HEX)) of the archive.
        type: str
        required: true
  setuid_allow:
    description: Paths inside the tree (as seen from inside) that keep setuid/setgid bits.
    type: list
    elements: str
    default: []
  execute_dir:
    description: HTCondor EXECUTE path to create inside the tree (the starter puts job sandboxes there).
    type: path
    default: /var/lib/condor/execute
  build_mode:
    description:
      - V(incremental) clones a compatible kept version and updates the copy; it
        falls back to V(full) when none qualifies. A kept version qualifies when
        it was built by the same bootstrapper from the same repositories,
        release, suite, mirror and variant, its package list is contained in the
        new one, and O(setuid_allow) did not gain paths.
      - V(full) always bootstraps from scratch. Tarball trees are always full.
    type: str
    choices: [full, incremental]
    default: incremental
  force:
    description:
      - Delete and rebuild the version even though it exists. Destroys that tree.
        Refused for the version the stable path points at.
    type: bool
    default: false
  timeout_seconds:
    description: Give up on the bootstrapper after this long.
    type: int
    default: 3600
notes:
  - Supports check mode (nothing is built; RV(changed) says whether a build would run) and diff mode.
requirements:
  - debootstrap, dnf and rpm, or tar on the managed node, for the bootstrapper in use.
"""

EXAMPLES = r"""
- name: Ensure version 4 of the sl5 tree exists
  chroot_tree:
    name: sl5
    version: "4"
    bootstrapper: dnf
    dnf:
      releasever: "5"
      repos:
        - name: sl5-os
          baseurl: http://mirror.example.org/sl/5/x86_64/os/
          gpgkey: http://mirror.example.org/sl/RPM-GPG-KEY-sl
      packages: [bash, coreutils, glibc, python]
    setuid_allow: [/usr/bin/sudo]

- name: Ensure a Debian bullseye userland tree exists
  chroot_tree:
    name: deb11
    version: "1"
    bootstrapper: debootstrap
    debootstrap:
      suite: bullseye
      include: [python3]

- name: Ensure a tree unpacked from a tarball built elsewhere exists
  chroot_tree:
    name: el5
    version: "2024.1"
    bootstrapper: tarball
    tarball:
      src: https://repo.example.org/trees/el5-2024.1.tar.xz
      checksum: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
"""

RETURN = r"""
path:
  description: Final path of the tree.
  type: str
  returned: always
  sample: /chroot/sl5-v4
built:
  description: Whether this run built (or in check mode would build) the tree.
  type: bool
  returned: always
manifest:
  description: The tree's manifest (bootstrapper, inputs, packages, secure pass); empty in check mode before a build.
  type: dict
  returned: always
cleaned:
  description: Leftover build directories of interrupted runs that were removed.
  type: list
  elements: str
  returned: always
build_mode:
  description:
    - How the version was (or in check mode would be) built, V(full) or V(incremental).
    - Null when nothing was built.
  type: str
  returned: always
  sample: incremental
base_version:
  description: The kept version an incremental build copied.
  type: str
  returned: always
  sample: "3"
build_notes:
  description: Why kept versions were not cloned (a full build of O(build_mode=incremental) says why here).
  type: list
  elements: str
  returned: always
  sample: ["version 3: dnf.releasever changed"]
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time

from ansible.module_utils.aerie_chroot import (
    BUILD_MARK,
    CLONE_MARK,
    MANIFEST,
    ChrootError,
    busy_processes,
    chain_problems,
    choose_base,
    current_version,
    delete_tree,
    describe_busy,
    inputs_differences,
    list_scratch,
    list_versions,
    path_chain,
    plan_secure,
    read_manifest,
    read_text,
    resolve_in_tree,
    scratch_prefix,
    tree_dirname,
    tree_lock,
    walk_tree,
)
from ansible.module_utils.aerie_chroot_mounts import unmount_under
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url

MANIFEST_FORMAT = 1
RPM_DBPATH = "/var/lib/rpm"


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


def normalise_inputs(params: dict) -> dict:
    """The inputs a version is defined by: what the manifest records and compares."""
    kind = params["bootstrapper"]
    section = "dnf" if kind in ("dnf", "yum") else kind
    given = params.get(section)
    if not given:
        raise ChrootError(f"bootstrapper {kind!r} needs the {section!r} option")
    given = dict(given)
    if section == "dnf":
        given["repos"] = [{k: v for k, v in r.items() if v is not None} for r in given["repos"]]
        for repo in given["repos"]:
            if repo.get("gpgcheck", True) and not repo.get("gpgkey"):
                raise ChrootError(
                    f"repository {repo['name']!r} has gpgcheck on but no gpgkey: give its key "
                    "(or set gpgcheck: false for a repository you build yourself)"
                )
    if section == "tarball":
        algo, _, digest = (given.get("checksum") or "").partition(":")
        if algo not in ("sha256", "sha512") or not digest:
            raise ChrootError("tarball needs checksum: 'sha256:HEX' (or 'sha512:HEX')")
    return {
        "bootstrapper": kind,
        section: given,
        "setuid_allow": sorted(params["setuid_allow"]),
        "execute_dir": params["execute_dir"],
    }


SIGNATURE_FAILURES = ("GPG check FAILED", "is not signed", "Public key for", "NOKEY", "BAD signature")


def failure_text(what: str, rc: int, argv: list, output: str) -> str:
    """A failed command as the module reports it: what failed, the command and its last lines."""
    tail = "\n".join(output.strip().splitlines()[-15:])
    return f"{what} (rc={rc}): {' '.join(argv)}\n{tail}"


def dnf_failure(rc: int, argv: list, output: str) -> str:
    """The failure message of a dnf run: signature failures said as such."""
    if any(marker in output for marker in SIGNATURE_FAILURES):
        what = "package signature check failed (gpgcheck is on: is gpgkey the key the repository signs with?)"
    else:
        what = "dnf --installroot failed (repository unreachable or package missing?)"
    return failure_text(what, rc, argv, output)


class Builder:
    def __init__(self, module: AnsibleModule):
        self.module = module
        self.p = module.params

    def run(self, argv, what, **kwargs):
        rc, out, err = self.module.run_command(argv, **kwargs)
        if rc != 0:
            raise ChrootError(failure_text(f"{what} failed", rc, argv, err or out))
        return out

    def unmount(self, top):
        try:
            unmount_under(top, self.module.run_command, lambda: read_text("/proc/self/mountinfo"))
        except RuntimeError as exc:
            raise ChrootError(str(exc)) from exc

    def timeout_argv(self, argv):
        return ["timeout", str(self.p["timeout_seconds"]), *argv]

    def bootstrap(self, inputs, tmp):
        kind = inputs["bootstrapper"]
        if kind in ("dnf", "yum"):
            self.dnf(inputs["dnf"], tmp)
        elif kind == "debootstrap":
            cfg = inputs["debootstrap"]
            argv = ["debootstrap", f"--variant={cfg['variant']}"]
            if cfg["include"]:
                argv.append("--include=" + ",".join(cfg["include"]))
            argv += [cfg["suite"], tmp, cfg["mirror"]]
            self.run(self.timeout_argv(argv), "debootstrap")
        else:
            self.tarball(inputs["tarball"], tmp)

    def dnf(self, cfg, tmp, command=None):
        """Run one dnf command (default: install the package list) with ``tmp`` as the installroot."""
        command = command or ["install", *cfg["packages"]]
        if not shutil.which("dnf"):
            raise ChrootError("dnf is not installed on the node")
        repodir = tempfile.mkdtemp(prefix=".repos-", dir=os.path.dirname(tmp))
        try:
            with open(os.path.join(repodir, "aerie.repo"), "w", encoding="utf-8") as handle:
                handle.write(repo_file(cfg["repos"]))
            # Debian's rpm defaults its database to ~/.rpmdb; a tree's own rpm looks in /var/lib/rpm.
            with open(os.path.join(repodir, ".rpmmacros"), "w", encoding="utf-8") as handle:
                handle.write(f"%_dbpath {RPM_DBPATH}\n")
            argv = [
                "dnf", "-y", "-q", f"--installroot={tmp}", f"--releasever={cfg['releasever']}",
                f"--setopt=reposdir={repodir}", "--setopt=keepcache=0", "--setopt=cachedir=/var/cache/aerie-dnf",
                f"--setopt=install_weak_deps={cfg['install_weak_deps']}", "--disableplugin=*",
                *command,
            ]  # fmt: skip
            rc, out, err = self.module.run_command(self.timeout_argv(argv), environ_update={"HOME": repodir})
            if rc != 0:
                raise ChrootError(dnf_failure(rc, argv, out + err))
        finally:
            shutil.rmtree(repodir, ignore_errors=True)
        shutil.rmtree(os.path.join(tmp, "var/cache/aerie-dnf"), ignore_errors=True)

    def tarball(self, cfg, tmp):
        algo, _, want = cfg["checksum"].partition(":")
        archive = tmp + ".archive"
        src = cfg["src"]
        digest = hashlib.new(algo)
        with open(archive, "wb") as out:
            if src.startswith(("http://", "https://")):
                resp, info = fetch_url(self.module, src, timeout=60)
                if info["status"] != 200:
                    raise ChrootError(f"cannot fetch tarball {src}: {info.get('msg')} (HTTP {info['status']})")
                reader = resp.read
            else:
                try:
                    handle = open(src, "rb")  # noqa: SIM115 - closed below
                except OSError as exc:
                    raise ChrootError(f"cannot read tarball {src}: {exc}") from exc
                reader = handle.read
            while True:
                chunk = reader(1 << 20)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
        try:
            if digest.hexdigest() != want.lower():
                got = digest.hexdigest()
                raise ChrootError(f"checksum mismatch for {src}: expected {algo}:{want}, got {algo}:{got}")
            self.run(["tar", "-x", "-p", "--numeric-owner", "-f", archive, "-C", tmp], "tar")
        finally:
            os.unlink(archive)

    def clone(self, base, tmp, view_prefix):
        """Copy the tree ``base`` into ``tmp`` as it is on disk.

        A non-recursive bind mount of the base shows the tree itself, not what
        is mounted into it (/proc, /home, the host's /etc/passwd over the
        tree's own), and read-only it guarantees the copy never writes to the
        version that serves jobs. ``--reflink=auto`` shares extents on btrfs
        and XFS; a hard-link copy would let the update write through into the
        base (bench/chroot.md).
        """
        view = tempfile.mkdtemp(prefix=view_prefix, dir=os.path.dirname(tmp))
        try:
            self.run(["mount", "--bind", base, view], "bind-mounting the base version")
            self.run(["mount", "-o", "remount,bind,ro", view], "making the view of the base version read-only")
            self.run(["cp", "-a", "--reflink=auto", view + "/.", tmp], "copying the base version")
        finally:
            self.release_view(view)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(tmp, MANIFEST))

    def release_view(self, view):
        """Unmount a read-only view of a base version and remove its mount point (never its content)."""
        self.unmount(view)
        try:
            os.rmdir(view)
        except OSError as exc:
            raise ChrootError(f"cannot remove the base view {view}: {exc}") from exc

    def update(self, inputs, tree):
        """The package step of an incremental build, in the copy ``tree``."""
        if inputs["bootstrapper"] in ("dnf", "yum"):
            cfg = inputs["dnf"]
            self.dnf(cfg, tree, ["upgrade"])
            self.dnf(cfg, tree)
        else:
            self.apt(inputs["debootstrap"], tree)

    def apt(self, cfg, tree):
        """apt-get inside a copied Debian tree: what a fresh debootstrap of the same inputs would install."""
        self.run(["mount", "-t", "proc", "proc", os.path.join(tree, "proc")], "mounting /proc in the copy")
        resolv = os.path.join(tree, "etc/resolv.conf")
        if os.path.isfile("/etc/resolv.conf") and os.path.isfile(resolv) and not os.path.islink(resolv):
            # The tree's copy is the resolver of the day it was bootstrapped.
            self.run(["mount", "--bind", "/etc/resolv.conf", resolv], "bind-mounting the host's resolv.conf")
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
            self.run(self.timeout_argv([*apt, "update"]), "apt-get update in the copy (mirror unreachable?)",
                     environ_update=env)  # fmt: skip
            self.run(self.timeout_argv([*apt, "dist-upgrade"]), "apt-get dist-upgrade in the copy", environ_update=env)
            if cfg["include"]:
                argv = [*apt, "install", "--no-install-recommends", *cfg["include"]]
                self.run(self.timeout_argv(argv), "apt-get install in the copy", environ_update=env)
            self.run([*apt, "clean"], "apt-get clean in the copy", environ_update=env)
        finally:
            if ours:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(policy)
            self.unmount(tree)

    def packages(self, tree):
        if os.path.isdir(os.path.join(tree, "var/lib/dpkg")) and shutil.which("dpkg-query"):
            out = self.run(
                ["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-W", "-f", "${Package}\t${Version}\n"], "dpkg-query"
            )
        elif shutil.which("rpm") and os.path.isdir(os.path.join(tree, RPM_DBPATH.lstrip("/"))):
            fmt = "%{NAME}\t%{VERSION}-%{RELEASE}.%{ARCH}\n"
            out = self.run(["rpm", "--root", tree, "--dbpath", RPM_DBPATH, "-qa", "--qf", fmt], "rpm -qa")
        else:
            return {}
        return dict(sorted(line.split("\t", 1) for line in out.splitlines() if "\t" in line))

    def secure(self, tree, allow_paths, execute_dir):
        allow = set()
        for path in allow_paths:
            allow.add("/" + os.path.relpath(resolve_in_tree(tree, path), tree))
        entries = [(rel, st.st_mode) for rel, st in walk_tree(tree)]
        changes = plan_secure(entries, allow)
        for change in changes:
            os.chmod(os.path.join(tree, change["path"].lstrip("/")), int(change["after"], 8))
        # The EXECUTE path chain inside the tree: root-owned, 0755 (HTCondor checks each component).
        target = resolve_in_tree(tree, execute_dir)
        os.makedirs(target, mode=0o755, exist_ok=True)
        rel = os.path.relpath(target, tree)
        for sub in path_chain("/" + rel)[1:]:
            full = os.path.join(tree, sub.lstrip("/"))
            os.chown(full, 0, 0)
            os.chmod(full, os.lstat(full).st_mode & 0o1755 | 0o755)
        return changes


def ensure_root(module, root):
    """The trees' parent: root-owned 0755, and every directory above it safe for HTCondor. True when changed."""
    created = not os.path.isdir(root)
    if created:
        if module.check_mode:
            return True
        os.makedirs(root, mode=0o755)
    st = os.stat(root)
    changed = created or (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (0, 0, 0o755)
    if changed and not module.check_mode:
        os.chown(root, 0, 0)
        os.chmod(root, 0o755)
    chain = [(p, os.stat(p).st_uid, os.stat(p).st_mode) for p in path_chain(root)]
    problems = chain_problems(chain[:-1])
    if problems:
        raise ChrootError(
            "the path chain to the trees must be root-owned and not group/world-writable: " + "; ".join(problems)
        )
    return changed


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


def plan_mode(params, inputs):
    """(mode, base version or None, notes): how the version would be built now."""
    if params["build_mode"] == "full":
        return "full", None, []
    root, name = params["root"], params["name"]
    candidates = [(v, read_manifest(os.path.join(root, tree_dirname(name, v))))
                  for v in list_versions(root, name) if v != params["version"]]  # fmt: skip
    candidates = [(v, m) for v, m in candidates if m is not None]
    if not candidates:
        return "full", None, [f"no kept version of {name} to clone"]
    base, notes = choose_base(inputs, candidates, current_version(root, name))
    return ("incremental" if base else "full"), base, notes


def build(module, builder, inputs, final, existing, result):
    """Build ``final`` in a scratch directory beside it; return the manifest (caller holds the tree lock)."""
    p = module.params
    name, version, root = p["name"], p["version"], p["root"]
    if existing is None and read_manifest(final) is not None:
        # Another run built it while this one waited for the lock.
        result["changed"] = result["built"] = False
        return read_manifest(final)
    # A killed earlier run may have left a build directory (with debootstrap's
    # /proc mounted in it) and, for an incremental build, the base's view. The
    # tree lock is held, so no build of this name is in progress: every such
    # leftover is stale, whatever version it was for.
    for stale in list_scratch(root, name, CLONE_MARK):
        builder.release_view(stale)
        result["cleaned"].append(stale)
    for stale in list_scratch(root, name, BUILD_MARK):
        delete_tree(stale, builder.unmount, root)
        result["cleaned"].append(stale)
    if existing is not None:
        in_use = busy_processes(final)
        if in_use:
            raise ChrootError(describe_busy(final, in_use))
        delete_tree(final, builder.unmount, root)

    # Planned again under the lock: a base chosen before it may have been deleted since.
    mode, base, notes = plan_mode(p, inputs)
    result.update(build_mode=mode, base_version=base, build_notes=notes)
    tmp = tempfile.mkdtemp(prefix=scratch_prefix(name, version, BUILD_MARK), dir=root)
    os.chmod(tmp, 0o755)
    started = time.time()
    try:
        if base is None:
            builder.bootstrap(inputs, tmp)
        else:
            builder.clone(os.path.join(root, tree_dirname(name, base)), tmp, scratch_prefix(name, version, CLONE_MARK))
            builder.update(inputs, tmp)
        secured = builder.secure(tmp, p["setuid_allow"], p["execute_dir"])
        if base is not None:
            secured = inherited_secure_pass(read_manifest(os.path.join(root, tree_dirname(name, base))), tmp, secured)
        manifest = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "version": version,
            "inputs": inputs,
            "build": {"mode": mode, "base_version": base, "notes": notes},
            "packages": builder.packages(tmp),
            "secure_pass": secured,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.time() - started, 1),
        }
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
        os.chmod(os.path.join(tmp, MANIFEST), 0o644)
        builder.unmount(tmp)
        os.rename(tmp, final)
    except BaseException:
        # Report the build's error; a scratch directory left behind is removed by the next run.
        with contextlib.suppress(Exception):
            delete_tree(tmp, builder.unmount, root)
        raise
    return manifest


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str", required=True),
            root=dict(type="path", default="/chroot"),
            bootstrapper=dict(type="str", required=True, choices=["dnf", "yum", "debootstrap", "tarball"]),
            dnf=dict(
                type="dict",
                options=dict(
                    releasever=dict(type="str", required=True),
                    repos=dict(
                        type="list",
                        elements="dict",
                        required=True,
                        options=dict(
                            name=dict(type="str", required=True),
                            baseurl=dict(type="str", required=True),
                            gpgcheck=dict(type="bool", default=True),
                            gpgkey=dict(type="str", no_log=False),
                        ),
                    ),
                    packages=dict(type="list", elements="str", required=True),
                    install_weak_deps=dict(type="bool", default=False),
                ),
            ),
            debootstrap=dict(
                type="dict",
                options=dict(
                    suite=dict(type="str", required=True),
                    mirror=dict(type="str", default="http://deb.debian.org/debian"),
                    variant=dict(type="str", default="minbase"),
                    include=dict(type="list", elements="str", default=[]),
                ),
            ),
            tarball=dict(
                type="dict",
                options=dict(src=dict(type="str", required=True), checksum=dict(type="str", required=True)),
            ),
            setuid_allow=dict(type="list", elements="str", default=[]),
            execute_dir=dict(type="path", default="/var/lib/condor/execute"),
            build_mode=dict(type="str", default="incremental", choices=["full", "incremental"]),
            force=dict(type="bool", default=False),
            timeout_seconds=dict(type="int", default=3600),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "built": False, "manifest": {}, "cleaned": [], "build_mode": None,
              "base_version": None, "build_notes": []}  # fmt: skip
    try:
        name, version, root = p["name"], p["version"], p["root"]
        final = os.path.join(root, tree_dirname(name, version))
        result["path"] = final
        inputs = normalise_inputs(p)
        result["changed"] = ensure_root(module, root)
        builder = Builder(module)

        existing = read_manifest(final) if os.path.isdir(final) else None
        if os.path.lexists(final) and existing is None:
            raise ChrootError(f"{final} exists but has no {MANIFEST}: not a tree aerie built; move it away")
        if existing is not None and not p["force"]:
            diff = inputs_differences(existing.get("inputs", {}), inputs)
            if diff:
                raise ChrootError(
                    f"version {version} of {name} already exists with different inputs ({', '.join(diff)}): "
                    "versions are immutable; build a new version (or rebuild this one with force=true)"
                )
            result["manifest"] = existing
            module.exit_json(**result)

        if existing is not None and current_version(root, name) == version:
            raise ChrootError(f"force refused: {final} is the current version of {name}; switch away from it first")

        result["changed"] = result["built"] = True
        mode, base, notes = plan_mode(p, inputs)
        result.update(build_mode=mode, base_version=base, build_notes=notes)
        result["diff"] = {"before": {"path": final if existing else None, "inputs": (existing or {}).get("inputs")},
                          "after": {"path": final, "inputs": inputs}}  # fmt: skip
        if module.check_mode:
            module.exit_json(**result)

        with tree_lock(name):
            manifest = build(module, builder, inputs, final, existing, result)
        result["manifest"] = manifest
        module.exit_json(**result)
    except ChrootError as exc:
        module.fail_json(msg=str(exc), **result)


if __name__ == "__main__":
    main()
