"""Pure helpers of the chroot modules, on real files in tmp_path (no root needed)."""

import fcntl
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot_build as chroot_build
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError


def make_tree(root, name, version, release="1"):
    tree = root / aerie_chroot.tree_dirname(name, version)
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "os-release").write_text(f'VERSION_ID="{release}"\n')
    (tree / aerie_chroot.MANIFEST).write_text(json.dumps({"version": version}))
    return tree


# --- names and versions ---------------------------------------------------


def test_tree_names_round_trip_and_reject_ambiguous_input():
    assert aerie_chroot.tree_dirname("sl5", "4") == "sl5-v4"
    assert aerie_chroot.version_of("sl5", "sl5-v4") == "4"
    assert aerie_chroot.version_of("sl5", "sl6-v4") is None
    assert aerie_chroot.version_of("sl5", ".sl5-v4.build-x") is None
    for bad_name in ("sl-5", "../x", "", "a/b"):
        with pytest.raises(AerieError, match="invalid tree name"):
            aerie_chroot.tree_dirname(bad_name, "1")
    with pytest.raises(AerieError, match="invalid version"):
        aerie_chroot.tree_dirname("sl5", "1/../../etc")


def test_versions_sort_naturally():
    versions = ["10", "2", "1.10", "1.9", "1"]
    assert sorted(versions, key=aerie_chroot.version_key) == ["1", "1.9", "1.10", "2", "10"]


def test_list_versions_ignores_links_scratch_dirs_and_other_names(tmp_path):
    for v in ("1", "10", "2"):
        make_tree(tmp_path, "sl5", v)
    make_tree(tmp_path, "el7", "1")
    (tmp_path / ".sl5-v3.build-abc").mkdir()
    (tmp_path / "sl5").symlink_to("sl5-v2")
    assert aerie_chroot.list_versions(str(tmp_path), "sl5") == ["1", "2", "10"]
    assert aerie_chroot.list_scratch(str(tmp_path), "sl5", aerie_chroot.BUILD_MARK) == [
        str(tmp_path / ".sl5-v3.build-abc")
    ]
    assert aerie_chroot.current_version(str(tmp_path), "sl5") == "2"
    assert aerie_chroot.list_versions(str(tmp_path / "missing"), "sl5") == []


# --- retention --------------------------------------------------------------


def test_retention_keeps_newest_plus_current_and_previous():
    versions = ["1", "2", "3", "4", "5"]
    assert aerie_chroot.select_for_removal(versions, 2, {None}) == ["1", "2", "3"]
    # Rolled back to 1 from 5: 1 is current, 5 previous, 4 among the newest two.
    assert aerie_chroot.select_for_removal(versions, 2, {"1", "5"}) == ["2", "3"]
    assert aerie_chroot.select_for_removal(["1"], 1, {"1"}) == []
    with pytest.raises(AerieError, match="at least 1"):
        aerie_chroot.select_for_removal(versions, 0, set())


# --- secure pass ------------------------------------------------------------


def test_secure_pass_strips_setuid_except_allow_list_and_fixes_world_writable_dirs(tmp_path):
    tree = tmp_path / "t"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "bin").symlink_to("usr/bin")
    for prog in ("su", "mount", "ok"):
        (tree / "usr/bin" / prog).write_text("#!/bin/sh\n")
    os.chmod(tree / "usr/bin/su", 0o4755)
    os.chmod(tree / "usr/bin/mount", 0o4755)
    os.chmod(tree / "usr/bin/ok", 0o755)
    (tree / "tmp").mkdir()
    os.chmod(tree / "tmp", 0o777)
    (tree / "shared").mkdir()
    os.chmod(tree / "shared", 0o1777)

    # The allow-list names /bin/su; through the merged-/usr link that is /usr/bin/su.
    allow = {"/" + os.path.relpath(aerie_chroot.resolve_in_tree(str(tree), "/bin/su"), tree)}
    entries = [(rel, st.st_mode) for rel, st in aerie_chroot.walk_tree(str(tree))]
    changes = {c["path"]: c for c in aerie_chroot.plan_secure(entries, allow)}

    assert set(changes) == {"/usr/bin/mount", "/tmp"}
    assert changes["/usr/bin/mount"]["after"] == "0o755"
    assert changes["/tmp"]["after"] == "0o1777"


