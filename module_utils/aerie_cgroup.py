"""Pure cgroup logic shared by the cgroup_* modules (stdlib only, no I/O).

Everything here takes the text of a kernel file (/proc/self/mountinfo,
/proc/cgroups, /proc/cmdline, cgroup.controllers) and returns plain data, so
the unit tests feed it real captures from v1, hybrid and v2 hosts.

Kernel references: Documentation/filesystems/proc.rst (mountinfo),
Documentation/admin-guide/cgroup-v1/cgroups.rst, cgroup-v2.rst.
"""

from __future__ import annotations

import os
import re

from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import (
    AerieError,
    Mount,
    fstab_entry,
    normpath,
    set_fstab_entry,
)

# Where systemd (and HTCondor, which never mounts anything) expect cgroups.
SYSTEMD_CGROUP_ROOT = "/sys/fs/cgroup"

# Mount options of a v1 cgroup superblock that are not controller names.
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods", "nsdelegate"}
)

# The one v1 -> v2 controller table (the cgroups role reads it from
# cgroups_facts.v1_to_v2). cpuacct folded into cpu; the freezer is a core
# file (cgroup.freeze) in v2, devices an eBPF program, and net_cls/net_prio
# have no v2 controller (None: nothing to enable).
V1_TO_V2 = {
    "memory": "memory",
    "cpu": "cpu",
    "cpuacct": "cpu",
    "freezer": None,
    "blkio": "io",
    "pids": "pids",
    "cpuset": "cpuset",
    "hugetlb": "hugetlb",
    "perf_event": "perf_event",
    "rdma": "rdma",
    "misc": "misc",
    "devices": None,
    "net_cls": None,
    "net_prio": None,
}


def v1_controllers(mount: Mount) -> tuple[str, ...]:
    """Controllers bound to a v1 hierarchy (``name=systemd`` style names excluded)."""
    if mount.fstype != "cgroup":
        return ()
    return tuple(sorted(o for o in mount.super_options if "=" not in o and o not in _V1_NON_CONTROLLER_OPTIONS))


def v1_name(mount: Mount) -> str | None:
    """The ``name=`` of a named v1 hierarchy (``systemd``), else None."""
    for option in mount.super_options:
        if option.startswith("name="):
            return option[len("name=") :]
    return None


def parse_proc_cgroups(text: str) -> dict[str, dict]:
    """Parse /proc/cgroups: controller -> {hierarchy, num_cgroups, enabled}."""
    table = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            name, hierarchy, num, enabled = line.split()[:4]
            table[name] = {"hierarchy": int(hierarchy), "num_cgroups": int(num), "enabled": enabled == "1"}
        except ValueError as exc:
            raise AerieError(f"/proc/cgroups line {lineno} is malformed: {line!r}") from exc
    return table


def mount_at(mounts: list[Mount], path: str) -> Mount | None:
    """The mount visible at ``path`` (the last one stacked there), or None."""
    path = normpath(path)
    found = None
    for mount in mounts:
        if mount.mount_point == path:
            found = mount
    return found


def hierarchies(table: dict[str, dict]) -> dict[str, list[str]]:
    """Controller -> the controllers the kernel binds into the same v1 hierarchy.

    A controller with hierarchy 0 is in no v1 hierarchy (free, or owned by
    cgroup2), so it stands alone.
    """
    by_id: dict[int, list[str]] = {}
    for name, row in table.items():
        if row["enabled"] and row["hierarchy"]:
            by_id.setdefault(row["hierarchy"], []).append(name)
    result = {}
    for name, row in table.items():
        if row["enabled"]:
            result[name] = sorted(by_id.get(row["hierarchy"], [name])) if row["hierarchy"] else [name]
    return result


