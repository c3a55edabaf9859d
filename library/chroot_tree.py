#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
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
requirements:
  - debootstrap, dnf and rpm, or tar on the managed node, for the bootstrapper in use.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - aerie.grid.aerie_chroot
attributes:
  check_mode:
    support: full
    details: Nothing is built; C(changed) says whether a build would run.
  diff_mode:
    support: full
    details: The version's path and inputs.
  platform:
    platforms: linux
author:
  - aerie (@aerie)
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

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot import (
    MANIFEST,
    current_version,
    inputs_differences,
    read_manifest,
    tree_dirname,
    tree_lock,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot_build import (
    Steps,
    build,
    fix_root,
    normalise_inputs,
    plan_mode,
    plan_root,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError


def plan(p: dict, result: dict) -> dict:
    """What this run would do, from what is on disk; nothing is touched. AerieError for a refused request.

    Fills the module's ``result`` (check mode reports it as it is) and returns
    the work left for apply: fix the trees' parent, build the version.
    """
    name, version, root = p["name"], p["version"], p["root"]
    final = result["path"] = os.path.join(root, tree_dirname(name, version))
    inputs = normalise_inputs(p)
    work = {"result": result, "inputs": inputs, "final": final, "fix_root": plan_root(root), "build": False,
            "existing": read_manifest(final) if os.path.isdir(final) else None}  # fmt: skip
    existing = work["existing"]
    result["changed"] = work["fix_root"]
    if os.path.lexists(final) and existing is None:
        raise AerieError(f"{final} exists but has no {MANIFEST}: not a tree aerie built; move it away")
    if existing is not None and not p["force"]:
        diff = inputs_differences(existing.get("inputs", {}), inputs)
        if diff:
            raise AerieError(
                f"version {version} of {name} already exists with different inputs ({', '.join(diff)}): "
                "versions are immutable; build a new version (or rebuild this one with force=true)"
            )
        result["manifest"] = existing
        return work
    if existing is not None and current_version(root, name) == version:
        raise AerieError(f"force refused: {final} is the current version of {name}; switch away from it first")
    mode, base, notes = plan_mode(p, inputs)
    result.update(changed=True, built=True, build_mode=mode, base_version=base, build_notes=notes)
    result["diff"] = {"before": {"path": final if existing else None, "inputs": (existing or {}).get("inputs")},
                      "after": {"path": final, "inputs": inputs}}  # fmt: skip
    work["build"] = True
    return work


def apply(module: AnsibleModule, work: dict) -> None:
    p, result = module.params, work["result"]
    if work["fix_root"]:
        fix_root(p["root"])
    if work["build"]:
        with tree_lock(p["name"]) as lock:
            steps = Steps(lock.fileno(), p["timeout_seconds"], lambda url: fetch_url(module, url, timeout=60))
            result["manifest"] = build(steps, p, work["inputs"], work["final"], work["existing"], result)


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
    result = {"changed": False, "built": False, "manifest": {}, "cleaned": [], "build_mode": None,
              "base_version": None, "build_notes": []}  # fmt: skip
    try:
        work = plan(module.params, result)
        if not module.check_mode:
            apply(module, work)
    except AerieError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
