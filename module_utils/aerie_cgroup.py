"""Pure cgroup logic shared by the cgroup_* modules (stdlib only, no I/O).

Everything here takes the text of a kernel file (/proc/self/mountinfo,
/proc/cgroups, /proc/cmdline, cgroup.controllers) and returns plain data, so
the unit tests feed it real captures from v1, hybrid and v2 hosts.

Kernel references: Documentation/filesystems/proc.rst (mountinfo),
Documentation/admin-guide/cgroup-v1/cgroups.rst, cgroup-v2.rst.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Where systemd (and HTCondor, which never mounts anything) expect cgroups.
SYSTEMD_CGROUP_ROOT = "/sys/fs/cgroup"

# Mount options of a v1 cgroup superblock that are not controller names.
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods", "nsdelegate"}
)

# v1 controller -> v2 controller. cpuacct folded into cpu; the freezer is a
# core file (cgroup.freeze) in v2, so it needs no controller.
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
}


class CgroupError(ValueError):
    """Bad request: the message is meant for the user and names the problem."""


@dataclass(frozen=True)
class Mount:
    """One line of /proc/<pid>/mountinfo."""

    mount_id: int
    parent_id: int
    device: str
    root: str
    mount_point: str
    mount_options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...] = field(default_factory=tuple)

    @property
    def v1_controllers(self) -> tuple[str, ...]:
        """Controllers bound to a v1 hierarchy (``name=systemd`` style names excluded)."""
        if self.fstype != "cgroup":
            return ()
        return tuple(
            sorted(o for o in self.super_options if "=" not in o and o not in _V1_NON_CONTROLLER_OPTIONS)
        )

    @property
    def v1_name(self) -> str | None:
        """The ``name=`` of a named v1 hierarchy (``systemd``), else None."""
        for option in self.super_options:
            if option.startswith("name="):
                return option[len("name=") :]
        return None


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse the text of /proc/self/mountinfo, in kernel order."""
    mounts = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            mounts.append(
                Mount(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    device=fields[2],
                    root=_unescape(fields[3]),
                    mount_point=_unescape(fields[4]),
                    mount_options=tuple(fields[5].split(",")),
                    fstype=fields[sep + 1],
                    source=_unescape(fields[sep + 2]),
                    super_options=tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else (),
                )
            )
        except (ValueError, IndexError) as exc:
            raise CgroupError(f"mountinfo line {lineno} is malformed: {line!r}") from exc
    return mounts


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
            raise CgroupError(f"/proc/cgroups line {lineno} is malformed: {line!r}") from exc
    return table


def mount_at(mounts: list[Mount], path: str) -> Mount | None:
    """The mount visible at ``path`` (the last one stacked there), or None."""
    path = normpath(path)
    found = None
    for mount in mounts:
        if mount.mount_point == path:
            found = mount
    return found


def normpath(path: str) -> str:
    """Absolute path without duplicate or trailing slashes (no symlink resolution)."""
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


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
            for ctrl in mount.v1_controllers:
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
    }


def _available_message(available) -> str:
    return ", ".join(sorted(available)) or "none"


def plan_v1_mount(mounts: list[Mount], table: dict[str, dict], controllers: list[str], path: str) -> str:
    """Decide how to get the v1 hierarchy of ``controllers`` mounted at ``path``.

    Returns ``"present"`` (nothing to do) or ``"mount"``. Raises CgroupError,
    before anything is touched, when the request cannot be satisfied: an
    unknown or disabled controller, a set the kernel keeps in different
    hierarchies (mount would fail with EBUSY), an incomplete set of a shared
    hierarchy, or a path already carrying something else.
    """
    wanted = sorted(set(controllers))
    if not wanted:
        raise CgroupError("controllers: at least one controller is needed")
    available = [name for name, row in table.items() if row["enabled"]]
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise CgroupError(
            f"unknown cgroup controller {', '.join(unknown)}; available: {_available_message(available)}"
        )
    groups = hierarchies(table)
    hier_ids = {table[c]["hierarchy"] for c in wanted}
    if len(hier_ids) > 1 or (len(wanted) > 1 and hier_ids == {0}):
        detail = "; ".join(f"{c} is in [{','.join(groups[c])}]" for c in wanted)
        raise CgroupError(
            f"controllers {','.join(wanted)} are not one hierarchy on this kernel ({detail}): "
            "mount each hierarchy separately"
        )
    if hier_ids != {0} and groups[wanted[0]] != wanted:
        raise CgroupError(
            f"controller set {','.join(wanted)} is incomplete: the kernel binds "
            f"{','.join(groups[wanted[0]])} into one hierarchy, request all of them"
        )
    current = mount_at(mounts, path)
    if current is None:
        return "mount"
    if current.fstype == "cgroup" and list(current.v1_controllers) == wanted:
        return "present"
    what = current.fstype
    if current.fstype == "cgroup":
        what = f"cgroup {','.join(current.v1_controllers) or current.v1_name}"
    raise CgroupError(
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
    raise CgroupError(
        f"{normpath(path)} already carries {current.fstype} (source {current.source}); "
        "refusing to mount over it, nothing was unmounted"
    )


def plan_subtree_control(available_text: str, enabled_text: str, wanted: list[str]) -> list[str]:
    """The ``+controller`` words to write to cgroup.subtree_control (empty: nothing to do)."""
    available = available_text.split()
    enabled = enabled_text.split()
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise CgroupError(
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
        raise CgroupError(f"subtree_control_path {bottom} is not inside the cgroup2 hierarchy at {top}")
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


def v2_names(v1_controllers: list[str]) -> list[str]:
    """The v2 controllers that provide what the given v1 controllers did."""
    names = {V1_TO_V2.get(c, c) for c in v1_controllers}
    names.discard(None)
    return sorted(names)


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
    return f"{what} {_fstab_escape(normpath(path))} {fstype} {options} 0 0"


def _fstab_escape(path: str) -> str:
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


def update_fstab(text: str, path: str, line: str) -> str:
    """fstab text with exactly one entry for mount point ``path``, equal to ``line``."""
    target = normpath(path)
    out, placed = [], False
    for existing in text.splitlines():
        fields = existing.split()
        if fields and not fields[0].startswith("#") and len(fields) >= 2 and normpath(_unescape(fields[1])) == target:
            if not placed:
                out.append(line)
                placed = True
            continue
        out.append(existing)
    if not placed:
        out.append(line)
    return "\n".join(out) + "\n"


def parse_swapaccount(cmdline: str) -> bool | None:
    """The ``swapaccount=`` kernel argument: True, False, or None when absent (last one wins)."""
    value = None
    for word in cmdline.split():
        if word == "--":
            break
        if word.startswith("swapaccount="):
            value = word.split("=", 1)[1] not in ("0", "n", "no", "off", "false")
    return value


def add_kernel_argument(cmdline: str, argument: str) -> str:
    """``cmdline`` (a GRUB_CMDLINE_LINUX value) with ``key=value`` set once, other words kept."""
    key = argument.split("=", 1)[0]
    words = [w for w in cmdline.split() if w.split("=", 1)[0] != key]
    return " ".join([*words, argument])


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