def test_path_chain_must_be_root_owned_and_not_writable_by_others():
    assert aerie_chroot.path_chain("/chroot/sl5-v4") == ["/", "/chroot", "/chroot/sl5-v4"]
    good = [("/", 0, stat.S_IFDIR | 0o755), ("/chroot", 0, stat.S_IFDIR | 0o755)]
    assert aerie_chroot.chain_problems(good) == []
    bad = [("/", 0, stat.S_IFDIR | 0o755), ("/chroot", 1000, stat.S_IFDIR | 0o775)]
    problems = aerie_chroot.chain_problems(bad)
    assert "/chroot is owned by uid 1000, not root" in problems
    assert "/chroot is group- or world-writable (0o775)" in problems


# --- resolving paths inside a tree -------------------------------------------


def test_resolve_in_tree_treats_the_tree_as_root(tmp_path):
    tree = tmp_path / "t"
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "usr/lib/os-release").write_text("x")
    (tree / "etc/os-release").symlink_to("../usr/lib/os-release")
    (tree / "etc/abs").symlink_to("/usr/lib")  # absolute: relative to the tree, not the host
    (tree / "etc/escape").symlink_to("../../../../etc")
    resolve = aerie_chroot.resolve_in_tree
    assert resolve(str(tree), "/etc/os-release") == str(tree / "usr/lib/os-release")
    assert resolve(str(tree), "/etc/abs/os-release") == str(tree / "usr/lib/os-release")
    assert resolve(str(tree), "/etc/escape/passwd") == str(tree / "etc/passwd")
    assert resolve(str(tree), "/var/lib/condor/execute") == str(tree / "var/lib/condor/execute")
    (tree / "loop").symlink_to("loop")
    with pytest.raises(AerieError, match="too many symbolic links"):
        resolve(str(tree), "/loop/x")


# --- the atomic switch -------------------------------------------------------


def test_switch_returns_previous_target_and_uses_a_relative_link(tmp_path):
    make_tree(tmp_path, "sl5", "1")
    make_tree(tmp_path, "sl5", "2")
    link = str(tmp_path / "sl5")
    assert aerie_chroot.switch_link(link, "sl5-v1") is None
    assert aerie_chroot.switch_link(link, "sl5-v2") == "sl5-v1"
    assert os.readlink(link) == "sl5-v2"
    assert sorted(os.listdir(tmp_path)) == ["sl5", "sl5-v1", "sl5-v2"]  # no temporary link left


def test_switch_refuses_to_replace_a_real_directory(tmp_path):
    (tmp_path / "sl5").mkdir()
    with pytest.raises(AerieError, match="is not a symbolic link"):
        aerie_chroot.switch_link(str(tmp_path / "sl5"), "sl5-v1")


def flip_while_reading(tmp_path, flip, flips=200):
    make_tree(tmp_path, "sl5", "1", release="1")
    make_tree(tmp_path, "sl5", "2", release="2")
    link = str(tmp_path / "sl5")
    os.symlink("sl5-v1", link)
    stop = threading.Event()
    failures, reads = [], [0]

    def reader():
        while not stop.is_set():
            try:
                with open(os.path.join(link, "etc/os-release")) as handle:
                    handle.read()
                reads[0] += 1
            except OSError as exc:
                failures.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(flips):
            flip(link, f"sl5-v{1 + (i + 1) % 2}")
    finally:
        stop.set()
        thread.join()
    return failures, reads[0]


def test_readers_never_miss_the_tree_during_200_atomic_switches(tmp_path):
    failures, reads = flip_while_reading(tmp_path, aerie_chroot.switch_link)
    assert reads > 0
    assert failures == []