def detect(mounts: list[Mount], table: dict[str, dict], v2_controllers_text: str | None = None) -> dict:
    """What the host offers, as the cgroups role exposes it (``cgroups_facts``).

    ``mode`` is v1, hybrid, v2 or none. ``version`` is the one HTCondor uses:
    2 exactly when cgroup2 is mounted at /sys/fs/cgroup (it checks for
    /sys/fs/cgroup/cgroup.procs), else 1.
    """
    v1_mounts: dict[str, list[str]] = {}
    unified = None
    for mount in mounts:
        if mount.fstype == "cgroup":
            for ctrl in v1_controllers(mount):
                points = v1_mounts.setdefault(ctrl, [])
                if mount.mount_point not in points:
                    points.append(mount.mount_point)
        elif mount.fstype == "cgroup2" and unified is None:
            unified = mount.mount_point
    if v1_mounts and unified:
        mode = "hybrid"
    elif v1_mounts:
        mode = "v1"
    elif unified:
        mode = "v2"
    else:
        mode = "none"
    groups = hierarchies(table)
    return {
        "mode": mode,
        "version": 2 if unified == SYSTEMD_CGROUP_ROOT else 1,
        "controllers": sorted(groups),
        "hierarchies": {name: ",".join(group) for name, group in groups.items()},
        "v1_mounts": {name: sorted(points) for name, points in sorted(v1_mounts.items())},
        "unified_mount": unified,
        "v2_controllers": sorted((v2_controllers_text or "").split()),
        "v1_to_v2": {name: V1_TO_V2.get(name, name) for name in sorted(groups)},
    }


def _available_message(available) -> str:
    return ", ".join(sorted(available)) or "none"


def plan_v1_mount(mounts: list[Mount], table: dict[str, dict], controllers: list[str], path: str) -> str:
    """Decide how to get the v1 hierarchy of ``controllers`` mounted at ``path``.

    Returns ``"present"`` (nothing to do) or ``"mount"``. Raises AerieError,
    before anything is touched, when the request cannot be satisfied: an
    unknown or disabled controller, a set the kernel keeps in different
    hierarchies (mount would fail with EBUSY), an incomplete set of a shared
    hierarchy, or a path already carrying something else.
    """
    wanted = sorted(set(controllers))
    if not wanted:
        raise AerieError("controllers: at least one controller is needed")
    available = [name for name, row in table.items() if row["enabled"]]
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise AerieError(
            f"unknown cgroup controller {', '.join(unknown)}; available: {_available_message(available)}"
        )
    groups = hierarchies(table)
    hier_ids = {table[c]["hierarchy"] for c in wanted}
    if len(hier_ids) > 1 or (len(wanted) > 1 and hier_ids == {0}):
        detail = "; ".join(f"{c} is in [{','.join(groups[c])}]" for c in wanted)
        raise AerieError(
            f"controllers {','.join(wanted)} are not one hierarchy on this kernel ({detail}): "
            "mount each hierarchy separately"
        )
    if hier_ids != {0} and groups[wanted[0]] != wanted:
        raise AerieError(
            f"controller set {','.join(wanted)} is incomplete: the kernel binds "
            f"{','.join(groups[wanted[0]])} into one hierarchy, request all of them"
        )
    current = mount_at(mounts, path)
    if current is None:
        return "mount"
    if current.fstype == "cgroup" and list(v1_controllers(current)) == wanted:
        return "present"
    what = current.fstype
    if current.fstype == "cgroup":
        what = f"cgroup {','.join(v1_controllers(current)) or v1_name(current)}"
    raise AerieError(
        f"{normpath(path)} already carries {what} (source {current.source}); "
        "refusing to mount over it, nothing was unmounted"
    )


def plan_v2_mount(mounts: list[Mount], path: str) -> str:
    """``"present"`` when cgroup2 is mounted at ``path``, ``"mount"`` when nothing is there."""
    current = mount_at(mounts, path)
    if current is None:
        return "mount"
    if current.fstype == "cgroup2":
        return "present"
    raise AerieError(
        f"{normpath(path)} already carries {current.fstype} (source {current.source}); "
        "refusing to mount over it, nothing was unmounted"
    )


def plan_subtree_control(available_text: str, enabled_text: str, wanted: list[str]) -> list[str]:
    """The ``+controller`` words to write to cgroup.subtree_control (empty: nothing to do)."""
    available = available_text.split()
    enabled = enabled_text.split()
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise AerieError(
            f"cgroup v2 controller {', '.join(unknown)} is not available here; "
            f"available: {_available_message(available)}"
        )
    return [f"+{c}" for c in sorted(set(wanted)) if c not in enabled]


