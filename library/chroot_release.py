#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: which version of a named chroot tree the stable path serves."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chroot_release
short_description: Atomically point the stable path of a chroot tree at a smoke-tested version
description:
  - Ensures the stable path C(ROOT/NAME) is a relative symbolic link to
    C(NAME-vVERSION). The switch creates a temporary link beside the stable
    path and C(rename(2))s it over the old one, so a job starting at any
    instant finds a directory (HTCondor checks NAMED_CHROOT paths at job start).
  - Before switching, the version is smoke-tested with C(chroot); the
    O(smoke_command) must exit 0 and the tree's C(/etc/os-release) or
    C(/etc/redhat-release) must be readable. A failing tree is never switched to.
  - Records C(current), C(previous) and a C(history) of switches per name in a
    JSON local fact file (read back as C(ansible_local.chroot)).
  - With O(rollback=true) and no O(version), switches to the previous version
    recorded in the fact file.
version_added: "0.1.0"
options:
  version:
    description: Version to serve. Required unless O(rollback=true).
    type: str
  rollback:
    description: Without O(version), switch to the recorded previous version.
    type: bool
    default: false
  smoke_command:
    description: Command (argument list) run inside the tree with chroot; must exit 0.
    type: list
    elements: str
    default: [/bin/sh, -c, "true"]
  fact_file:
    description: Local fact file recording current, previous and history for every name.
    type: path
    default: /etc/ansible/facts.d/chroot.fact
  history_max_count:
    description: Switches kept in the history of each name.
    type: int
    default: 20
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - aerie.grid.aerie_chroot
attributes:
  check_mode:
    support: full
    details: The smoke test still runs; it is read-only by contract.
  diff_mode:
    support: full
    details: The stable link's target.
  platform:
    platforms: linux
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Ensure /chroot/sl5 serves version 4
  chroot_release:
    name: sl5
    version: "4"

- name: Roll sl5 back to the version it served before
  chroot_release:
    name: sl5
    rollback: true
"""

RETURN = r"""
path:
  description: The stable path.
  type: str
  returned: always
  sample: /chroot/sl5
version:
  description: Version the stable path serves after the run.
  type: str
  returned: success
previous_target:
  description: Link target before the run (null when there was no link).
  type: str
  returned: always
  sample: sl5-v3
history:
  description: Recorded switches of this name, oldest first.
  type: list
  elements: dict
  returned: success
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot import (
    current_version,
    facts_agree,
    list_versions,
    load_facts,
    read_manifest,
    record_switch,
    resolve_in_tree,
    switch_link,
    tree_dirname,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError, write_atomic


def smoke_test(module, tree, command):
    """Why ``tree`` must not serve, or None when it passes."""
    readable = False
    for release in ("/etc/os-release", "/etc/redhat-release"):
        try:
            with open(resolve_in_tree(tree, release), "rb") as handle:
                handle.read(1)
            readable = True
            break
        except OSError:
            continue
    if not readable:
        return f"neither /etc/os-release nor /etc/redhat-release is readable in {tree}"
    rc, out, err = module.run_command(["chroot", tree, *command])
    if rc != 0:
        return f"smoke test `{' '.join(command)}` in {tree} exited {rc}: {(err or out).strip()[-500:]}"
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str"),
            rollback=dict(type="bool", default=False),
            root=dict(type="path", default="/chroot"),
            smoke_command=dict(type="list", elements="str", default=["/bin/sh", "-c", "true"]),
            fact_file=dict(type="path", default="/etc/ansible/facts.d/chroot.fact"),
            history_max_count=dict(type="int", default=20),
        ),
        required_one_of=[("version", "rollback")],
        supports_check_mode=True,
    )
    p = module.params
    name, root = p["name"], p["root"]
    link = os.path.join(root, name)
    result = {"changed": False, "path": link, "previous_target": None}
    try:
        if os.path.lexists(link) and not os.path.islink(link):
            raise AerieError(f"{link} exists and is not a symbolic link: move it away first")
        result["previous_target"] = os.readlink(link) if os.path.islink(link) else None
        facts = load_facts(p["fact_file"])
        current = current_version(root, name)
        version = p["version"]
        if version is None:
            version = facts.get("trees", {}).get(name, {}).get("previous")
            if not version:
                raise AerieError(f"no previous version of {name} is recorded in {p['fact_file']}: give version=N")
        tree = os.path.join(root, tree_dirname(name, version))
        if not os.path.isdir(tree) or os.path.islink(tree) or read_manifest(tree) is None:
            available = ", ".join(list_versions(root, name)) or "none"
            raise AerieError(f"version {version} of {name} does not exist ({tree}); available: {available}")

        if current != version:
            problem = smoke_test(module, tree, p["smoke_command"])
            if problem:
                raise AerieError(f"not switching {link} to version {version}: {problem}")
            result["changed"] = True
            result["diff"] = {"before": f"{link} -> {result['previous_target']}\n",
                              "after": f"{link} -> {os.path.basename(tree)}\n"}  # fmt: skip
            if not module.check_mode:
                switch_link(link, os.path.basename(tree))
        previous = current if current != version else facts.get("trees", {}).get(name, {}).get("previous")
        if current != version or not facts_agree(facts, name, link, version):
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            facts = record_switch(facts, name, link, version, previous, when, p["history_max_count"])
            result["changed"] = True
            if not module.check_mode:
                write_atomic(p["fact_file"], json.dumps(facts, indent=1, sort_keys=True) + "\n")
        result["version"] = version
        result["history"] = facts.get("trees", {}).get(name, {}).get("history", [])
        module.exit_json(**result)
    except AerieError as exc:
        module.fail_json(msg=str(exc), **result)


if __name__ == "__main__":
    main()