def test_the_reader_loop_catches_a_non_atomic_switch(tmp_path):
    # The same loop against unlink-then-symlink (what `ln -sfn` does), which
    # the switch replaces: readers fall into the gap.
    def unlink_then_link(link, target):
        for _ in range(50):
            os.unlink(link)
            os.symlink(target, link)

    failures, _ = flip_while_reading(tmp_path, unlink_then_link, flips=400)
    assert failures, "a non-atomic switch went unnoticed: the atomicity test could not fail"


# --- local facts --------------------------------------------------------------


def test_switch_history_records_current_previous_and_caps_history():
    facts = {}
    for i, version in enumerate(["1", "2", "3"]):
        previous = str(i) if i else None
        facts = aerie_chroot.record_switch(facts, "sl5", "/chroot/sl5", version, previous, f"t{i}", history_max=2)
    tree = facts["trees"]["sl5"]
    assert (tree["current"], tree["previous"], tree["path"]) == ("3", "2", "/chroot/sl5")
    assert [h["version"] for h in tree["history"]] == ["2", "3"]
    assert aerie_chroot.facts_agree(facts, "sl5", "/chroot/sl5", "3")
    assert not aerie_chroot.facts_agree(facts, "sl5", "/chroot/sl5", "2")


# --- busy check and deletion ---------------------------------------------------


def test_busy_check_names_a_process_with_its_cwd_in_the_tree(tmp_path):
    tree = make_tree(tmp_path, "sl5", "1")
    proc = subprocess.Popen(["sleep", "30"], cwd=tree / "etc")
    try:
        busy = aerie_chroot.busy_processes(str(tree))
        mine = [b for b in busy if b["pid"] == proc.pid]
        assert mine == [{"pid": proc.pid, "command": "sleep", "what": "cwd", "path": str(tree / "etc")}]
        assert f"pid {proc.pid} (sleep) has its cwd in" in aerie_chroot.describe_busy(str(tree), busy)
        assert aerie_chroot.busy_processes(str(tmp_path / "sl5-v10")) == []  # a prefix is not inside
    finally:
        proc.kill()
        proc.wait()


def test_delete_tree_unmounts_first_and_never_leaves_a_final_name(tmp_path):
    tree = make_tree(tmp_path, "sl5", "1")
    seen = []

    def unmount(path):
        seen.append(path)
        assert os.path.isdir(path)  # unmounted while still under its final name

    aerie_chroot.delete_tree(str(tree), unmount, str(tmp_path))
    assert seen == [str(tree)]
    assert os.listdir(tmp_path) == []
    partial = tmp_path / ".sl5-v2.build-x.archive"
    partial.write_text("half")
    aerie_chroot.delete_tree(str(partial), unmount, str(tmp_path))
    assert os.listdir(tmp_path) == []


# --- the bootstrappers' input handling ------------------------------------------------


def dnf_params(**repo):
    repo = {"name": "os", "baseurl": "http://m/os", "gpgcheck": True, "gpgkey": None, **repo}
    return {
        "bootstrapper": "dnf",
        "dnf": {"releasever": "5", "repos": [repo], "packages": ["bash"], "install_weak_deps": False},
        "setuid_allow": ["/usr/bin/sudo"],
        "execute_dir": "/var/lib/condor/execute",
    }


def test_repositories_check_signatures_unless_told_otherwise():
    text = chroot_build.repo_file([{"name": "os", "baseurl": "http://m/os", "gpgkey": "http://m/key"}])
    assert "gpgcheck=1" in text and "gpgkey=http://m/key" in text
    assert "gpgcheck=0" in chroot_build.repo_file([{"name": "os", "baseurl": "file:///r", "gpgcheck": False}])
    with pytest.raises(AerieError, match="'os' has gpgcheck on but no gpgkey"):
        chroot_build.normalise_inputs(dnf_params())
    inputs = chroot_build.normalise_inputs(dnf_params(gpgcheck=False))
    assert inputs["dnf"]["repos"] == [{"name": "os", "baseurl": "http://m/os", "gpgcheck": False}]


