"""A kept chroot tree that differs from its manifest's inventory is reported (issue 19)."""

import json
import os
import stat
import subprocess
import sys

import pytest
import yaml
from aerie_testutil import ansible_playbook
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot_build as chroot_build
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot_verify as verify

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
EXECUTE = "/var/lib/condor/execute"


def make_tree(root, name="deb11", version="1"):
    """A small tree with a setuid binary, a symlink, a device-like fifo, run-time directories; manifest recorded."""
    tree = root / f"{name}-v{version}"
    for sub in ("usr/bin", "etc", "proc/1", "tmp", "home/alice", "srv", "var/lib/condor/execute/dir_1", "dev", "run"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    (tree / "usr/bin/su").write_bytes(b"#!/bin/sh\necho su\n")
    os.chmod(tree / "usr/bin/su", 0o4755)
    (tree / "usr/bin/ls").write_bytes(b"ls")
    os.chmod(tree / "usr/bin/ls", 0o755)
    (tree / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.chmod(tree / "etc/passwd", 0o644)
    (tree / "proc/1/status").write_text("inside proc\n")
    (tree / "home/alice/notes").write_text("job data\n")
    os.symlink("usr/bin", tree / "bin")
    os.mkfifo(tree / "run/initctl")
    manifest = {"format": 1, "name": name, "version": version, **chroot_build.record_inventory(str(tree), EXECUTE)}
    (tree / aerie_chroot.MANIFEST).write_text(json.dumps(manifest))
    return tree


def check(tree, ignore=()):
    manifest = aerie_chroot.read_manifest(str(tree))
    found = verify.inventory(str(tree), manifest[verify.SKIPPED], ignore)
    return {d["path"]: d["why"] for d in verify.differences(manifest[verify.INVENTORY], found, ignore)}


def test_the_inventory_records_modes_owners_digests_and_link_targets_not_run_time_content(tmp_path):
    tree = make_tree(tmp_path)
    manifest = aerie_chroot.read_manifest(str(tree))
    inv = manifest[verify.INVENTORY]
    uid, gid = os.getuid(), os.getgid()
    digest = verify.file_digest(str(tree / "usr/bin/su"))
    assert inv["/usr/bin/su"] == f"f 4755 {uid} {gid} {digest}"
    ls_digest = verify.file_digest(str(tree / "usr/bin/ls"))
    assert inv["/usr/bin/ls"] == f"f 0755 {uid} {gid} {ls_digest}"  # executables have one too
    assert inv["/etc/passwd"] == f"f 0644 {uid} {gid}"  # other files do not
    assert inv["/bin"] == f"l 0777 {uid} {gid} usr/bin"
    assert inv["/run/initctl"].startswith("p ")
    # Run-time directories keep their own entry, not their content; the manifest is not in it.
    for top in ("/proc", "/tmp", "/home", "/var/lib/condor/execute"):
        assert top in inv and not [p for p in inv if p.startswith(top + "/")], top
    assert "/" + aerie_chroot.MANIFEST not in inv
    assert manifest[verify.SKIPPED] == ["/dev", "/home", "/proc", "/sys", "/tmp", "/var/lib/condor/execute",
                                        "/var/tmp"]  # fmt: skip
    assert check(tree) == {}


def test_a_planted_setuid_file_and_a_world_writable_directory_are_reported(tmp_path):
    tree = make_tree(tmp_path)
    (tree / "usr/bin/evil").write_bytes(b"evil")
    os.chmod(tree / "usr/bin/evil", 0o4755)
    (tree / "srv/open").mkdir()
    os.chmod(tree / "srv/open", 0o777)
    (tree / "srv/scratch").mkdir()
    os.chmod(tree / "srv/scratch", 0o1777)  # sticky: what /tmp is, not reported on its own
    assert check(tree) == {"/usr/bin/evil": "added with setuid/setgid", "/srv/open": "added world-writable"}


def test_a_replaced_executable_is_reported_and_a_file_made_executable_by_its_mode(tmp_path):
    tree = make_tree(tmp_path)
    (tree / "usr/bin/ls").write_bytes(b"trojan")
    os.chmod(tree / "etc/passwd", 0o755)
    assert check(tree) == {"/usr/bin/ls": "content changed", "/etc/passwd": "mode changed"}


def test_an_inventory_without_a_digest_for_a_file_compares_its_mode_only(tmp_path):
    tree = make_tree(tmp_path)
    manifest = aerie_chroot.read_manifest(str(tree))
    manifest[verify.INVENTORY]["/usr/bin/ls"] = " ".join(manifest[verify.INVENTORY]["/usr/bin/ls"].split()[:4])
    (tree / aerie_chroot.MANIFEST).write_text(json.dumps(manifest))
    (tree / "usr/bin/ls").write_bytes(b"other")
    assert check(tree) == {}
    os.chmod(tree / "usr/bin/ls", 0o4755)
    assert check(tree) == {"/usr/bin/ls": "gained setuid/setgid"}


def test_chmod_of_a_recorded_path_is_reported(tmp_path):
    tree = make_tree(tmp_path)
    os.chmod(tree / "usr/bin/ls", 0o4755)
    os.chmod(tree / "etc", 0o777)
    os.chmod(tree / "etc/passwd", 0o600)
    assert check(tree) == {"/usr/bin/ls": "gained setuid/setgid", "/etc": "made world-writable",
                           "/etc/passwd": "mode changed"}  # fmt: skip


@ROOT_ONLY
def test_chown_is_reported(tmp_path):
    tree = make_tree(tmp_path)
    os.chown(tree / "etc/passwd", 1000, 1000)
    assert check(tree) == {"/etc/passwd": "owner changed"}


def test_a_setuid_binary_with_other_content_a_removed_path_and_a_new_file_are_reported(tmp_path):
    tree = make_tree(tmp_path)
    mode = os.lstat(tree / "usr/bin/su").st_mode
    (tree / "usr/bin/su").write_bytes(b"#!/bin/sh\nexec /bin/sh -p\n")
    os.chmod(tree / "usr/bin/su", stat.S_IMODE(mode))  # same bits, other content
    os.unlink(tree / "usr/bin/ls")
    (tree / "etc/ld.so.preload").write_text("/lib/evil.so\n")
    assert check(tree) == {"/usr/bin/su": "content changed", "/usr/bin/ls": "removed",
                           "/etc/ld.so.preload": "new file"}  # fmt: skip


def test_a_redirected_symlink_is_reported_and_never_followed(tmp_path):
    tree = make_tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "huge").write_text("not part of the tree\n")
    os.unlink(tree / "bin")
    os.symlink(str(outside), tree / "bin")
    diffs = check(tree)
    assert diffs == {"/bin": "link target changed"}


def test_run_time_content_and_mount_points_are_not_compared(tmp_path):
    tree = make_tree(tmp_path)
    (tree / "tmp/job.out").write_text("x")
    (tree / "home/alice/more").write_text("x")
    (tree / "var/lib/condor/execute/dir_2").mkdir()
    (tree / "proc/2").mkdir()
    # A bind-mount target: the host's file lies over the tree's (other mode), and its content is the host's.
    os.chmod(tree / "etc/passwd", 0o600)
    (tree / "mnt/cvmfs").mkdir(parents=True)  # created by chroot_mounts for an optional mount
    (tree / "mnt/cvmfs/repo.txt").write_text("x")
    assert check(tree, ignore={"/etc/passwd", "/mnt/cvmfs"}) == {}
    # Without the mount list the same paths are compared like any other.
    assert check(tree) == {"/etc/passwd": "mode changed", "/mnt/cvmfs/repo.txt": "new file"}


def test_the_walk_stays_on_the_tree_filesystem(tmp_path, monkeypatch):
    tree = make_tree(tmp_path)
    top_dev = os.lstat(tree).st_dev
    real = os.lstat

    def lstat(path, *args, **kwargs):  # /srv as another filesystem mounted into the tree
        st = real(path, *args, **kwargs)
        if str(path).startswith(str(tree / "srv")):
            return os.stat_result((st.st_mode, st.st_ino, top_dev + 1, *tuple(st)[3:]))
        return st

    (tree / "srv/inside-a-mount").write_text("x")
    monkeypatch.setattr(verify.os, "lstat", lstat)
    found = verify.inventory(str(tree))
    assert "/srv" not in found and "/srv/inside-a-mount" not in found and "/usr/bin/su" in found


def test_many_new_files_are_folded_per_directory(tmp_path):
    tree = make_tree(tmp_path)
    (tree / "srv/many").mkdir()
    for i in range(50):
        (tree / f"srv/many/f{i:02}").write_text("x")
    (tree / "usr/bin/evil").write_bytes(b"evil")
    os.chmod(tree / "usr/bin/evil", 0o2755)
    manifest = aerie_chroot.read_manifest(str(tree))
    diffs = verify.differences(manifest[verify.INVENTORY], verify.inventory(str(tree), manifest[verify.SKIPPED]))
    folded = verify.fold(diffs)
    whys = [d["why"] for d in folded]
    assert whys.count("new file") == verify.FOLD_AFTER
    assert "20 more new files (folded)" in whys
    assert "added with setuid/setgid" in whys  # never folded
    before, after = verify.diff_lines("/chroot/deb11-v1", folded)
    assert len(before.splitlines()) == len(after.splitlines()) == len(folded)


def test_an_old_manifest_without_inventory_is_said_so(tmp_path):
    tree = tmp_path / "chroot" / "deb11-v1"
    tree.mkdir(parents=True)
    (tree / aerie_chroot.MANIFEST).write_text(json.dumps({"format": 1, "name": "deb11", "version": "1"}))
    verify_module = pytest.importorskip("ansible_collections.aerie.grid.plugins.modules.chroot_verify")
    assert verify_module.check_tree(str(tree), [], []) == {"status": "no inventory", "differences": []}


def run_verify(tmp_path, *args, mounts=()):
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [{
        "name": "verify", "aerie.grid.chroot_verify": {"name": "deb11", "root": str(tmp_path / "chroot"),
                                                      "mounts": list(mounts)}, "register": "out"},
        {"name": "show", "ansible.builtin.debug": {"var": "out"}}]}]  # fmt: skip
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return ansible_playbook("-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}", str(path), *args,
                            env={"ANSIBLE_CACHE_PLUGIN": "memory"})  # fmt: skip


