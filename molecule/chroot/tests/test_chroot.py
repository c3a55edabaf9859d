"""The chroot role on a real node: trees serve, switch atomically, roll back, clean up.

Tests run in file order and drive the instance through the life of a tree:
the converged state first, then an upgrade, 200 flips under a reader, a
rollback, bad input, a crashed build and cleanup. Transitions go through
ansible-playbook against molecule's inventory, exactly as an admin runs them.
"""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import aerie_testinfra
import pytest

testinfra_hosts = aerie_testinfra.hosts("worker_nodes")

SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
BIN = Path(sys.executable).parent
DEFAULT_MOUNTS = ["/proc", "/sys", "/dev", "/dev/pts", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/resolv.conf",
                  "/home"]  # fmt: skip


def ansible_env():
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_CACHE_PLUGIN="memory",  # keep the test instance out of .cache/facts
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    # The crash tests kill the module by its file name (AnsiballZ_chroot_tree),
    # which only a run without pipelining has: the stock podman connection,
    # not molecule/_shared/connection_plugins/podman.py.
    env.pop("ANSIBLE_CONNECTION_PLUGINS", None)
    return env


def playbook(path, *extra):
    """Run a playbook against the scenario's instance; (rc, combined output)."""
    argv = [str(BIN / "ansible-playbook"), "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(path), *extra]
    proc = subprocess.run(argv, env=ansible_env(), capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


def converge(*extra):
    return playbook(SCENARIO / "converge.yml", *extra)


def module_argv(host, module, args):
    """ansible running one of aerie's modules (by its FQCN) against HOST."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return [str(BIN / "ansible"), "-i", inventory, host.backend.name, "-m", f"aerie.grid.{module}",
            "-a", json.dumps(args)]


def fact(host):
    return json.loads(host.file("/etc/ansible/facts.d/chroot.fact").content_string)["trees"]


def mount_points(host):
    lines = host.file("/proc/self/mountinfo").content_string.splitlines()
    return [line.split(" - ")[0].split()[4] for line in lines]


def manifest(host, tree):
    return json.loads(host.file(f"{tree}/.aerie-chroot.json").content_string)


def through_view(host, tree, command):
    """Output of ``command`` run in a read-only, non-recursive bind mount of
    ``tree``: the tree's own files, without what is bind-mounted into it."""
    script = (f'set -e; view=$(mktemp -d); mount --bind {tree} "$view"; mount -o remount,bind,ro "$view"; '
              f'cd "$view"; {command}; cd /; umount "$view"; rmdir "$view"')  # fmt: skip
    return host.check_output(f"bash -c {shlex.quote(script)}")


def tree_digest(host, tree):
    """Paths, modes, owners, sizes, mtimes, link targets and file contents of the tree itself."""
    return through_view(host, tree, r"""{ find . -printf '%p %m %U %G %s %T@ %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum; } | sha256sum | cut -d' ' -f1""")


def own_file(host, tree, path):
    """A file of the tree itself, not the host file bind-mounted over it."""
    return through_view(host, tree, f"cat .{path}")


def test_each_tree_serves_its_own_older_userland(host):
    assert host.file("/chroot/deb11").linked_to == "/chroot/deb11-v1"
    assert host.check_output("readlink /chroot/deb11") == "deb11-v1"
    assert host.check_output("readlink /chroot/el") == "el-v1"
    assert host.check_output("chroot /chroot/deb11 /bin/sh -c 'cat /etc/debian_version'").startswith("11.")
    assert host.check_output("cat /etc/debian_version").startswith("12.")
    assert host.check_output("chroot /chroot/el /bin/cat /etc/redhat-release") == "Aerie Legacy release 1.0"
    assert host.check_output("rpm --root /chroot/el --dbpath /var/lib/rpm -q aerie-legacy-base") == (
        "aerie-legacy-base-1.0-1.x86_64"
    )


def test_manifest_records_bootstrapper_inputs_and_installed_packages(host):
    deb = json.loads(host.file("/chroot/deb11-v1/.aerie-chroot.json").content_string)
    assert deb["inputs"]["bootstrapper"] == "debootstrap"
    assert deb["inputs"]["debootstrap"]["suite"] == "bullseye"
    assert deb["packages"]["base-files"].startswith("11.")
    el = json.loads(host.file("/chroot/el-v1/.aerie-chroot.json").content_string)
    assert el["inputs"]["dnf"]["packages"] == ["aerie-legacy-base-1.0"]
    assert el["packages"]["aerie-legacy-base"] == "1.0-1.x86_64"
    # gpgcheck was on: dnf imported the repository's signing key into the tree's rpmdb.
    assert el["inputs"]["dnf"]["repos"][0]["gpgcheck"] is True
    assert set(el["packages"]) == {"aerie-legacy-base", "gpg-pubkey"}
    assert deb["build"] == {"mode": "full", "base_version": None, "notes": ["no kept version of deb11 to clone"]}


def test_secure_pass_left_setuid_only_on_the_allow_list(host):
    def setuid_files(tree):
        out = host.check_output(f"find {tree} -xdev -type f -perm /6000")
        return sorted(out.split())

    assert setuid_files("/chroot/deb11-v1") == ["/chroot/deb11-v1/usr/bin/su"]
    assert setuid_files("/chroot/el-v1") == ["/chroot/el-v1/usr/bin/legacy-su"]
    stripped = {c["path"] for c in json.loads(host.file("/chroot/deb11-v1/.aerie-chroot.json").content_string)
                ["secure_pass"]}  # fmt: skip
    assert {"/usr/bin/passwd", "/usr/bin/mount", "/usr/bin/chage"} <= stripped
    # The package shipped legacy-ping setuid: rpm still says so, the tree does not.
    assert host.file("/chroot/el-v1/usr/bin/legacy-ping").mode == 0o755


def test_path_chain_is_root_owned_and_holds_the_execute_dir(host):
    for tree in ("/chroot/deb11-v1", "/chroot/el-v1"):
        path = "/"
        for part in [*tree.split("/")[1:], "var", "lib", "condor", "execute"]:
            path = os.path.join(path, part)
            f = host.file(path)
            assert f.is_directory and f.uid == 0, path
            assert f.mode & 0o022 == 0, f"{path} is group/world-writable"
    assert host.file("/chroot/el-v1/tmp").mode == 0o1777


def test_bind_mounts_are_mounted_once_and_persisted_for_systemd(host):
    points = mount_points(host)
    fstab = host.file("/etc/fstab").content_string
    for tree in ("/chroot/deb11-v1", "/chroot/el-v1"):
        for src in DEFAULT_MOUNTS:
            assert points.count(tree + src) == 1, f"{tree + src} mounted {points.count(tree + src)} times"
            assert f"{src} {tree}{src} none bind 0 0" in fstab
        assert tree + "/cvmfs" not in points  # optional and absent on this host
    unit = host.check_output("systemd-escape --path --suffix=mount /chroot/el-v1/dev/pts")
    show = host.check_output(f"systemctl show -p SourcePath -p ActiveState {shlex.quote(unit)}")
    assert "SourcePath=/etc/fstab" in show and "ActiveState=active" in show
    assert host.run("chroot /chroot/el /bin/ls /proc/1").rc == 0


def test_a_bind_mount_taken_out_of_the_list_is_unmounted_at_once(host):
    # aerie up to 0.x bind-mounted HTCondor's EXECUTE directory into the
    # trees, which makes every chroot job fail; dropping it from the list
    # must take it away now, not at the next reboot.
    host.check_output("mkdir -p /srv/aerie-extra")
    declared = [{"src": src} for src in DEFAULT_MOUNTS]
    extra = {"src": "/srv/aerie-extra", "dest": "/mnt/aerie-extra"}
    target = "/chroot/deb11-v1/mnt/aerie-extra"
    added = subprocess.run(module_argv(host, "chroot_mounts", {"name": "deb11", "mounts": [*declared, extra]}),
                           env=ansible_env(), capture_output=True, text=True, check=False)
    assert added.returncode == 0, added.stdout + added.stderr
    assert target in mount_points(host) and f" {target} none bind" in host.file("/etc/fstab").content_string
    removed = subprocess.run(module_argv(host, "chroot_mounts", {"name": "deb11", "mounts": declared}),
                             env=ansible_env(), capture_output=True, text=True, check=False)
    assert removed.returncode == 0 and "CHANGED" in removed.stdout, removed.stdout + removed.stderr
    assert target not in mount_points(host)
    assert f" {target} " not in host.file("/etc/fstab").content_string
    for src in DEFAULT_MOUNTS:  # the declared ones stay
        assert mount_points(host).count("/chroot/deb11-v1" + src) == 1


def test_local_fact_and_htcondor_hand_off(host):
    trees = fact(host)
    assert trees["el"]["current"] == "1" and trees["el"]["path"] == "/chroot/el"
    assert trees["deb11"]["current"] == "1"
    named = json.loads(host.file("/root/chroot_named_chroots.json").content_string)
    assert named == {"DEB11": "/chroot/deb11", "SL5": "/chroot/el"}


def test_upgrade_switches_the_link_to_the_new_version(host):
    rc, out = converge("-e", "aerie_test_el_version=2")
    assert rc == 0, out[-3000:]
    assert host.check_output("readlink /chroot/el") == "el-v2"
    assert host.check_output("chroot /chroot/el /bin/cat /etc/redhat-release") == "Aerie Legacy release 2.0"
    assert (fact(host)["el"]["current"], fact(host)["el"]["previous"]) == ("2", "1")
    assert "/chroot/el-v2/proc" in mount_points(host)  # mounted before the switch
    assert host.file("/chroot/el-v1").is_directory
    # Version 2 pins another package: a copy of version 1 would keep 1.0's files, so it was built in full.
    build = manifest(host, "/chroot/el-v2")["build"]
    assert build["mode"] == "full"
    assert build["notes"] == ["version 1: dnf.packages no longer lists aerie-legacy-base-1.0 (a clone would keep them)"]


SWITCHER = r"""
import subprocess, sys, time
sys.path.insert(0, "/root/aerie-collections")
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot import switch_link
reader = subprocess.Popen([sys.executable, "-c", '''
import os, sys
ok = fail = 0
seen = set()
while not os.path.exists("/root/flip.stop"):
    try:
        with open("/chroot/el/etc/os-release") as f:
            seen.add(f.read().split("VERSION_ID=")[1].strip())
        ok += 1
    except OSError:
        fail += 1
print(ok, fail, " ".join(sorted(seen)))
'''], stdout=subprocess.PIPE, text=True)
time.sleep(0.3)
for i in range(200):
    switch_link("/chroot/el", "el-v1" if i % 2 == 0 else "el-v2")
    time.sleep(0.005)
open("/root/flip.stop", "w").close()
print(reader.communicate()[0].strip())
"""


def test_200_switches_under_a_reader_lose_no_read(host):
    name = host.backend.name
    # The node gets the collection's helpers under their collection names, as a module sees them.
    utils = "/root/aerie-collections/ansible_collections/aerie/grid/plugins/module_utils"
    host.check_output(f"mkdir -p {utils}")
    for util in ("aerie_chroot.py", "aerie_core.py"):
        subprocess.run(["podman", "cp", str(REPO / "module_utils" / util), f"{name}:{utils}/{util}"], check=True)
    host.check_output("rm -f /root/flip.stop")
    ok, fail, seen = host.check_output(f"python3 -c {shlex.quote(SWITCHER)}").split(" ", 2)
    assert int(fail) == 0
    assert int(ok) > 200
    assert seen == '"1.0" "2.0"'  # the reader saw both versions: the flips happened under it
    assert host.check_output("readlink /chroot/el") == "el-v2"  # 200 flips end where they started
    assert host.check_output("ls -A /chroot | grep -c switch || true") == "0"


ROLLBACK = REPO / "playbooks/chroot-rollback.yml"


def test_rollback_playbook_returns_to_the_previous_version_and_to_a_given_one(host):
    rc, out = playbook(ROLLBACK, "-e", "name=el")
    assert rc == 0, out[-3000:]
    assert host.check_output("readlink /chroot/el") == "el-v1"
    assert (fact(host)["el"]["current"], fact(host)["el"]["previous"]) == ("1", "2")
    rc, out = playbook(ROLLBACK, "-e", "name=el", "-e", "version=2")
    assert rc == 0, out[-3000:]
    assert host.check_output("readlink /chroot/el") == "el-v2"
    assert [h["version"] for h in fact(host)["el"]["history"]] == ["1", "2", "1", "2"]


def test_rollback_to_a_missing_version_fails_and_leaves_the_link(host):
    rc, out = playbook(ROLLBACK, "-e", "name=el", "-e", "version=99")
    assert rc != 0
    assert "version 99 of el does not exist" in out and "available: 1, 2" in out
    assert host.check_output("readlink /chroot/el") == "el-v2"


def test_bad_input_fails_naming_the_problem_and_the_link_is_untouched(host):
    rc, out = playbook(SCENARIO / "bad_input.yml")
    assert rc == 0, out[-3000:]
    errors = json.loads(host.file("/root/bad_input.json").content_string)
    assert "chroot_trees" in errors["unknown_bootstrapper"] and "rpm5" in errors["unknown_bootstrapper"]
    assert "repository unreachable" in errors["unreachable_repository"]
    assert "checksum" in errors["missing_checksum"]
    assert "checksum mismatch" in errors["wrong_checksum"]
    assert "version 99 of el does not exist" in errors["missing_version"]
    assert "not switching /chroot/el to version 1: smoke test" in errors["failing_smoke_test"]
    assert "versions are immutable" in errors["changed_inputs"] and "dnf" in errors["changed_inputs"]
    assert errors["wrong_signing_key"].startswith("package signature check failed")
    assert "GPG check FAILED" in errors["wrong_signing_key"]
    assert host.check_output("readlink /chroot/el") == "el-v2"
    assert host.check_output("ls -A /chroot") == "\n".join(
        ["deb11", "deb11-v1", "el", "el-v1", "el-v2"]
    ), "a failed build left a tree or scratch directory behind"


def test_a_build_killed_midway_keeps_current_serving_and_the_next_run_completes(host):
    host.check_output(
        "mkdir -p /srv/tarballs && tar -C /chroot/el-v2 "
        + " ".join(f"--exclude=.{p}" for p in DEFAULT_MOUNTS)
        + " -czf /srv/tarballs/el.tar.gz . && rm -f /srv/tarballs/.stalled"
    )
    checksum = "sha256:" + host.check_output("sha256sum /srv/tarballs/el.tar.gz").split()[0]
    host.check_output("systemd-run --unit aerie-slow-http /usr/local/bin/aerie-slow-http /srv/tarballs 8099")
    args = {"name": "el", "version": "5", "bootstrapper": "tarball",
            "tarball": {"src": "http://127.0.0.1:8099/el.tar.gz", "checksum": checksum}}  # fmt: skip
    try:
        time.sleep(1)
        build = subprocess.Popen(module_argv(host, "chroot_tree", args), env=ansible_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)  # fmt: skip
        for _ in range(240):
            if host.file("/srv/tarballs/.stalled").exists:
                break
            time.sleep(0.5)
        else:
            build.kill()
            pytest.fail("the build never reached the stalled download: " + build.communicate()[0][-2000:])
        # The crash: every process of the module dies at once.
        killed = host.check_output(
            "for p in /proc/[0-9]*; do tr '\\0' ' ' <$p/cmdline 2>/dev/null | grep -q AnsiballZ_chroot_tre[e] "
            "&& kill -9 ${p#/proc/} && echo ${p#/proc/}; done; true"
        )
        assert killed, "no module process found to kill"
        out = build.communicate(timeout=120)[0]
        assert build.returncode != 0, out
        assert host.check_output("readlink /chroot/el") == "el-v2"
        assert host.run("chroot /chroot/el /bin/sh -c true").rc == 0
        assert not host.file("/chroot/el-v5").exists
        assert host.check_output("ls -A /chroot | grep -c '^.el-v5.build-' || true") != "0"

        rerun = subprocess.run(module_argv(host, "chroot_tree", args), env=ansible_env(), capture_output=True,
                               text=True, timeout=300)  # fmt: skip
        assert rerun.returncode == 0, rerun.stdout[-3000:]
        assert "cleaned:" in rerun.stdout and ".el-v5.build-" in rerun.stdout
        assert host.check_output("cat /chroot/el-v5/etc/redhat-release") == "Aerie Legacy release 2.0"
        assert host.check_output("ls -A /chroot | grep -c '^\\.el-v5\\.' || true") == "0"
    finally:
        host.run("systemctl stop aerie-slow-http")


def test_version_3_is_a_copy_of_the_current_one_which_stays_byte_identical(host):
    before = tree_digest(host, "/chroot/el-v2")
    rc, out = converge("-e", "aerie_test_el_version=3", "-e", "aerie_test_keep_count=4")
    assert rc == 0, out[-3000:]
    assert host.check_output("readlink /chroot/el") == "el-v3"
    built = manifest(host, "/chroot/el-v3")
    # Current version 2 has the same inputs: it is the base, nobody was passed over.
    assert built["build"] == {"mode": "incremental", "base_version": "2", "notes": []}
    assert built["packages"] == manifest(host, "/chroot/el-v2")["packages"]
    assert tree_digest(host, "/chroot/el-v2") == before
    # The copy holds the tree's own files, not the host's that were mounted over version 2's.
    assert own_file(host, "/chroot/el-v3", "/etc/passwd") == "root:x:0:0:root:/root:/bin/sh"
    assert host.check_output("ls -A /chroot/el-v3/proc | wc -l") != "0"  # mounted for jobs after the build
    assert host.check_output("ls -A /chroot | grep -c 'clone-' || true") == "0"
    # What version 2's secure pass stripped is still stripped, and still on record.
    assert host.file("/chroot/el-v3/usr/bin/legacy-ping").mode == 0o755
    assert "/usr/bin/legacy-ping" in {c["path"] for c in built["secure_pass"]}
    assert host.file("/chroot/el-v3/usr/bin/legacy-su").mode == 0o4755


def test_a_busy_old_version_blocks_cleanup_then_the_oldest_kept_goes(host):
    # Versions now: 1, 2 (current), 5 (built above). Version 3 with keep 1
    # keeps 5 (newest), 3 (current) and 2 (previous): 1 must go.
    host.check_output("systemd-run --unit aerie-busy -p WorkingDirectory=/chroot/el-v1/home sleep 600")
    try:
        rc, out = converge("-e", "aerie_test_el_version=3", "-e", "aerie_test_keep_count=1")
        assert rc != 0
        pid = host.check_output("systemctl show -p MainPID --value aerie-busy")
        assert f"refusing to delete /chroot/el-v1: in use: pid {pid} (sleep) has its cwd in /chroot/el-v1/home" in out
        assert host.file("/chroot/el-v1").is_directory
        assert "/chroot/el-v1/proc" in mount_points(host)
    finally:
        host.run("systemctl stop aerie-busy")
    rc, out = converge("-e", "aerie_test_el_version=3", "-e", "aerie_test_keep_count=1")
    assert rc == 0, out[-3000:]
    assert host.check_output("readlink /chroot/el") == "el-v3"
    assert host.check_output("ls -A /chroot") == "\n".join(["deb11", "deb11-v1", "el", "el-v2", "el-v3", "el-v5"])
    assert not [p for p in mount_points(host) if p.startswith("/chroot/el-v1/")]
    assert "/chroot/el-v1/" not in host.file("/etc/fstab").content_string
    unit = host.check_output("systemd-escape --path --suffix=mount /chroot/el-v1/proc")
    assert "LoadState=not-found" in host.check_output(f"systemctl show -p LoadState {shlex.quote(unit)}")


def test_force_rebuilds_a_kept_version_but_never_the_current_one(host):
    old = manifest(host, "/chroot/el-v2")
    rc, out = converge("-e", "aerie_test_el_version=2", "-e", "chroot_force_rebuild=el")
    assert rc == 0, out[-3000:]
    new = manifest(host, "/chroot/el-v2")
    assert new["built_at"] >= old["built_at"] and new["build"]["base_version"] == "3"
    assert host.check_output("readlink /chroot/el") == "el-v2"
    assert mount_points(host).count("/chroot/el-v2/proc") == 1  # the rebuilt tree is mounted again, once
    rc, out = converge("-e", "aerie_test_el_version=2", "-e", "chroot_force_rebuild=el")
    assert rc != 0
    assert "force refused: /chroot/el-v2 is the current version of el; switch away from it first" in out
    assert manifest(host, "/chroot/el-v2") == new


def test_a_debootstrap_version_with_one_more_package_is_a_copy_updated_by_apt(host):
    before = tree_digest(host, "/chroot/deb11-v1")
    rc, out = converge("-e", "aerie_test_deb_version=2", "-e", "aerie_test_el_version=2")
    assert rc == 0, out[-3000:]
    built = manifest(host, "/chroot/deb11-v2")
    assert built["build"] == {"mode": "incremental", "base_version": "1", "notes": []}
    assert host.check_output("chroot /chroot/deb11 hello") == "Hello, world!"
    assert host.check_output("readlink /chroot/deb11") == "deb11-v2"
    assert set(built["packages"]) - set(manifest(host, "/chroot/deb11-v1")["packages"]) == {"hello"}
    assert tree_digest(host, "/chroot/deb11-v1") == before
    assert host.run("chroot /chroot/deb11-v1 sh -c 'command -v hello'").rc != 0
    # apt ran under a policy-rc.d of its own and took it away again; nothing of the copy step stays mounted.
    assert not host.file("/chroot/deb11-v2/usr/sbin/policy-rc.d").exists
    assert own_file(host, "/chroot/deb11-v2", "/etc/resolv.conf") == own_file(host, "/chroot/deb11-v1",
                                                                               "/etc/resolv.conf")  # fmt: skip
    assert not [p for p in mount_points(host) if "clone-" in p or ".build-" in p]


def test_the_next_build_clears_what_a_crashed_incremental_build_left(host):
    # What a build killed while copying leaves: its scratch tree and the
    # read-only view of its base, still mounted (here for a version 7 that
    # the admin then gave up for version 8).
    host.check_output(
        "mkdir /chroot/.el-v7.clone-crash /chroot/.el-v7.build-crash && touch /chroot/.el-v7.build-crash/partial"
        " && mount --bind /chroot/el-v2 /chroot/.el-v7.clone-crash"
        " && mount -o remount,bind,ro /chroot/.el-v7.clone-crash"
    )
    before = tree_digest(host, "/chroot/el-v2")
    repo = {"name": "aerie-local", "baseurl": "file:///srv/aerie-repo", "gpgkey": "file:///srv/aerie-repo/RPM-GPG-KEY-aerie"}
    args = {"name": "el", "version": "8", "bootstrapper": "dnf", "setuid_allow": ["/usr/bin/legacy-su"],
            "dnf": {"releasever": "5", "repos": [repo], "packages": ["aerie-legacy-base-2.0"]}}  # fmt: skip
    run = subprocess.run(module_argv(host, "chroot_tree", args), env=ansible_env(), capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert "/chroot/.el-v7.clone-crash" in run.stdout and "/chroot/.el-v7.build-crash" in run.stdout
    assert not [p for p in mount_points(host) if "clone-" in p]
    assert host.check_output("ls -A /chroot | grep -c '^\\.el-v' || true") == "0"
    assert tree_digest(host, "/chroot/el-v2") == before
    assert manifest(host, "/chroot/el-v8")["build"]["base_version"] == "2"


def test_a_module_killed_mid_debootstrap_takes_debootstrap_along_and_frees_the_lock(host):
    args = {"name": "deb11", "version": "9", "bootstrapper": "debootstrap", "build_mode": "full",
            "debootstrap": {"suite": "bullseye"}}  # fmt: skip
    build = subprocess.Popen(module_argv(host, "chroot_tree", args), env=ansible_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        for _ in range(240):
            if host.run("pgrep -x debootstrap").rc == 0:
                break
            time.sleep(0.5)
        else:
            pytest.fail("debootstrap never started: " + build.communicate(timeout=60)[0][-2000:])
        time.sleep(3)  # well into the download
    finally:
        host.run("pkill -KILL -f 'AnsiballZ_chroot_tre[e]'")  # the crash: only the module's own processes
        build.communicate(timeout=120)
    # The kernel told debootstrap's timeout wrapper, which took the whole process group down.
    gone = "for i in $(seq 40); do pgrep -x 'debootstrap|wget|dpkg|timeout' || exit 0; sleep 0.5; done; exit 1"
    assert host.run(gone).rc == 0, host.check_output("ps -ef")
    assert host.run("flock -n /run/lock/aerie-chroot-deb11.lock true").rc == 0, "the tree lock is still held"
    assert host.check_output("ls -A /chroot | grep -c '^.deb11-v9.build-' || true") == "1"
    leftovers = "awk '$2 ~ /deb11-v9.build-/ {print $2}' /proc/self/mounts | sort -r"
    host.check_output(f"for m in $({leftovers}); do umount $m; done; rm -rf /chroot/.deb11-v9.build-*")


VERIFY_TASK = "Ensure every kept version is still what its manifest records"
PLANTED_SH = "/usr/local/bin/aerie-planted-sh"
PLANTED_DIR = "/srv/aerie-planted-dir"


def verify_results(report, host):
    """The chroot_verify task's per-tree results (item name -> result) from a JSON report."""
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(VERIFY_TASK):  # "chroot : ..." in a role
                return {r["item"]["name"]: r for r in task["hosts"][host.backend.name]["results"]}
    raise AssertionError(f"no {VERIFY_TASK!r} task in the report: {report.get('_stderr', '')[-2000:]}")


def test_a_tampered_tree_is_drift_in_check_mode_and_fails_a_normal_run_untouched(host):
    versions = ["-e", "aerie_test_deb_version=2", "-e", "aerie_test_el_version=2"]
    current = "/chroot/" + host.check_output("readlink /chroot/deb11")
    clean = aerie_testinfra.run_playbook(SCENARIO / "converge.yml", "--check", "--diff", *versions)
    assert clean["_returncode"] == 0, clean["_stderr"][-3000:]
    assert not any(r["changed"] for r in verify_results(clean, host).values())
    host.check_output(f"cp /bin/sh {current}{PLANTED_SH} && chmod 4755 {current}{PLANTED_SH}"
                      f" && mkdir {current}{PLANTED_DIR} && chmod 0777 {current}{PLANTED_DIR}")  # fmt: skip
    try:
        drift = aerie_testinfra.run_playbook(SCENARIO / "converge.yml", "--check", "--diff", *versions)
        assert drift["_returncode"] == 0, drift["_stderr"][-3000:]
        results = verify_results(drift, host)
        assert not results["el"]["changed"]
        deb = results["deb11"]
        assert deb["changed"] and deb["differing"] == [current.rsplit("-v", 1)[1]]
        paths = {d["path"]: d["why"] for d in deb["trees"][deb["differing"][0]]["differences"]}
        assert paths == {PLANTED_SH: "added with setuid/setgid", PLANTED_DIR: "added world-writable"}
        digest = host.check_output(f"sha256sum {current}{PLANTED_SH}").split()[0]
        assert f"{current}{PLANTED_SH}  (absent)\n" in deb["diff"]["before"]
        assert f"{current}{PLANTED_SH}  f 4755 0 0 {digest}  # added with setuid/setgid\n" in deb["diff"]["after"]
        assert f"{current}{PLANTED_DIR}  d 0777 0 0  # added world-writable\n" in deb["diff"]["after"]

        # A normal run fails the host naming the tree and the paths, and leaves the tree as it found it.
        rc, out = converge(*versions)
        assert rc != 0
        assert f"{current} differs from its manifest" in out and PLANTED_SH in out and PLANTED_DIR in out, out[-3000:]
        assert host.file(current + PLANTED_SH).mode == 0o4755
        assert host.file(current + PLANTED_DIR).mode == 0o777
    finally:
        host.check_output(f"rm -f {current}{PLANTED_SH} && rmdir {current}{PLANTED_DIR}")
    rc, out = converge(*versions)
    assert rc == 0, out[-3000:]
