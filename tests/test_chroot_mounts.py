"""mountinfo parsing and the managed fstab block of the chroot bind mounts."""

import aerie_chroot_mounts as m
import pytest

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:5 / /proc rw,nosuid - proc proc rw
41 22 0:5 / /chroot/sl5-v1/proc rw,nosuid shared:9 master:2 - proc proc rw
42 22 0:6 / /chroot/sl5-v1/dev rw - devtmpfs udev rw
43 42 0:7 / /chroot/sl5-v1/dev/pts rw - devpts devpts rw
44 22 254:0 /home/a\\040b /chroot/sl5-v1/home/a\\040b rw - ext4 /dev/vda rw
45 22 0:5 / /chroot/sl5-v10/proc rw - proc proc rw
"""


def test_parse_mountinfo_reads_fields_and_unescapes_spaces():
    mounts = m.parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 7
    home = mounts[5]
    assert home["mount_point"] == "/chroot/sl5-v1/home/a b"
    assert home["root"] == "/home/a b"
    assert (home["fstype"], home["source"]) == ("ext4", "/dev/vda")
    assert mounts[2]["options"] == "rw,nosuid"  # optional fields (shared:, master:) skipped


def test_parse_the_real_mountinfo_of_this_process():
    with open("/proc/self/mountinfo") as handle:
        points = m.mounted_points(m.parse_mountinfo(handle.read()))
    assert "/" in points and "/proc" in points


def test_malformed_line_is_an_error():
    with pytest.raises(ValueError, match="malformed mountinfo line"):
        m.parse_mountinfo("1 2 3\n")


def test_mounts_under_a_tree_come_deepest_last_mounted_first_and_skip_prefix_siblings():
    mounts = m.parse_mountinfo(MOUNTINFO)
    assert m.mounts_under(mounts, "/chroot/sl5-v1") == [
        "/chroot/sl5-v1/home/a b",
        "/chroot/sl5-v1/dev/pts",
        "/chroot/sl5-v1/dev",
        "/chroot/sl5-v1/proc",
    ]


def test_fstab_block_is_replaced_in_place_and_removed_when_empty():
    original = "# static\nUUID=x / ext4 defaults 0 1\n"
    lines = [m.fstab_line("/proc", "/chroot/sl5-v1/proc"), m.fstab_line("/home/a b", "/chroot/sl5-v1/home/a b", True)]
    once = m.replace_fstab_block(original, "sl5", lines, m.FSTAB_BANNER)
    assert once.startswith(original)
    assert "/home/a\\040b /chroot/sl5-v1/home/a\\040b none bind,ro 0 0" in once
    assert m.fstab_block(once, "sl5") == [f"# {m.FSTAB_BANNER}", *lines]
    assert m.replace_fstab_block(once, "sl5", lines, m.FSTAB_BANNER) == once  # idempotent
    other = m.replace_fstab_block(once, "el7", [m.fstab_line("/proc", "/chroot/el7-v1/proc")], m.FSTAB_BANNER)
    assert m.fstab_block(other, "sl5") == m.fstab_block(once, "sl5")
    assert m.replace_fstab_block(once, "sl5", [], m.FSTAB_BANNER) == original


def test_dropping_a_tree_keeps_other_versions_entries():
    lines = [m.fstab_line("/proc", "/chroot/sl5-v1/proc"), m.fstab_line("/proc", "/chroot/sl5-v10/proc")]
    kept = m.drop_under(lines, "/chroot/sl5-v1")
    assert m.fstab_targets(kept) == ["/chroot/sl5-v10/proc"]


def test_unmount_under_verifies_nothing_is_left():
    state = {"text": MOUNTINFO}
    calls = []

    def run(argv):
        calls.append(argv)
        point = argv[-1].replace(" ", "\\040")
        state["text"] = "\n".join(line for line in state["text"].splitlines() if f" {point} " not in line)
        return 0, "", ""

    done = m.unmount_under("/chroot/sl5-v1", run, lambda: state["text"])
    assert done[-1] == "/chroot/sl5-v1/proc" and len(calls) == 4
    assert "/chroot/sl5-v10/proc" in state["text"]

    # A mount point that reappears (e.g. mounted twice, stacked): reported, not ignored.
    stuck = MOUNTINFO + "46 41 0:5 / /chroot/sl5-v1/proc rw - proc proc rw\n"
    with pytest.raises(RuntimeError, match="still mounted under /chroot/sl5-v1"):
        m.unmount_under("/chroot/sl5-v1", lambda argv: (0, "", ""), lambda: stuck)
