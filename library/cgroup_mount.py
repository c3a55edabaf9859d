#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: a cgroup hierarchy mounted at a path, and kept across reboots."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cgroup_mount
short_description: Ensure a cgroup v1 hierarchy or the cgroup2 hierarchy is mounted at a path
description:
  - For O(fstype=cgroup), ensures the v1 hierarchy holding O(controllers) is
    mounted at O(path) (C(mount -t cgroup -o memory cgroup /cgroup/memory)).
    The controllers must form one whole hierarchy as the kernel binds them
    (C(cpu,cpuacct) where they are co-mounted, C(cpu) and C(cpuacct) apart
    where they are not).
  - For O(fstype=cgroup2), ensures the unified hierarchy is mounted at O(path)
    and O(controllers) are enabled in C(cgroup.subtree_control) of
    O(subtree_control_path) and of every cgroup above it up to O(path), as
    cgroup v2 requires (a cgroup offers its children only what its parent
    enabled).
  - Reads C(/proc/self/mountinfo) and C(/proc/cgroups) and only acts when
    something is missing. An unknown controller, a controller set the kernel
    cannot mount together, or a path that already carries another filesystem
    or hierarchy fails before any change; nothing is ever unmounted.
  - Makes the mount persistent with a systemd mount unit (enabled, started)
    or an C(/etc/fstab) entry, as O(persist) says. Paths under
    C(/sys/fs/cgroup) are mounted by systemd itself; use O(persist=none) there.
options:
  path:
    description: Mount point.
    type: path
    required: true
  fstype:
    description: C(cgroup) for a v1 hierarchy, C(cgroup2) for the unified one.
    type: str
    choices: [cgroup, cgroup2]
    default: cgroup
  controllers:
    description:
      - v1, the controllers of the hierarchy (at least one).
      - v2, the controllers to enable for the children of O(subtree_control_path).
    type: list
    elements: str
    default: []
  subtree_control_path:
    description:
      - v2 only, the cgroup whose children get O(controllers), inside O(path). Defaults to O(path).
      - It must exist; on systemd hosts systemd takes back, on its next reload, controllers
        that none of its active units asks for.
    type: path
  persist:
    description:
      - C(systemd) writes C(<unit_dir>/<escaped path>.mount), enables it and
        mounts through it; C(fstab) adds one line to O(fstab_path); C(none)
        only mounts.
    type: str
    choices: [systemd, fstab, none]
    default: systemd
  unit_dir:
    description: Where the mount unit goes.
    type: path
    default: /etc/systemd/system
  fstab_path:
    description: The fstab to edit for O(persist=fstab).
    type: path
    default: /etc/fstab
  banner:
    description: Comment lines put at the top of the mount unit (for example C(ansible_managed | comment)).
    type: str
    default: ""
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
- name: Ensure the memory controller is also mounted at the legacy layout
  cgroup_mount:
    path: /cgroup/memory
    controllers: [memory]
    banner: "{{ ansible_managed | comment }}"

- name: Ensure the co-mounted cpu,cpuacct hierarchy is mounted, from fstab at boot
  cgroup_mount:
    path: /cgroup/cpu,cpuacct
    controllers: [cpu, cpuacct]
    persist: fstab

- name: Ensure HTCondor's controllers reach the children of system.slice (v2)
  cgroup_mount:
    path: /sys/fs/cgroup
    fstype: cgroup2
    controllers: [cpu, io, memory, pids]
    subtree_control_path: /sys/fs/cgroup/system.slice
    persist: none
"""

RETURN = r"""
mounted:
  description: What is mounted at O(path) after the run (in check mode, what would be).
  returned: always
  type: str
  sample: cgroup memory
action:
  description: C(present) when the hierarchy was already mounted there, C(mount) when it was (or would be) mounted.
  returned: always
  type: str
  sample: mount
unit:
  description: Name of the persistence mount unit.
  returned: when O(persist=systemd)
  type: str
  sample: cgroup-memory.mount
unit_path:
  description: Path of the persistence mount unit.
  returned: when O(persist=systemd)
  type: str
  sample: /etc/systemd/system/cgroup-memory.mount
subtree_control:
  description:
    - v2 only, for each cgroup from O(path) down to O(subtree_control_path), the words
      written (or that would be written) to its C(cgroup.subtree_control).
  returned: when O(fstype=cgroup2) and O(controllers) are given
  type: dict
  sample: {/sys/fs/cgroup: [], /sys/fs/cgroup/system.slice: ["+cpu", "+io"]}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils.aerie_cgroup import (
    mount_unit_name,
    normpath,
    parse_proc_cgroups,
    plan_hierarchy,
    plan_mount,
    write_kernel_file,
)
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import (
    AerieError,
    read_mounts,
    read_text,
    write_atomic,
)


def read_state(module: AnsibleModule, request: dict) -> tuple:
    """(mounts, /proc/cgroups table, the mount unit's systemctl is-enabled answer): what plan_mount reads."""
    unit_state = ""
    if request["persist"] == "systemd" and request["systemd_running"]:
        unit = mount_unit_name(request["path"])
        unit_state = module.run_command(["systemctl", "is-enabled", unit])[1].strip()
    return read_mounts(), parse_proc_cgroups(read_text("/proc/cgroups")), unit_state


def apply(module: AnsibleModule, request: dict, steps: list[tuple], table: dict) -> None:
    """Carry out plan_mount's steps in order; a mount is confirmed in mountinfo before going on."""
    for kind, *args in steps:
        if kind == "write":
            write_atomic(*args)
        elif kind == "systemctl":
            module.run_command(["systemctl", *args], check_rc=True)
        elif kind == "subtree":
            write_kernel_file(*args)
        elif kind == "mount":
            unit, fstype, options, what, path = args
            if unit:
                module.run_command(["systemctl", "start", unit], check_rc=True)
            else:
                os.makedirs(path, exist_ok=True)
                module.run_command(["mount", "-t", fstype, "-o", options, what, path], check_rc=True)
            if plan_hierarchy(read_mounts(), table, fstype, request["controllers"], path) != "present":
                raise AerieError(f"{path}: mounting {fstype} {options} reported success but mountinfo does not show it")


def read(path: str) -> str | None:
    return read_text(path, None)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "fstype": {"type": "str", "choices": ["cgroup", "cgroup2"], "default": "cgroup"},
            "controllers": {"type": "list", "elements": "str", "default": []},
            "subtree_control_path": {"type": "path"},
            "persist": {"type": "str", "choices": ["systemd", "fstab", "none"], "default": "systemd"},
            "unit_dir": {"type": "path", "default": "/etc/systemd/system"},
            "fstab_path": {"type": "path", "default": "/etc/fstab"},
            "banner": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    request = dict(module.params, path=normpath(module.params["path"]),
                   systemd_running=os.path.isdir("/run/systemd/system"))  # fmt: skip
    try:
        mounts, table, unit_state = read_state(module, request)
        plan = plan_mount(request, mounts, table, read, unit_state)
        result = {"changed": bool(plan["steps"]), **plan["result"]}
        if module._diff:
            result["diff"] = plan["diffs"]
        if not module.check_mode:
            apply(module, request, plan["steps"], table)
    except AerieError as exc:
        module.fail_json(msg=str(exc), path=request["path"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
