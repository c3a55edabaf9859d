#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: every kept version of a chroot tree is what its manifest says."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chroot_verify
short_description: Report where the kept versions of a chroot tree differ from their manifests
description:
  - A version C(ROOT/NAME-vVERSION) is immutable once built; its manifest
    records the inventory of the tree (type, mode with setuid/setgid/sticky
    bits, owner, group; the content digest of every setuid/setgid or
    executable file; the
    target of every symbolic link).
  - Walks every kept version (current, previous and the others) without
    following symbolic links or entering other filesystems and reports what
    differs - a path added with setuid/setgid, a world-writable file or
    directory (without the sticky bit) added, a mode or owner changed, a
    removed path, a changed digest, a new file, symbolic link or device -
    one line per path. A new root-owned directory alone is not reported
    (chroot_mounts creates mount targets so); what is put in it is.
  - Mount points (the kernel's, and O(mounts) resolved in each tree) are
    compared on neither side; nor is the content of the run-time directories
    the manifest names (C(/proc), C(/sys), C(/dev), C(/home), C(/tmp),
    C(/var/tmp), HTCondor's execute directory).
  - Never writes to a tree, so it runs while jobs use it. In check mode a
    tree that differs is reported as changed with a diff (the manifest's
    view before, the disk's after); otherwise the task fails naming each
    tree and its differences - the admin builds a new version or restores
    the tree.
  - A version built before the manifest kept an inventory is reported with a
    warning and does not fail.
version_added: "0.3.0"
options:
  mounts:
    description: The bind mounts of the chroot_mounts module; their targets are not compared.
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description: Host path.
        type: path
        required: true
      dest:
        description: Path inside the tree; defaults to O(mounts[].src).
        type: path
      optional:
        description: Accepted for the same list as chroot_mounts; not used.
        type: bool
        default: false
      readonly:
        description: Accepted for the same list as chroot_mounts; not used.
        type: bool
        default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - aerie.grid.aerie_chroot
attributes:
  check_mode:
    support: full
    details: Reports a differing tree as changed; never fails for one.
  diff_mode:
    support: full
    details: One line per differing path, the manifest's entry before and the disk's after.
  platform:
    platforms: linux
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Ensure every kept sl5 version is still what its manifest records
  chroot_verify:
    name: sl5
    mounts:
      - src: /proc
      - src: /dev
      - src: /home
"""

RETURN = r"""
trees:
  description:
    - Per version, C(status) (C(ok), C(differs), C(no inventory)) and its
      C(differences) (path, why, before, after).
  type: dict
  returned: always
differing:
  description: Versions that differ from their manifests.
  type: list
  elements: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot import (
    MANIFEST,
    list_versions,
    read_manifest,
    resolve_in_tree,
    tree_dirname,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot_mounts import MOUNT_OPTIONS
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot_verify import (
    INVENTORY,
    NO_INVENTORY,
    SKIPPED,
    describe,
    diff_lines,
    differences,
    fold,
    inventory,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError, mounts_under, read_mounts


def check_tree(tree: str, mounts: list[dict], mounted: list) -> dict:
    """Status and differences of one version (reads only)."""
    manifest = read_manifest(tree) or {}
    recorded = manifest.get(INVENTORY)
    if recorded is None:
        return {"status": "no inventory", "differences": []}
    skipped = manifest.get(SKIPPED) or []
    ignore = {"/" + os.path.relpath(resolve_in_tree(tree, m["dest"] or m["src"]), tree) for m in mounts}
    ignore |= {"/" + os.path.relpath(point, tree) for point in mounts_under(mounted, tree) if point != tree}
    found = inventory(tree, skipped, ignore, exclude=("/" + MANIFEST,))
    diffs = fold(differences(recorded, found, ignore))
    return {"status": "differs" if diffs else "ok", "differences": diffs}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            root=dict(type="path", default="/chroot"),
            mounts=dict(
                type="list",
                elements="dict",
                default=[],
                options=MOUNT_OPTIONS,
            ),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name, root = p["name"], p["root"]
    result = {"changed": False, "trees": {}, "differing": []}
    try:
        mounted = read_mounts()
        before, after, problems = "", "", []
        for version in list_versions(root, name):
            tree = os.path.join(root, tree_dirname(name, version))
            checked = check_tree(tree, p["mounts"], mounted)
            result["trees"][version] = checked
            if checked["status"] == "no inventory":
                module.warn(f"{tree}: {NO_INVENTORY}")
            elif checked["differences"]:
                result["differing"].append(version)
                old, new = diff_lines(tree, checked["differences"])
                before, after = before + old, after + new
                problems.append(describe(tree, checked["differences"]))
        if not problems:
            module.exit_json(**result)
        headers = {"before_header": f"{root}/{name}-v* (manifests)", "after_header": f"{root}/{name}-v* (disk)"}
        result["diff"] = {"before": before, "after": after, **headers}
        if module.check_mode:
            result["changed"] = True
            module.exit_json(**result)
        module.fail_json(
            msg="; ".join(problems) + ". A version is immutable once built: inspect it, then build a new version "
            "(bump its version) or restore the tree; a kept version that is not current can be removed by hand.",
            **result,
        )
    except AerieError as exc:
        module.fail_json(msg=str(exc), **result)


if __name__ == "__main__":
    main()
