"""Unit tests for module_utils/aerie_cgroup.py against real kernel text."""

from pathlib import Path

import pytest
from ansible_collections.aerie.grid.plugins.module_utils import aerie_cgroup as cg
from ansible_collections.aerie.grid.plugins.module_utils import aerie_core as core

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cgroup"


def load(host: str):
    mounts = core.parse_mountinfo((FIXTURES / f"{host}.mountinfo").read_text())
    table = cg.parse_proc_cgroups((FIXTURES / f"{host}.cgroups").read_text())
    return mounts, table


def test_mountinfo_fields_and_optional_tags_are_parsed():
    mounts, _ = load("v1-centos7")
    memory = cg.mount_at(mounts, "/sys/fs/cgroup/memory")
    assert memory.fstype == "cgroup"
    assert memory.source == "cgroup"
    assert memory.root == "/"
    assert memory.device == "0:25"
    assert cg.v1_controllers(memory) == ("memory",)
    # "shared:11" sits between the mount options and the separator.
    assert cg.v1_controllers(cg.mount_at(mounts, "/sys/fs/cgroup/cpu,cpuacct")) == ("cpu", "cpuacct")


def test_named_hierarchy_has_a_name_and_no_controllers():
    mounts, _ = load("v1-centos7")
    systemd = cg.mount_at(mounts, "/sys/fs/cgroup/systemd")
    assert cg.v1_controllers(systemd) == ()
    assert cg.v1_name(systemd) == "systemd"


def test_mountinfo_octal_escapes_are_decoded():
    line = "90 28 0:50 / /mnt/with\\040space rw - tmpfs my\\011src rw\n"
    (mount,) = core.parse_mountinfo(line)
    assert mount.mount_point == "/mnt/with space"
    assert mount.source == "my\tsrc"


def test_malformed_mountinfo_names_the_line():
    with pytest.raises(core.AerieError, match="line 2"):
        core.parse_mountinfo("22 28 0:20 / /sys rw - sysfs sysfs rw\ngarbage\n")


def test_malformed_proc_cgroups_names_the_line():
    with pytest.raises(core.AerieError, match="/proc/cgroups line 3"):
        cg.parse_proc_cgroups("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t8\t1\nmemory\tx\n")


def test_container_view_keeps_the_libpod_root():
    mounts, _ = load("hybrid-container")
    memory = cg.mount_at(mounts, "/sys/fs/cgroup/memory")
    assert memory.root.startswith("/libpod_parent/libpod-")
    # systemd mounted its own hierarchy over podman's: the top one wins.
    assert cg.mount_at(mounts, "/sys/fs/cgroup/systemd").root == "/"


@pytest.mark.parametrize(
    ("host", "mode", "version", "unified"),
    [
        ("v1-centos7", "v1", 1, None),
        ("v1-sl6-legacy", "v1", 1, None),
        ("hybrid-host", "hybrid", 1, "/sys/fs/cgroup/unified"),
        ("hybrid-container", "hybrid", 1, "/sys/fs/cgroup/unified"),
        ("v2-debian12", "v2", 2, "/sys/fs/cgroup"),
    ],
)
def test_mode_detection(host, mode, version, unified):
    mounts, table = load(host)
    facts = cg.detect(mounts, table)
    assert facts["mode"] == mode
    assert facts["version"] == version
    assert facts["unified_mount"] == unified


def test_no_cgroup_mounts_is_mode_none():
    mounts = core.parse_mountinfo("22 28 0:20 / /sys rw - sysfs sysfs rw\n")
    assert cg.detect(mounts, {})["mode"] == "none"


def test_v1_facts_say_where_each_controller_is():
    facts = cg.detect(*load("v1-centos7"))
    assert facts["v1_mounts"]["memory"] == ["/sys/fs/cgroup/memory"]
    assert facts["v1_mounts"]["cpu"] == ["/sys/fs/cgroup/cpu,cpuacct"]
    assert facts["hierarchies"]["cpuacct"] == "cpu,cpuacct"
    assert facts["hierarchies"]["net_prio"] == "net_cls,net_prio"
    assert "freezer" in facts["controllers"]


