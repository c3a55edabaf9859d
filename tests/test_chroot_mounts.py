"""The chroot bind mounts: their fstab lines in the managed block and unmounting a tree."""

import pytest
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot_mounts as m
from ansible_collections.aerie.grid.plugins.module_utils import aerie_core as core

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:5 / /proc rw,nosuid - proc proc rw
41 22 0:5 / /chroot/sl5-v1/proc rw,nosuid shared:9 master:2 - proc proc rw
42 22 0:6 / /chroot/sl5-v1/dev rw - devtmpfs udev rw
43 42 0:7 / /chroot/sl5-v1/dev/pts rw - devpts devpts rw
44 22 254:0 /home/a\\040b /chroot/sl5-v1/home/a\\040b rw - ext4 /dev/vda rw
45 22 0:5 / /chroot/sl5-v10/proc rw - proc proc rw
"""


def test_mounts_under_a_tree_come_deepest_last_mounted_first_and_skip_prefix_siblings():
    mounts = core.parse_mountinfo(MOUNTINFO)
    assert core.mounts_under(mounts, "/chroot/sl5-v1") == [
        "/chroot/sl5-v1/home/a b",
        "/chroot/sl5-v1/dev/pts",
        "/chroot/sl5-v1/dev",
        "/chroot/sl5-v1/proc",
    ]


def test_fstab_block_is_replaced_in_place_and_removed_when_empty():
    original = "# static\nUUID=x / ext4 defaults 0 1\n"
    sl5, el7 = m.block_label("sl5"), m.block_label("el7")
    lines = [m.fstab_line("/proc", "/chroot/sl5-v1/proc"), m.fstab_line("/home/a b", "/chroot/sl5-v1/home/a b", True)]
    once = core.set_fstab_block(original, sl5, lines, m.FSTAB_BANNER)
    assert once.startswith(original)
    assert "# BEGIN aerie chroot sl5\n" in once and "# END aerie chroot sl5\n" in once
    assert "/home/a\\040b /chroot/sl5-v1/home/a\\040b none bind,ro 0 0" in once
    assert core.fstab_block(once, sl5) == [f"# {m.FSTAB_BANNER}", *lines]
    assert core.set_fstab_block(once, sl5, lines, m.FSTAB_BANNER) == once  # idempotent
    other = core.set_fstab_block(once, el7, [m.fstab_line("/proc", "/chroot/el7-v1/proc")], m.FSTAB_BANNER)
    assert core.fstab_block(other, sl5) == core.fstab_block(once, sl5)
    assert core.set_fstab_block(once, sl5, [], m.FSTAB_BANNER) == original


def test_dropping_a_tree_keeps_other_versions_entries():
    lines = [f"# {m.FSTAB_BANNER}", m.fstab_line("/proc", "/chroot/sl5-v1/proc"),
             m.fstab_line("/proc", "/chroot/sl5-v10/proc")]  # fmt: skip
    assert core.drop_fstab_entries_under(lines, "/chroot/sl5-v1") == [lines[0], lines[2]]


def test_unmount_under_verifies_nothing_is_left():
    state = {"text": MOUNTINFO}
    calls = []

    def run(argv):
        calls.append(argv)
        point = argv[-1].replace(" ", "\\040")
        state["text"] = "\n".join(line for line in state["text"].splitlines() if f" {point} " not in line)
        return 0, "", ""

    done = m.unmount_under("/chroot/sl5-v1", run, lambda: core.parse_mountinfo(state["text"]))
    assert done[-1] == "/chroot/sl5-v1/proc" and len(calls) == 4
    assert "/chroot/sl5-v10/proc" in state["text"]

    # A mount point that reappears (e.g. mounted twice, stacked): reported, not ignored.
    stuck = core.parse_mountinfo(MOUNTINFO + "46 41 0:5 / /chroot/sl5-v1/proc rw - proc proc rw\n")
    with pytest.raises(core.AerieError, match="still mounted under /chroot/sl5-v1"):
        m.unmount_under("/chroot/sl5-v1", lambda argv: (0, "", ""), lambda: stuck)


def test_withdrawn_mounts_are_the_block_entries_no_longer_declared_deepest_first():
    old = [f"# {m.FSTAB_BANNER}", m.fstab_line("/proc", "/chroot/sl5-v1/proc"),
           m.fstab_line("/var/lib/condor/execute", "/chroot/sl5-v1/var/lib/condor/execute"),
           m.fstab_line("/home/a b", "/chroot/sl5-v1/home/a b"), m.fstab_line("/home", "/chroot/sl5-v1/home")]
    new = [m.fstab_line("/proc", "/chroot/sl5-v1/proc")]
    assert m.withdrawn(old, new) == ["/chroot/sl5-v1/var/lib/condor/execute", "/chroot/sl5-v1/home/a b",
                                     "/chroot/sl5-v1/home"]
    assert m.withdrawn(old, old[1:]) == []
    assert m.withdrawn([], new) == []