def test_a_tarball_needs_a_checksum_and_a_bootstrapper_its_inputs():
    params = {"bootstrapper": "tarball", "tarball": {"src": "/t.tar", "checksum": "md5:abc"},
              "setuid_allow": [], "execute_dir": "/x"}  # fmt: skip
    with pytest.raises(AerieError, match="checksum: 'sha256:HEX'"):
        chroot_build.normalise_inputs(params)
    with pytest.raises(AerieError, match="bootstrapper 'debootstrap' needs the 'debootstrap' option"):
        chroot_build.normalise_inputs({**params, "bootstrapper": "debootstrap", "debootstrap": None})


def test_changed_inputs_are_named():
    old = chroot_build.normalise_inputs(dnf_params(gpgcheck=False))
    new = dict(old, setuid_allow=[])
    assert aerie_chroot.inputs_differences(old, new) == ["setuid_allow"]
    assert aerie_chroot.inputs_differences(old, dict(old)) == []


def test_tree_lock_serialises_runs_and_dies_with_its_holder(tmp_path):
    code = (
        "import time\nfrom ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot\n"
        f"with aerie_chroot.tree_lock('sl5', {str(tmp_path)!r}):\n"
        "    print('held', flush=True); time.sleep(60)"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "collections"))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with open(tmp_path / "aerie-chroot-sl5.lock") as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        holder.kill()  # a crashed run: the kernel drops its lock
        holder.wait()
    with aerie_chroot.tree_lock("sl5", str(tmp_path)) as lock:
        assert lock.name == str(tmp_path / "aerie-chroot-sl5.lock")


# --- incremental builds -----------------------------------------------------


def dnf_inputs(packages, releasever="5", setuid_allow=(), baseurl="file:///srv/repo"):
    repos = [{"name": "local", "baseurl": baseurl, "gpgcheck": True, "gpgkey": "file:///srv/repo/KEY"}]
    return {"bootstrapper": "dnf", "dnf": {"releasever": releasever, "repos": repos, "packages": list(packages),
                                           "install_weak_deps": False},
            "setuid_allow": sorted(setuid_allow), "execute_dir": "/var/lib/condor/execute"}  # fmt: skip


def deb_inputs(include=(), suite="bullseye", mirror="http://deb.debian.org/debian"):
    return {"bootstrapper": "debootstrap",
            "debootstrap": {"suite": suite, "mirror": mirror, "variant": "minbase", "include": list(include)},
            "setuid_allow": [], "execute_dir": "/var/lib/condor/execute"}  # fmt: skip


def test_a_copy_qualifies_only_when_a_fresh_build_would_give_the_same_tree():
    base = dnf_inputs(["bash", "coreutils"], setuid_allow=["/usr/bin/su"])
    assert aerie_chroot.clone_blockers(base, dnf_inputs(["bash", "coreutils", "python"])) == []
    assert aerie_chroot.clone_blockers(base, base) == []
    # yum runs dnf: the same tree either way.
    assert aerie_chroot.clone_blockers(base, {**dnf_inputs(["bash", "coreutils"]), "bootstrapper": "yum"}) == []
    assert aerie_chroot.clone_blockers(deb_inputs(), deb_inputs(["hello"])) == []

    assert aerie_chroot.clone_blockers(base, dnf_inputs(["bash"])) == [
        "dnf.packages no longer lists coreutils (a clone would keep them)"
    ]
    assert aerie_chroot.clone_blockers(base, dnf_inputs(["bash", "coreutils"], releasever="6")) == [
        "dnf.releasever changed"
    ]
    assert aerie_chroot.clone_blockers(base, dnf_inputs(["bash", "coreutils"], baseurl="http://x/")) == [
        "dnf.repos changed"
    ]
    gained = dnf_inputs(["bash", "coreutils"], setuid_allow=["/usr/bin/su", "/bin/ping"])
    assert aerie_chroot.clone_blockers(base, gained) == [
        "setuid_allow gained /bin/ping (the copy's bits were stripped)"
    ]
    assert aerie_chroot.clone_blockers(deb_inputs(), deb_inputs(suite="bookworm")) == ["debootstrap.suite changed"]
    assert aerie_chroot.clone_blockers(deb_inputs(["hello"]), deb_inputs()) == [
        "debootstrap.include no longer lists hello (a clone would keep them)"
    ]
    assert aerie_chroot.clone_blockers(base, deb_inputs()) == ["bootstrapper changed (dnf -> debootstrap)"]
    tarball = {"bootstrapper": "tarball", "tarball": {"src": "/x.tar", "checksum": "sha256:00"}}
    assert aerie_chroot.clone_blockers(tarball, tarball) == ["a tarball tree is always unpacked whole"]