def test_hybrid_host_keeps_cpu_and_cpuacct_apart():
    facts = cg.detect(*load("hybrid-host"))
    assert facts["hierarchies"]["cpu"] == "cpu"
    assert facts["hierarchies"]["cpuacct"] == "cpuacct"
    assert facts["v1_mounts"]["cpuacct"] == ["/sys/fs/cgroup/cpuacct"]
    # net_cls is bound to a hierarchy that is not mounted on the host.
    assert "net_cls" not in facts["v1_mounts"]


def test_legacy_layout_is_found_under_cgroup():
    facts = cg.detect(*load("v1-sl6-legacy"))
    assert facts["v1_mounts"]["memory"] == ["/cgroup/memory"]
    assert facts["v1_mounts"]["freezer"] == ["/cgroup/freezer"]


def test_v2_facts_list_the_unified_controllers():
    mounts, table = load("v2-debian12")
    facts = cg.detect(mounts, table, (FIXTURES / "v2-debian12.controllers").read_text())
    assert facts["v1_mounts"] == {}
    assert facts["v2_controllers"] == ["cpu", "cpuset", "hugetlb", "io", "memory", "misc", "pids", "rdma"]
    # On v2 /proc/cgroups has every controller in hierarchy 0: each stands alone.
    assert facts["hierarchies"]["cpu"] == "cpu"


def test_mounted_hierarchy_is_present():
    mounts, table = load("v1-centos7")
    assert cg.plan_v1_mount(mounts, table, ["cpuacct", "cpu"], "/sys/fs/cgroup/cpu,cpuacct") == "present"


def test_missing_legacy_mount_is_planned():
    mounts, table = load("hybrid-container")
    assert cg.plan_v1_mount(mounts, table, ["memory"], "/cgroup/memory") == "mount"
    assert cg.plan_v1_mount(mounts, table, ["freezer"], "//cgroup/freezer/") == "mount"


def test_legacy_mount_already_there_is_present():
    mounts, table = load("v1-sl6-legacy")
    assert cg.plan_v1_mount(mounts, table, ["memory"], "/cgroup/memory") == "present"


def test_unknown_controller_lists_the_available_ones():
    mounts, table = load("hybrid-host")
    with pytest.raises(core.AerieError) as err:
        cg.plan_v1_mount(mounts, table, ["memory", "bogus"], "/cgroup/x")
    message = str(err.value)
    assert "unknown cgroup controller bogus" in message
    assert "available: blkio, cpu, cpuacct, cpuset, devices, freezer, hugetlb, memory" in message


def test_disabled_controller_is_unknown():
    mounts, table = load("hybrid-host")
    table["memory"]["enabled"] = False
    with pytest.raises(core.AerieError, match="unknown cgroup controller memory"):
        cg.plan_v1_mount(mounts, table, ["memory"], "/cgroup/memory")


@pytest.mark.parametrize(
    ("fixture", "controllers", "path", "message"),
    [
        # A combined set where the kernel keeps the controllers apart.
        ("hybrid-host", ["cpu", "cpuacct"], "/cgroup/cpu,cpuacct", r"cpu is in \[cpu\]; cpuacct is in \[cpuacct\]"),
        # Half of a hierarchy the kernel binds together.
        ("v1-centos7", ["cpu"], "/cgroup/cpu", "binds cpu,cpuacct into one hierarchy"),
        ("hybrid-host", ["memory"], "/dev/shm", r"/dev/shm already carries tmpfs .*nothing was unmounted"),
        ("hybrid-host", ["memory"], "/sys/fs/cgroup/freezer", "already carries cgroup freezer"),
        ("hybrid-host", [], "/cgroup/x", "at least one"),
    ],
    ids=["combined-set-the-kernel-separates", "half-of-a-shared-hierarchy", "path-with-another-filesystem",
         "path-with-another-hierarchy", "no-controllers"],
)
def test_v1_mount_plan_refuses(fixture, controllers, path, message):
    mounts, table = load(fixture)
    with pytest.raises(core.AerieError, match=message):
        cg.plan_v1_mount(mounts, table, controllers, path)


