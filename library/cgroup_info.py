#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: report the host's cgroup mode, controllers and mounts."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cgroup_info
short_description: Report how cgroups are set up on a host (v1, hybrid or v2)
description:
  - Reads C(/proc/self/mountinfo), C(/proc/cgroups), C(/proc/cmdline) and, when
    a cgroup2 hierarchy is mounted, its C(cgroup.controllers).
  - Never changes anything.
options:
  memory_root:
    description:
      - Where to look for the v1 memory controller's swap files
        (C(memory.memsw.limit_in_bytes)). Defaults to the first mount of the
        memory hierarchy found in mountinfo.
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only; reports the same in check mode.
  diff_mode:
    support: N/A
    details: Changes nothing, so there is no diff.
  platform:
    platforms: linux
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Detect the cgroup layout
  cgroup_info:
  register: __cgroups_info

- name: Show where the memory controller is mounted
  ansible.builtin.debug:
    msg: "{{ __cgroups_info.cgroups.v1_mounts.memory | default('not mounted') }}"
"""

RETURN = r"""
cgroups:
  description: The detected layout.
  returned: always
  type: dict
  contains:
    mode:
      description: C(v1), C(hybrid) (v1 controllers plus a cgroup2 mount), C(v2) or C(none).
      type: str
      sample: hybrid
    version:
      description: The cgroup version HTCondor uses here (2 only when cgroup2 is mounted at /sys/fs/cgroup).
      type: int
      sample: 1
    controllers:
      description: Controllers the kernel has enabled (C(/proc/cgroups)).
      type: list
      elements: str
      sample: [blkio, cpu, cpuacct, freezer, memory, pids]
    hierarchies:
      description: Controller to the comma-joined set the kernel binds into the same v1 hierarchy.
      type: dict
      sample: {cpu: "cpu,cpuacct", cpuacct: "cpu,cpuacct", memory: memory}
    v1_mounts:
      description: Controller to the mount points of its v1 hierarchy.
      type: dict
      sample: {memory: [/sys/fs/cgroup/memory]}
    unified_mount:
      description: Mount point of the cgroup2 hierarchy, or null.
      type: str
      sample: /sys/fs/cgroup/unified
    v2_controllers:
      description: Controllers available in the cgroup2 hierarchy (its root's C(cgroup.controllers)).
      type: list
      elements: str
      sample: [cpu, io, memory, pids]
    v1_to_v2:
      description:
        - Each controller of RV(cgroups.controllers) to the cgroup v2 controller that provides it,
          null where v2 needs none (C(freezer) is every v2 cgroup's C(cgroup.freeze)).
        - The one table of this mapping; the cgroups role reads it from here.
      type: dict
      sample: {blkio: io, cpu: cpu, cpuacct: cpu, freezer: null, memory: memory, pids: pids}
    swapaccount_cmdline:
      description: The kernel's C(swapaccount=) argument as a boolean, null when absent.
      type: bool
      sample: null
    swap_accounting:
      description: Whether the kernel accounts swap per cgroup (the memsw or memory.swap files exist).
      type: bool
      sample: true
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils.aerie_cgroup import (
    detect,
    parse_proc_cgroups,
    parse_swapaccount,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError, read_mounts, read_text


def _swap_accounting(facts: dict, memory_root: str | None) -> bool:
    if facts["version"] == 2:
        unified = facts["unified_mount"]
        # The root cgroup has no memory.swap.max; any child with memory enabled does.
        for entry in sorted(os.listdir(unified)):
            if os.path.exists(os.path.join(unified, entry, "memory.swap.max")):
                return True
        return False
    roots = [memory_root] if memory_root else facts["v1_mounts"].get("memory", [])
    return any(os.path.exists(os.path.join(root, "memory.memsw.limit_in_bytes")) for root in roots)


def main() -> None:
    module = AnsibleModule(argument_spec={"memory_root": {"type": "path"}}, supports_check_mode=True)
    try:
        mounts = read_mounts()
        table = parse_proc_cgroups(read_text("/proc/cgroups"))
    except AerieError as exc:
        module.fail_json(msg=str(exc))
    unified = next((m.mount_point for m in mounts if m.fstype == "cgroup2"), None)
    controllers_text = read_text(os.path.join(unified, "cgroup.controllers")) if unified else ""
    facts = detect(mounts, table, controllers_text)
    facts["swapaccount_cmdline"] = parse_swapaccount(read_text("/proc/cmdline"))
    facts["swap_accounting"] = _swap_accounting(facts, module.params["memory_root"])
    module.exit_json(changed=False, cgroups=facts)


if __name__ == "__main__":
    main()
