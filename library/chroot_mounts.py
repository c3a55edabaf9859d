#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: bind mounts into every kept version of a named chroot tree."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chroot_mounts
short_description: Bind-mount host paths into every version of a chroot tree, persistently
description:
  - For every version C(ROOT/NAME-vVERSION) on disk, ensures each entry of
    O(mounts) is bind-mounted into it. What is mounted is read from
    C(/proc/self/mountinfo), so nothing is ever mounted twice.
  - Keeps one managed block per name in O(fstab) listing exactly those
    mounts, so systemd's fstab generator restores them at boot; entries of
    versions that no longer exist drop out of the block.
  - Mount targets missing in a tree are created (directories, or empty files
    for file sources), resolving symbolic links with the tree as C(/).
  - A mount the managed block lists that is no longer declared (taken out of
    O(mounts), or its source gone) is unmounted when still mounted, so
    removing an entry takes effect at once, not at the next reboot.
version_added: "0.1.0"
options:
  mounts:
    description: Host paths to bind-mount, in mount order (parents before children, C(/dev) before C(/dev/pts)).
    type: list
    elements: dict
    required: true
    suboptions:
      src:
        description: Host path.
        type: path
        required: true
      dest:
        description: Path inside the tree; defaults to O(mounts[].src).
        type: path
      optional:
        description: Skip (with a warning) when O(mounts[].src) does not exist instead of failing.
        type: bool
        default: false
      readonly:
        description: Mount read-only.
        type: bool
        default: false
  fstab:
    description: File holding the persistent entries.
    type: path
    default: /etc/fstab
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - aerie.grid.aerie_chroot
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The managed block of O(fstab).
  platform:
    platforms: linux
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Ensure system directories are bind-mounted into every sl5 version
  chroot_mounts:
    name: sl5
    mounts:
      - src: /proc
      - src: /dev
      - src: /dev/pts
      - src: /etc/passwd
      - src: /cvmfs
        optional: true
"""

RETURN = r"""
mounted:
  description: Mount points mounted by this run.
  type: list
  elements: str
  returned: always
unmounted:
  description: Mount points unmounted by this run (listed in the managed block, no longer declared).
  type: list
  elements: str
  returned: always
skipped_sources:
  description: Optional sources that do not exist on the host.
  type: list
  elements: str
  returned: always
versions:
  description: Versions the mounts apply to.
  type: list
  elements: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot import (
    list_versions,
    resolve_in_tree,
    tree_dirname,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot_mounts import (
    FSTAB_BANNER,
    MOUNT_OPTIONS,
    block_label,
    fstab_line,
    mounted_points,
    withdrawn,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import (
    AerieError,
    fstab_block,
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
            mounts=dict(
                type="list",
                elements="dict",
                required=True,
                options=MOUNT_OPTIONS,
            ),
            fstab=dict(type="path", default="/etc/fstab"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name, root = p["name"], p["root"]
    result = {"changed": False, "mounted": [], "unmounted": [], "skipped_sources": [], "versions": []}
    try:
        versions = list_versions(root, name)
        result["versions"] = versions
        active = []
        for m in p["mounts"]:
            if os.path.exists(m["src"]):
                active.append(m)
            elif m["optional"]:
                result["skipped_sources"].append(m["src"])
            else:
                raise AerieError(f"bind mount source {m['src']} does not exist on the host (mark it optional?)")
        mounted = mounted_points(read_mounts())
        body = []
        for version in versions:
            tree = os.path.join(root, tree_dirname(name, version))
            for m in active:
                target = resolve_in_tree(tree, m["dest"] or m["src"])
                body.append(fstab_line(m["src"], target, m["readonly"]))
                if target in mounted:
                    continue
                result["changed"] = True
                result["mounted"].append(target)
                if module.check_mode:
                    continue
                if os.path.isdir(m["src"]):
                    os.makedirs(target, mode=0o755, exist_ok=True)
                elif not os.path.exists(target):
                    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                    with open(target, "a", encoding="utf-8"):
                        os.chmod(target, 0o644)
                argv = ["mount", "--bind", m["src"], target]
                rc, _out, err = module.run_command(argv)
                if rc == 0 and m["readonly"]:
                    rc, _out, err = module.run_command(["mount", "-o", "remount,bind,ro", target])
                if rc != 0:
                    raise AerieError(f"cannot bind-mount {m['src']} on {target}: {err.strip()}")
        before = read_text(p["fstab"])
        old_block = fstab_block(before, block_label(name))
        for target in withdrawn(old_block, body):
            if target not in mounted:
                continue
            result["changed"] = True
            result["unmounted"].append(target)
            if not module.check_mode:
                rc, _out, err = module.run_command(["umount", target])
                if rc != 0:
                    raise AerieError(f"cannot unmount {target}, no longer declared: {err.strip()}")
        if old_block != ([f"# {FSTAB_BANNER}", *body] if body else []):
            after = set_fstab_block(before, block_label(name), body, FSTAB_BANNER)
            result["changed"] = True
            result["fstab_changed"] = True
            result["diff"] = {"before": before, "after": after, "before_header": p["fstab"], "after_header": p["fstab"]}
            if not module.check_mode:
                write_atomic(p["fstab"], after, 0o644)
        module.exit_json(**result)
    except AerieError as exc:
        module.fail_json(msg=str(exc), **result)


if __name__ == "__main__":
    main()