def test_the_module_reports_drift_in_check_mode_and_fails_a_normal_run_without_touching_the_tree(tmp_path):
    root = tmp_path / "chroot"
    root.mkdir()
    tree = make_tree(root)
    make_tree(root, version="2")
    os.symlink("deb11-v2", root / "deb11")
    clean = run_verify(tmp_path, "--check", "--diff")
    assert clean.returncode == 0 and "changed=0" in clean.stdout, clean.stdout[-3000:]

    (tree / "usr/bin/evil").write_bytes(b"evil")
    os.chmod(tree / "usr/bin/evil", 0o4755)
    drift = run_verify(tmp_path, "--check", "--diff")
    assert drift.returncode == 0 and "changed=1" in drift.stdout, drift.stdout[-3000:]
    assert f"-{tree}/usr/bin/evil  (absent)" in drift.stdout
    assert f"+{tree}/usr/bin/evil  f 4755 " in drift.stdout and "# added with setuid/setgid" in drift.stdout
    assert '"differing": [\n' in drift.stdout and '"1"' in drift.stdout

    normal = run_verify(tmp_path)
    assert normal.returncode != 0
    assert f"{tree} differs from its manifest: /usr/bin/evil (added with setuid/setgid)" in normal.stdout
    assert "build a new version" in normal.stdout
    assert stat.S_IMODE(os.lstat(tree / "usr/bin/evil").st_mode) == 0o4755  # never repaired behind the admin