def subtree_chain(top: str, bottom: str) -> list[str]:
    """The cgroups from ``top`` down to ``bottom``, both included, top first.

    A v2 controller reaches ``bottom``'s children only when every one of
    these lists it in its cgroup.subtree_control.
    """
    top, bottom = normpath(top), normpath(bottom)
    if bottom != top and not bottom.startswith(top.rstrip("/") + "/"):
        raise AerieError(f"subtree_control_path {bottom} is not inside the cgroup2 hierarchy at {top}")
    chain = [top]
    for part in bottom[len(top):].split("/"):
        if part:
            chain.append(chain[-1].rstrip("/") + "/" + part)
    return chain


def plan_subtree_chain(available_text: str, enabled_texts: list[str], wanted: list[str]) -> list[list[str]]:
    """The ``+controller`` words for each cgroup of a chain (see subtree_chain), top first.

    ``available_text`` is the top's cgroup.controllers: a cgroup lower down
    offers what its parent enables, which this plan enables from the top.
    """
    return [plan_subtree_control(available_text, enabled, wanted) for enabled in enabled_texts]


_UNIT_SAFE = re.compile(r"[A-Za-z0-9:_.]")


def systemd_escape_path(path: str) -> str:
    """Same as ``systemd-escape --path``: the unit-name form of a path."""
    trimmed = normpath(path).strip("/")
    if not trimmed:
        return "-"
    out = []
    for index, char in enumerate(trimmed):
        if char == "/":
            out.append("-")
        elif _UNIT_SAFE.match(char) and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(out)


def mount_unit_name(path: str) -> str:
    return systemd_escape_path(path) + ".mount"


def mount_source(fstype: str, controllers: list[str]) -> tuple[str, str]:
    """(what, options) for mount(8), fstab and mount units."""
    if fstype == "cgroup2":
        return "cgroup2", "nsdelegate"
    return "cgroup", ",".join(sorted(set(controllers)))


def render_mount_unit(fstype: str, controllers: list[str], path: str, banner: str = "") -> str:
    """A systemd mount unit that mounts the hierarchy at boot."""
    what, options = mount_source(fstype, controllers)
    label = "cgroup2 unified hierarchy" if fstype == "cgroup2" else f"cgroup v1 hierarchy {options}"
    head = banner.rstrip("\n") + "\n" if banner else ""
    return (
        f"{head}[Unit]\n"
        f"Description={label} at {normpath(path)}\n"
        "Documentation=https://docs.kernel.org/admin-guide/cgroup-v1/cgroups.html\n"
        # An API filesystem: needed before anything that places processes.
        "DefaultDependencies=no\n"
        "Before=local-fs.target umount.target\n"
        "Conflicts=umount.target\n"
        "\n"
        "[Mount]\n"
        f"What={what}\n"
        f"Where={normpath(path)}\n"
        f"Type={fstype}\n"
        f"Options={options}\n"
        "\n"
        "[Install]\n"
        "WantedBy=local-fs.target\n"
    )


def fstab_line(fstype: str, controllers: list[str], path: str) -> str:
    what, options = mount_source(fstype, controllers)
    return fstab_entry(what, normpath(path), fstype, options)


def parse_swapaccount(cmdline: str) -> bool | None:
    """The ``swapaccount=`` kernel argument: True, False, or None when absent (last one wins)."""
    value = None
    for word in cmdline.split():
        if word == "--":
            break
        if word.startswith("swapaccount="):
            value = word.split("=", 1)[1] not in ("0", "n", "no", "off", "false")
    return value


_BYTE_FILES = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
               "memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max")