def test_the_current_version_is_the_preferred_base_then_the_newest():
    new = dnf_inputs(["bash", "python"])
    candidates = [("1", {"inputs": dnf_inputs(["bash"])}), ("2", {"inputs": dnf_inputs(["bash"])}),
                  ("10", {"inputs": dnf_inputs(["bash"])})]  # fmt: skip
    assert aerie_chroot.choose_base(new, candidates, current="2") == ("2", [])
    assert aerie_chroot.choose_base(new, candidates, current=None) == ("10", [])
    candidates[2] = ("10", {"inputs": dnf_inputs(["bash"], releasever="6")})
    assert aerie_chroot.choose_base(new, candidates, current="10") == ("2", ["version 10: dnf.releasever changed"])
    only_blocked = [("3", {"inputs": dnf_inputs(["bash", "perl"])}), ("4", {})]
    base, notes = aerie_chroot.choose_base(new, only_blocked, current="3")
    assert base is None
    assert notes == ["version 3: dnf.packages no longer lists perl (a clone would keep them)",
                     "version 4: bootstrapper changed (None -> dnf)"]  # fmt: skip


def test_a_copied_tree_keeps_the_base_secure_pass_entries_that_still_hold(tmp_path):
    (tmp_path / "usr/bin").mkdir(parents=True)
    for name, mode in (("passwd", 0o755), ("mount", 0o4755)):
        (tmp_path / "usr/bin" / name).write_text("")
        os.chmod(tmp_path / "usr/bin" / name, mode)
    base = {"secure_pass": [
        {"path": "/usr/bin/passwd", "before": "0o4755", "after": "0o755", "reason": "setuid/setgid stripped"},
        {"path": "/usr/bin/mount", "before": "0o4755", "after": "0o755", "reason": "setuid/setgid stripped"},
        {"path": "/usr/bin/gone", "before": "0o4755", "after": "0o755", "reason": "setuid/setgid stripped"},
    ]}  # fmt: skip
    # The update re-installed mount with its setuid bit; this build's pass stripped it again.
    fresh = [{"path": "/usr/bin/mount", "before": "0o4755", "after": "0o755", "reason": "setuid/setgid stripped"}]
    os.chmod(tmp_path / "usr/bin/mount", 0o755)
    merged = chroot_build.inherited_secure_pass(base, str(tmp_path), fresh)
    assert [c["path"] for c in merged] == ["/usr/bin/mount", "/usr/bin/passwd"]
    assert merged[0] is fresh[0]


def test_a_signature_failure_is_reported_as_one():
    gpg = "Public key for aerie-legacy-base-1.0-1.x86_64.rpm is not installed.\nError: GPG check FAILED\n"
    assert chroot_build.dnf_failure(1, ["dnf", "install"], gpg).startswith("package signature check failed")
    missing = "Error: Unable to find a match: nosuchpkg\n"
    msg = chroot_build.dnf_failure(1, ["dnf", "install", "nosuchpkg"], missing)
    assert msg.startswith("dnf --installroot failed (repository unreachable or package missing?) (rc=1)")
    assert msg.endswith("Unable to find a match: nosuchpkg")
