"""The shared core of aerie's modules: mountinfo, fstab, atomic writes, file reads."""

import os
import stat

import pytest
from ansible_collections.aerie.grid.plugins.module_utils import aerie_core as core


def test_mountinfo_fields_optional_tags_and_escapes_are_parsed():
    text = ("41 22 0:5 / /chroot/sl5-v1/proc rw,nosuid shared:9 master:2 - proc proc rw\n"
            "44 22 254:0 /home/a\\040b /chroot/sl5-v1/home/a\\040b rw - ext4 /dev/vda rw,errors=remount-ro\n"
            "90 28 0:50 / /mnt/x rw - tmpfs  rw\n")  # fmt: skip
    proc, home, empty_source = core.parse_mountinfo(text)
    assert (proc.mount_id, proc.parent_id, proc.device) == (41, 22, "0:5")
    assert proc.mount_options == ("rw", "nosuid")  # the optional fields (shared:, master:) skipped
    assert (home.root, home.mount_point) == ("/home/a b", "/chroot/sl5-v1/home/a b")
    assert (home.fstype, home.source, home.super_options) == ("ext4", "/dev/vda", ("rw", "errors=remount-ro"))
    assert (empty_source.fstype, empty_source.source, empty_source.super_options) == ("tmpfs", "", ("rw",))


def test_malformed_mountinfo_names_the_line():
    with pytest.raises(core.AerieError, match="mountinfo line 2 is malformed"):
        core.parse_mountinfo("22 28 0:20 / /sys rw - sysfs sysfs rw\n1 2 3\n")


def test_the_real_mountinfo_of_this_process_parses():
    points = {m.mount_point for m in core.read_mounts()}
    assert "/" in points and "/proc" in points


def test_fstab_entry_escapes_paths_and_one_entry_per_mount_point_is_kept():
    line = core.fstab_entry("/home/a b", "/chroot/x/home/a b", "none", "bind")
    assert line == "/home/a\\040b /chroot/x/home/a\\040b none bind 0 0"
    assert core.fstab_mount_point(line) == "/chroot/x/home/a b"
    assert core.fstab_mount_point("# /home/a /chroot/x none bind 0 0") is None
    text = core.set_fstab_entry("", "/chroot/x/home/a b/", line)
    assert text == line + "\n" and core.set_fstab_entry(text, "/chroot/x/home/a b", line) == text


def test_write_atomic_replaces_content_creates_the_directory_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "chroot.fact"
    target.write_text("old")
    core.write_atomic(str(target), '{"new": 1}\n', 0o640)
    assert target.read_text() == '{"new": 1}\n'
    assert os.listdir(tmp_path) == ["chroot.fact"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    core.write_atomic(str(tmp_path / "new" / "unit.mount"), "x\n")
    assert (tmp_path / "new" / "unit.mount").read_text() == "x\n"


def test_read_text_tells_a_missing_file_by_its_default(tmp_path):
    (tmp_path / "empty").write_text("")
    assert core.read_text(str(tmp_path / "empty"), None) == ""
    assert core.read_text(str(tmp_path / "missing"), None) is None
    assert core.read_text(str(tmp_path / "missing")) == ""
    assert core.read_text(str(tmp_path / "empty" / "below"), None) is None