def normalise_value(name: str, value: str, page_size: int) -> str:
    """What the kernel will read back after ``value`` is written to interface file ``name``.

    Byte limits are rounded down to whole pages; everything else reads back as
    written (without surrounding white space).
    """
    value = str(value).strip()
    if name in _BYTE_FILES and value == "-1":
        # v1 "unlimited" reads back as the largest page-aligned counter.
        return str((2**63 - 1) // page_size * page_size)
    if name in _BYTE_FILES and value.isdigit():
        return str(int(value) // page_size * page_size)
    return value


def plan_hierarchy(mounts: list[Mount], table: dict[str, dict], fstype: str, controllers: list[str], path: str) -> str:
    """``"present"`` or ``"mount"`` for the v1 (``fstype`` cgroup) or the cgroup2 hierarchy at ``path``."""
    if fstype == "cgroup":
        return plan_v1_mount(mounts, table, controllers, path)
    return plan_v2_mount(mounts, path)


def write_kernel_file(path: str, value: str) -> None:
    """Write an interface file in place: cgroupfs has no rename, the kernel takes one write(2)."""
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError as exc:
        raise AerieError(f"writing {value!r} to {path} failed: {exc}") from exc


def _diff(header: str, before: str, after: str) -> dict:
    return {"before_header": header, "after_header": header, "before": before, "after": after}


def plan_mount(request: dict, mounts: list[Mount], table: dict[str, dict], read, unit_state: str = "") -> dict:
    """What cgroup_mount would change: {"result", "diffs", "steps"}; nothing is touched.

    ``request`` holds the module's parameters, ``read(path)`` returns a file's
    text or None when it is missing, ``unit_state`` is ``systemctl
    is-enabled``'s answer for the mount unit. ``steps`` are what the module
    applies, in order: persistence first, so a systemd host mounts through
    its unit, then the mount, then the cgroup.subtree_control writes (only
    when the hierarchy is mounted already: its files exist from then on).
    Raises AerieError, before any change, for a request that cannot be met.
    """
    path, fstype = normpath(request["path"]), request["fstype"]
    controllers, persist = sorted(set(request["controllers"])), request["persist"]
    action = plan_hierarchy(mounts, table, fstype, controllers, path)
    if persist == "systemd" and not request["systemd_running"]:
        raise AerieError("persist=systemd needs systemd as init on this host; use persist=fstab")
    what, options = mount_source(fstype, controllers)
    label = "cgroup2" if fstype == "cgroup2" else f"cgroup {options}"
    result = {"action": action, "mounted": label}
    diffs, steps = [], []
    if persist == "systemd":
        unit = mount_unit_name(path)
        unit_path = os.path.join(request["unit_dir"], unit)
        unit_text = render_mount_unit(fstype, controllers, path, request["banner"])
        old_unit = read(unit_path)
        if old_unit != unit_text:
            diffs.append(_diff(unit_path, old_unit or "", unit_text))
            steps += [("write", unit_path, unit_text), ("systemctl", "daemon-reload")]
        if old_unit is None or unit_state != "enabled":
            diffs.append(_diff(f"{unit} enablement", f"{unit_state or 'not-found'}\n", "enabled\n"))
            steps.append(("systemctl", "enable", unit))
        result.update(unit=unit, unit_path=unit_path)
    if persist == "fstab":
        old_fstab = read(request["fstab_path"]) or ""
        new_fstab = set_fstab_entry(old_fstab, path, fstab_line(fstype, controllers, path))
        if new_fstab != old_fstab:
            diffs.append(_diff(request["fstab_path"], old_fstab, new_fstab))
            steps.append(("write", request["fstab_path"], new_fstab))
    if action == "mount":
        diffs.insert(0, _diff(f"mounted at {path}", "nothing\n", f"{label}\n"))
        steps.append(("mount", result.get("unit"), fstype, options, what, path))
    available = read(os.path.join(path, "cgroup.controllers")) if fstype == "cgroup2" and controllers else None
    if fstype == "cgroup2" and controllers and (action == "present" or available is not None):
        result["subtree_control"] = {}
        files = [os.path.join(cgroup, "cgroup.subtree_control")
                 for cgroup in subtree_chain(path, request["subtree_control_path"] or path)]  # fmt: skip
        enabled_now = [read(f) for f in files]
        if None in enabled_now:
            missing = os.path.dirname(files[enabled_now.index(None)])
            raise AerieError(f"subtree_control_path: {missing} is not a cgroup (no cgroup.subtree_control)")
        plans = plan_subtree_chain(available or "", enabled_now, controllers)
        # Not zip(strict=True): that is Python 3.10+, and nodes run 3.9 (plan_subtree_chain returns one per file).
        for control_file, before, words in zip(files, enabled_now, plans):
            result["subtree_control"][os.path.dirname(control_file)] = words
            if words:
                diffs.append(_diff(control_file, before, " ".join(words) + "\n"))
                steps.append(("subtree", control_file, " ".join(words)))
    return {"result": result, "diffs": diffs, "steps": steps}
