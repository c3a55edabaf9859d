#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: which versions of a named chroot tree are kept on disk."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chroot_retention
short_description: Keep the newest versions of a chroot tree and safely delete the others
description:
  - Keeps the newest O(keep_count) versions of C(ROOT/NAME-vVERSION) (natural
    version order, 2 before 10) plus the current one (the stable link's target)
    and the previous one (from the local fact file); deletes the rest.
  - Before deleting a tree, refuses while any process has its root or
    working directory inside it (C(/proc/*/root), C(/proc/*/cwd)) and
    names those processes; then unmounts everything mounted under the tree,
    deepest first, verifies nothing is left mounted, drops the tree's
    entries from the managed C(/etc/fstab) block, renames the tree to a
    hidden C(.delete-) name and removes it.
  - Leftovers of an interrupted delete are removed too.
version_added: "0.1.0"
options:
  keep_count:
    description: Newest versions to keep besides the current and previous ones.
    type: int
    default: 2
  fact_file:
    description: Local fact file written by chroot_release (source of the previous version).
    type: path
    default: /etc/ansible/facts.d/chroot.fact
  fstab:
    description: File holding the managed bind-mount entries.
    type: path
    default: /etc/fstab
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - aerie.grid.aerie_chroot
attributes:
  check_mode:
    support: full
    details: The busy check still runs.
  diff_mode:
    support: full
    details: The versions on disk before and after.
  platform:
    platforms: linux
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Ensure only the newest two sl5 versions (plus current and previous) are kept
  chroot_retention:
    name: sl5
    keep_count: 2
"""

RETURN = r"""
removed:
  description: Versions deleted (or, in check mode, that would be).
  type: list
  elements: str
  returned: always
kept:
  description: Versions kept.
  type: list
  elements: str
  returned: always
unmounted:
  description: Mount points unmounted before deleting.
  type: list
  elements: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot import (
    DELETE_MARK,
    busy_processes,
    current_version,
    delete_tree,
    describe_busy,
    list_scratch,
    list_versions,
    load_facts,
    select_for_removal,
    tree_dirname,
    tree_lock,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot_mounts import (
    FSTAB_BANNER,
    block_label,
    unmount_under,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import (
    AerieError,
    drop_fstab_entries_under,
    fstab_block,
    mounts_under,
    read_mounts,
    read_text,
    set_fstab_block,
    write_atomic,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            root=dict(type="path", default="/chroot"),
            keep_count=dict(type="int", default=2),
            fact_file=dict(type="path", default="/etc/ansible/facts.d/chroot.fact"),
            fstab=dict(type="path", default="/etc/fstab"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name, root = p["name"], p["root"]
    result = {"changed": False, "removed": [], "kept": [], "unmounted": []}

    def unmount(top):
        result["unmounted"] += unmount_under(top, module.run_command)

    try:
        versions = list_versions(root, name)
        facts = load_facts(p["fact_file"])
        protected = {current_version(root, name), facts.get("trees", {}).get(name, {}).get("previous")}
        doomed = select_for_removal(versions, p["keep_count"], protected)
        result["kept"] = [v for v in versions if v not in doomed]
        leftovers = list_scratch(root, name, DELETE_MARK)
        if not doomed and not leftovers:
            module.exit_json(**result)

        result["changed"] = True
        result["removed"] = doomed
        result["diff"] = {"before": "\n".join(versions) + "\n", "after": "\n".join(result["kept"]) + "\n"}
        trees = [os.path.join(root, tree_dirname(name, v)) for v in doomed]
        for tree in trees:
            busy = busy_processes(tree)
            if busy:
                raise AerieError(describe_busy(tree, busy))
        if module.check_mode:
            mounts = read_mounts()
            result["unmounted"] = [pt for t in trees for pt in mounts_under(mounts, t)]
            module.exit_json(**result)
        with tree_lock(name):
            for scratch in leftovers:
                delete_tree(scratch, unmount, root)
            # fstab first: a reboot halfway must not try to mount into a deleted tree.
            fstab_text = read_text(p["fstab"])
            body = fstab_block(fstab_text, block_label(name))
            for tree in trees:
                body = drop_fstab_entries_under(body, tree)
            if body != fstab_block(fstab_text, block_label(name)):
                entries = [line for line in body if not line.startswith("#")]
                write_atomic(p["fstab"], set_fstab_block(fstab_text, block_label(name), entries, FSTAB_BANNER), 0o644)
                result["fstab_changed"] = True
            for tree in trees:
                delete_tree(tree, unmount, root)
        module.exit_json(**result)
    except AerieError as exc:
        module.fail_json(msg=str(exc), **result)


if __name__ == "__main__":
    main()