def test_v2_mount_plan():
    mounts, _ = load("v2-debian12")
    assert cg.plan_v2_mount(mounts, "/sys/fs/cgroup") == "present"
    assert cg.plan_v2_mount(mounts, "/mnt/cg2") == "mount"
    with pytest.raises(core.AerieError, match="carries sysfs"):
        cg.plan_v2_mount(mounts, "/sys")


def test_subtree_control_only_adds_what_is_missing():
    available = (FIXTURES / "v2-debian12.controllers").read_text()
    enabled = (FIXTURES / "v2-debian12.subtree_control").read_text()
    assert cg.plan_subtree_control(available, enabled, ["memory", "cpu", "io", "pids"]) == []
    assert cg.plan_subtree_control(available, "cpu memory", ["memory", "cpu", "io", "pids"]) == ["+io", "+pids"]


def test_subtree_control_refuses_what_the_kernel_lacks():
    # The hybrid host's cgroup2 mount holds no controllers: all are bound to v1.
    with pytest.raises(core.AerieError, match="memory is not available here; available: none"):
        cg.plan_subtree_control("", "", ["memory"])


def test_the_facts_carry_the_one_v1_to_v2_table_for_every_controller_of_the_host():
    facts = cg.detect(*load("hybrid-host"))
    assert set(facts["v1_to_v2"]) == set(facts["controllers"])
    table = facts["v1_to_v2"]
    assert (table["cpuacct"], table["blkio"], table["freezer"], table["memory"]) == ("cpu", "io", None, "memory")
    # What the cgroups role enables on v2 for HTCondor's controllers: the freezer needs none.
    assert sorted({table[c] for c in ["memory", "cpu", "cpuacct", "freezer", "blkio", "pids"]} - {None}) == [
        "cpu", "io", "memory", "pids"]


@pytest.mark.parametrize(
    ("path", "unit"),
    # Expected names produced by systemd 252's `systemd-escape --path --suffix=mount`.
    [
        ("/", "-.mount"),
        ("/cgroup/memory", "cgroup-memory.mount"),
        ("/cgroup/cpu,cpuacct", "cgroup-cpu\\x2ccpuacct.mount"),
        ("/sys/fs/cgroup/net_cls,net_prio", "sys-fs-cgroup-net_cls\\x2cnet_prio.mount"),
        ("/a b/-x", "a\\x20b-\\x2dx.mount"),
        ("/.hidden/x", "\\x2ehidden-x.mount"),
        ("//cgroup//memory/", "cgroup-memory.mount"),
        ("/\u00fc", "\\xc3\\xbc.mount"),
    ],
)
def test_mount_unit_names_match_systemd_escape(path, unit):
    assert cg.mount_unit_name(path) == unit


def test_mount_unit_mounts_the_requested_hierarchy():
    text = cg.render_mount_unit("cgroup", ["freezer"], "/cgroup/freezer/", "# managed\n")
    assert text.startswith("# managed\n[Unit]\n")
    assert "\n[Mount]\nWhat=cgroup\nWhere=/cgroup/freezer\nType=cgroup\nOptions=freezer\n" in text
    assert "WantedBy=local-fs.target" in text


def test_mount_unit_for_cgroup2():
    text = cg.render_mount_unit("cgroup2", [], "/sys/fs/cgroup")
    assert "What=cgroup2\nWhere=/sys/fs/cgroup\nType=cgroup2\nOptions=nsdelegate\n" in text


