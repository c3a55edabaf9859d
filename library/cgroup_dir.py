#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: a cgroup exists and its interface files hold given values."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cgroup_dir
short_description: Ensure a cgroup exists and its interface files hold the given values
description:
  - Creates the cgroup directory O(path) (inside a mounted v1 hierarchy or
    the cgroup2 hierarchy) when missing.
  - Writes each of O(settings) into the cgroup's interface file of that name
    when the value read back differs. Byte limits are compared the way the
    kernel stores them (rounded down to whole pages; C(-1) means unlimited
    in v1).
  - Interface files cannot be replaced atomically (cgroupfs has no rename),
    so each value is written in place, as the kernel expects.
options:
  path:
    description: The cgroup directory, for example C(/sys/fs/cgroup/memory/htcondor).
    type: path
    required: true
  settings:
    description: Interface file name to value, for example C(memory.limit_in_bytes=1073741824).
    type: dict
    default: {}
notes:
  - Cgroups do not survive a reboot; recreate them at boot (for HTCondor,
    the cgroups role's drop-in does it before the daemon starts).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: linux
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Ensure HTCondor's base cgroup has a memory limit of 20 GiB
  cgroup_dir:
    path: /sys/fs/cgroup/memory/htcondor
    settings:
      memory.limit_in_bytes: "{{ 20 * 1024 * 1024 * 1024 }}"
"""

RETURN = r"""
created:
  description: Whether the cgroup directory was (or in check mode would be) created.
  returned: always
  type: bool
  sample: false
values:
  description: Interface file to the value read back after the run (in check mode, the value that would be).
  returned: always
  type: dict
  sample: {memory.limit_in_bytes: "1073741824"}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils.aerie_cgroup import normalise_value, write_kernel_file
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError, read_text


def _read_value(path: str) -> str | None:
    text = read_text(path, None)
    return None if text is None else text.strip()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "settings": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    settings = {str(k): str(v) for k, v in module.params["settings"].items()}
    page_size = os.sysconf("SC_PAGE_SIZE")
    for name in settings:
        if "/" in name or name.startswith("."):
            module.fail_json(msg=f"settings: {name!r} is not an interface file name")

    parent = os.path.dirname(path.rstrip("/"))
    if not os.path.exists(os.path.join(parent, "cgroup.procs")):
        module.fail_json(msg=f"{parent} is not a cgroup (no cgroup.procs): is the hierarchy mounted?", path=path)

    created = not os.path.isdir(path)
    before, after, to_write = {}, {}, {}
    for name, value in settings.items():
        current = None if created else _read_value(os.path.join(path, name))
        if not created and current is None:
            module.fail_json(msg=f"{path} has no interface file {name}: wrong controller for this hierarchy?")
        wanted = normalise_value(name, value, page_size)
        before[name] = current
        after[name] = wanted
        if current != wanted:
            to_write[name] = value
    changed = created or bool(to_write)
    result = {"changed": changed, "created": created, "values": after}
    if module._diff:
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": "" if created else "".join(f"{k} = {v}\n" for k, v in sorted(before.items())) or "exists\n",
            "after": "".join(f"{k} = {v}\n" for k, v in sorted(after.items())) or "exists\n",
        }
    if module.check_mode or not changed:
        module.exit_json(**result)

    if created:
        os.mkdir(path, 0o755)
    for name, value in to_write.items():
        target = os.path.join(path, name)
        try:
            write_kernel_file(target, value)
        except AerieError as exc:
            module.fail_json(msg=str(exc), path=path)
        result["values"][name] = _read_value(target)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