def test_the_module_warns_for_a_tree_built_before_the_inventory(tmp_path):
    tree = tmp_path / "chroot" / "deb11-v1"
    tree.mkdir(parents=True)
    (tree / aerie_chroot.MANIFEST).write_text(json.dumps({"format": 1, "name": "deb11", "version": "1"}))
    run = run_verify(tmp_path, "--check")
    assert run.returncode == 0 and "changed=0" in run.stdout, run.stdout[-3000:]
    assert "no inventory: built by an older aerie, rebuild to cover" in run.stdout + run.stderr


@ROOT_ONLY
def test_every_bootstrapper_s_build_records_the_inventory_after_the_secure_pass(tmp_path):
    # A tarball build through the real build(): dnf and debootstrap trees take the same path after bootstrap.
    src = tmp_path / "src"
    (src / "usr/bin").mkdir(parents=True)
    for name in ("su", "ping"):
        (src / "usr/bin" / name).write_bytes(name.encode())
        os.chmod(src / "usr/bin" / name, 0o4755)
    archive = tmp_path / "t.tar"
    subprocess.run(["tar", "-cf", str(archive), "-C", str(src), "."], check=True)
    checksum = "sha256:" + verify.file_digest(str(archive))
    root = tmp_path / "chroot"
    root.mkdir()
    params = {"name": "t", "version": "1", "root": str(root), "build_mode": "full", "setuid_allow": ["/usr/bin/su"],
              "execute_dir": EXECUTE, "bootstrapper": "tarball",
              "tarball": {"src": str(archive), "checksum": checksum}}  # fmt: skip
    steps = chroot_build.Steps(os.open(tmp_path, os.O_RDONLY), 60)
    final = str(root / "t-v1")
    manifest = chroot_build.build(steps, params, chroot_build.normalise_inputs(params), final, None, {"cleaned": []})
    inv = manifest[verify.INVENTORY]
    assert inv["/usr/bin/su"].startswith("f 4755 ") and inv["/usr/bin/ping"].startswith("f 0755 ")  # secured first
    assert inv["/var/lib/condor/execute"] == "d 0755 0 0"
    assert aerie_chroot.read_manifest(final)[verify.INVENTORY] == inv
    assert check(final) == {}