def test_fstab_entry_is_added_once_and_replaced_in_place():
    line = cg.fstab_line("cgroup", ["memory"], "/cgroup/memory")
    assert line == "cgroup /cgroup/memory cgroup memory 0 0"
    original = "# /etc/fstab\nUUID=1 / ext4 defaults 0 1\n"
    once = core.set_fstab_entry(original, "/cgroup/memory", line)
    assert once == original + line + "\n"
    assert core.set_fstab_entry(once, "/cgroup/memory", line) == once
    stale = original + "none /cgroup/memory cgroup memory,freezer 0 0\n# cgroup /cgroup/memory cgroup x 0 0\n"
    fixed = core.set_fstab_entry(stale, "/cgroup/memory/", line)
    assert fixed.splitlines() == [*original.splitlines(), line, "# cgroup /cgroup/memory cgroup x 0 0"]


def test_fstab_escapes_spaces_in_paths():
    assert cg.fstab_line("cgroup", ["pids"], "/my cg/pids") == "cgroup /my\\040cg/pids cgroup pids 0 0"


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        ("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet", None),
        ("root=/dev/sda1 swapaccount=1 quiet", True),
        ("root=/dev/sda1 swapaccount=1 swapaccount=0", False),
        ("root=/dev/sda1 -- swapaccount=1", None),
        ((FIXTURES / "hybrid-host.cmdline").read_text(), None),
    ],
)
def test_swapaccount_on_the_kernel_command_line(cmdline, expected):
    assert cg.parse_swapaccount(cmdline) is expected


def test_values_are_normalised_as_the_kernel_reads_them_back():
    assert cg.normalise_value("memory.limit_in_bytes", "1000000", 4096) == "999424"
    assert cg.normalise_value("memory.limit_in_bytes", "-1", 4096) == "9223372036854771712"
    assert cg.normalise_value("memory.max", "max", 4096) == "max"
    assert cg.normalise_value("cpu.shares", " 512\n", 4096) == "512"


# cgroup v2 as systemd 252 leaves it on a fresh Debian 12 VM (the cgroups_v2 scenario's host).
VM_ROOT_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc\n"
VM_SUBTREE = "memory pids\n"


def test_subtree_chain_runs_from_the_root_down_to_the_target():
    assert cg.subtree_chain("/sys/fs/cgroup", "/sys/fs/cgroup/system.slice/") == [
        "/sys/fs/cgroup", "/sys/fs/cgroup/system.slice"]
    assert cg.subtree_chain("/sys/fs/cgroup/", "/sys/fs/cgroup") == ["/sys/fs/cgroup"]
    assert cg.subtree_chain("/sys/fs/cgroup", "/sys/fs/cgroup/a.slice/b.slice")[-1] == "/sys/fs/cgroup/a.slice/b.slice"


@pytest.mark.parametrize("outside", ["/sys/fs/cgroupx/system.slice", "/sys/fs", "/tmp"])
def test_subtree_chain_refuses_a_target_outside_the_hierarchy(outside):
    with pytest.raises(core.AerieError, match=f"subtree_control_path {outside} is not inside"):
        cg.subtree_chain("/sys/fs/cgroup", outside)


def test_subtree_chain_plan_enables_each_level_from_the_root():
    """On the real VM: neither the root nor system.slice had cpu and io for the base cgroup."""
    wanted = ["cpu", "io", "memory", "pids"]
    assert cg.plan_subtree_chain(VM_ROOT_CONTROLLERS, [VM_SUBTREE, VM_SUBTREE], wanted) == [
        ["+cpu", "+io"], ["+cpu", "+io"]]
    # system.slice offers only what the root enables: the plan does not ask it.
    assert cg.plan_subtree_chain(VM_ROOT_CONTROLLERS, ["cpu io memory pids", ""], wanted) == [
        [], ["+cpu", "+io", "+memory", "+pids"]]
    with pytest.raises(core.AerieError, match="rdma2 is not available"):
        cg.plan_subtree_chain(VM_ROOT_CONTROLLERS, [VM_SUBTREE, VM_SUBTREE], ["rdma2"])


