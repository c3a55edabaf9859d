#!/usr/bin/python
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
notes:
  - Supports check mode and diff mode.
author:
  - aerie
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
import tempfile

from ansible.module_utils.aerie_cgroup import (
    CgroupError,
    fstab_line,
    mount_source,
    mount_unit_name,
    normpath,
    parse_mountinfo,
    parse_proc_cgroups,
    plan_subtree_chain,
    plan_v1_mount,
    plan_v2_mount,
    render_mount_unit,
    subtree_chain,
    update_fstab,
)
from ansible.module_utils.basic import AnsibleModule


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write_atomic(module: AnsibleModule, path: str, text: str) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".aerie-cgroup-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    module.atomic_move(tmp, path)


def _mounts(module: AnsibleModule):
    try:
        return parse_mountinfo(_read("/proc/self/mountinfo") or "")
    except CgroupError as exc:
        module.fail_json(msg=str(exc))


def _systemctl(module: AnsibleModule, *args: str, check_rc: bool = True):
    return module.run_command(["systemctl", *args], check_rc=check_rc)


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
    params = module.params
    path = normpath(params["path"])
    fstype = params["fstype"]
    controllers = sorted(set(params["controllers"]))
    persist = params["persist"]

    # Plan everything before touching anything: bad input fails here.
    try:
        table = parse_proc_cgroups(_read("/proc/cgroups") or "")
    except CgroupError as exc:
        module.fail_json(msg=str(exc))

    def plan() -> str:
        if fstype == "cgroup":
            return plan_v1_mount(_mounts(module), table, controllers, path)
        return plan_v2_mount(_mounts(module), path)

    try:
        action = plan()
    except CgroupError as exc:
        module.fail_json(msg=str(exc), path=path)
    if persist == "systemd" and not os.path.isdir("/run/systemd/system"):
        module.fail_json(msg="persist=systemd needs systemd as init on this host; use persist=fstab", path=path)

    what, options = mount_source(fstype, controllers)
    label = "cgroup2" if fstype == "cgroup2" else f"cgroup {options}"
    result = {"changed": False, "action": action, "mounted": label}
    diffs = []
    if action == "mount":
        diffs.append({"before_header": f"mounted at {path}", "after_header": f"mounted at {path}",
                      "before": "nothing\n", "after": f"{label}\n"})

    unit_path = unit_text = old_unit = None
    enabled = True
    if persist == "systemd":
        unit = mount_unit_name(path)
        unit_path = os.path.join(params["unit_dir"], unit)
        unit_text = render_mount_unit(fstype, controllers, path, params["banner"])
        old_unit = _read(unit_path)
        if old_unit != unit_text:
            diffs.append({"before_header": unit_path, "after_header": unit_path,
                          "before": old_unit or "", "after": unit_text})
        _rc, out, _ = _systemctl(module, "is-enabled", unit, check_rc=False)
        enabled = old_unit is not None and out.strip() == "enabled"
        if not enabled:
            diffs.append({"before_header": f"{unit} enablement", "after_header": f"{unit} enablement",
                          "before": f"{out.strip() or 'not-found'}\n", "after": "enabled\n"})
        result.update(unit=unit, unit_path=unit_path)
    old_fstab = new_fstab = None
    if persist == "fstab":
        old_fstab = _read(params["fstab_path"]) or ""
        new_fstab = update_fstab(old_fstab, path, fstab_line(fstype, controllers, path))
        if new_fstab != old_fstab:
            diffs.append({"before_header": params["fstab_path"], "after_header": params["fstab_path"],
                          "before": old_fstab, "after": new_fstab})

    # (cgroup.subtree_control file, words to write), top of the chain first.
    subtree_writes: list[tuple[str, list[str]]] = []
    if fstype == "cgroup2" and controllers:
        available = _read(os.path.join(path, "cgroup.controllers"))
        if action == "present" or available is not None:
            try:
                files = [os.path.join(cgroup, "cgroup.subtree_control")
                         for cgroup in subtree_chain(path, params["subtree_control_path"] or path)]
                enabled_now = [_read(f) for f in files]
                if None in enabled_now:
                    missing = os.path.dirname(files[enabled_now.index(None)])
                    raise CgroupError(f"subtree_control_path: {missing} is not a cgroup (no cgroup.subtree_control)")
                plans = plan_subtree_chain(available or "", enabled_now, controllers)
            except CgroupError as exc:
                module.fail_json(msg=str(exc), path=path)
            result["subtree_control"] = {}
            for index, control_file in enumerate(files):
                words = plans[index]
                result["subtree_control"][os.path.dirname(control_file)] = words
                if words:
                    subtree_writes.append((control_file, words))
                    diffs.append({"before_header": control_file, "after_header": control_file,
                                  "before": enabled_now[index], "after": " ".join(words) + "\n"})

    result["changed"] = bool(diffs)
    if module._diff:
        result["diff"] = diffs
    if module.check_mode or not diffs:
        module.exit_json(**result)

    # Apply: persistence first, so that a systemd host mounts through its unit.
    if persist == "systemd":
        if old_unit != unit_text:
            _write_atomic(module, unit_path, unit_text)
            _systemctl(module, "daemon-reload")
        if not enabled:
            _systemctl(module, "enable", unit)
    if persist == "fstab" and new_fstab != old_fstab:
        _write_atomic(module, params["fstab_path"], new_fstab)
    if action == "mount":
        if persist == "systemd":
            _systemctl(module, "start", unit)
        else:
            os.makedirs(path, exist_ok=True)
            module.run_command(["mount", "-t", fstype, "-o", options, what, path], check_rc=True)
        if plan() != "present":
            module.fail_json(msg=f"{path}: mounting {label} reported success but mountinfo does not show it")
    for control_file, words in subtree_writes:
        try:
            with open(control_file, "w") as handle:
                handle.write(" ".join(words))
        except OSError as exc:
            module.fail_json(msg=f"writing {' '.join(words)} to {control_file} failed: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