def request(**given):
    return {"fstype": "cgroup", "controllers": [], "subtree_control_path": None, "persist": "systemd",
            "unit_dir": "/etc/systemd/system", "fstab_path": "/etc/fstab", "banner": "", "systemd_running": True,
            **given}  # fmt: skip


def test_a_missing_legacy_mount_is_planned_unit_first_then_mounted_through_it():
    mounts, table = load("hybrid-container")
    plan = cg.plan_mount(request(path="/cgroup/memory", controllers=["memory"]), mounts, table, {}.get)
    unit = "/etc/systemd/system/cgroup-memory.mount"
    assert [step[:2] for step in plan["steps"]] == [
        ("write", unit), ("systemctl", "daemon-reload"), ("systemctl", "enable"), ("mount", "cgroup-memory.mount")]
    assert [d["before_header"] for d in plan["diffs"]] == [
        "mounted at /cgroup/memory", unit, "cgroup-memory.mount enablement"]
    assert plan["result"] == {"action": "mount", "mounted": "cgroup memory", "unit": "cgroup-memory.mount",
                              "unit_path": unit}  # fmt: skip
    # Converged: the unit is there and enabled, the hierarchy mounted.
    files = {unit: cg.render_mount_unit("cgroup", ["memory"], "/cgroup/memory")}
    legacy, legacy_table = load("v1-sl6-legacy")
    again = cg.plan_mount(request(path="/cgroup/memory", controllers=["memory"]), legacy, legacy_table, files.get,
                          "enabled")  # fmt: skip
    assert again["steps"] == [] and again["diffs"] == []


def test_an_fstab_persisted_mount_edits_only_its_own_line():
    mounts, table = load("hybrid-container")
    fstab = "UUID=1 / ext4 defaults 0 1\n"
    plan = cg.plan_mount(request(path="/cgroup/pids", controllers=["pids"], persist="fstab"), mounts, table,
                         {"/etc/fstab": fstab}.get)  # fmt: skip
    assert plan["steps"] == [("write", "/etc/fstab", fstab + "cgroup /cgroup/pids cgroup pids 0 0\n"),
                             ("mount", None, "cgroup", "pids", "cgroup", "/cgroup/pids")]  # fmt: skip


def test_v2_plan_enables_the_controllers_down_the_chain_and_refuses_a_missing_cgroup():
    mounts, table = load("v2-debian12")
    files = {"/sys/fs/cgroup/cgroup.controllers": VM_ROOT_CONTROLLERS,
             "/sys/fs/cgroup/cgroup.subtree_control": VM_SUBTREE,
             "/sys/fs/cgroup/system.slice/cgroup.subtree_control": ""}  # fmt: skip
    wanted = request(path="/sys/fs/cgroup", fstype="cgroup2", controllers=["cpu", "memory"], persist="none",
                     subtree_control_path="/sys/fs/cgroup/system.slice")  # fmt: skip
    plan = cg.plan_mount(wanted, mounts, table, files.get)
    assert plan["steps"] == [("subtree", "/sys/fs/cgroup/cgroup.subtree_control", "+cpu"),
                             ("subtree", "/sys/fs/cgroup/system.slice/cgroup.subtree_control", "+cpu +memory")]
    assert plan["result"]["subtree_control"] == {"/sys/fs/cgroup": ["+cpu"],
                                                 "/sys/fs/cgroup/system.slice": ["+cpu", "+memory"]}  # fmt: skip
    with pytest.raises(core.AerieError, match="/sys/fs/cgroup/nope is not a cgroup"):
        cg.plan_mount(dict(wanted, subtree_control_path="/sys/fs/cgroup/nope"), mounts, table, files.get)
    with pytest.raises(core.AerieError, match="persist=systemd needs systemd"):
        cg.plan_mount(dict(wanted, persist="systemd", systemd_running=False), mounts, table, files.get)
