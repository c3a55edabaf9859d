"""chroot_tree's build: the bootstrappers behind one interface, and a killed build's children.

The kill test runs the real build (aerie_chroot_build.build under the tree
lock) with a stand-in debootstrap on PATH, kills the module process with
SIGKILL mid-bootstrap, and shows that the bootstrapper dies with it and that
the next run's clean-up waits for whatever outlived the signal.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot_build as chroot_build
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError

# The checkout as the collection aerie.grid, for the module run as a child process.
COLLECTIONS = str(Path(__file__).resolve().parent.parent / "collections")

# debootstrap's stand-in: it starts a "dpkg" that ignores SIGTERM for a few
# seconds (as a process in the middle of unpacking might), then waits.
# The straggler lives 10 s: long enough to outlast the kill and the checks
# on a machine loaded by molecule lanes (4 s was not), short for the rerun.
FAKE_DEBOOTSTRAP = """\
#!/bin/sh
echo $$ > "$STATE/debootstrap.pid"
touch "$3/partial"
(trap '' TERM; exec sleep 10) &
echo $! > "$STATE/dpkg.pid"
sleep 120
"""

MODULE = """\
from ansible_collections.aerie.grid.plugins.module_utils import aerie_chroot, aerie_chroot_build as b
params = {{"name": "sl5", "version": "2", "root": {root!r}, "build_mode": "full", "setuid_allow": [],
          "execute_dir": "/var/lib/condor/execute", "bootstrapper": "debootstrap",
          "debootstrap": {{"suite": "bullseye", "mirror": "http://m", "variant": "minbase", "include": []}}}}
with aerie_chroot.tree_lock("sl5", {locks!r}) as lock:
    b.build(b.Steps(lock.fileno(), 3600), params, b.normalise_inputs(params), {root!r} + "/sl5-v2", None,
            {{"cleaned": []}})
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    # Reading a process's stat while it is reaped fails with ESRCH.
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_killed_build_takes_its_bootstrapper_along_and_the_next_run_waits_for_stragglers(tmp_path):
    root, locks, state, bindir = (tmp_path / d for d in ("chroot", "locks", "state", "bin"))
    for d in (root, locks, state, bindir):
        d.mkdir()
    (bindir / "debootstrap").write_text(FAKE_DEBOOTSTRAP)
    (bindir / "debootstrap").chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", STATE=str(state), PYTHONPATH=COLLECTIONS)
    code = MODULE.format(root=str(root), locks=str(locks))
    module = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        assert wait_for(lambda: (state / "dpkg.pid").exists(), 20), "the bootstrapper never started"
        scratch = [p for p in root.iterdir() if ".build-" in p.name]
        assert len(scratch) == 1 and (scratch[0] / "partial").exists()
        debootstrap, dpkg = (int((state / f"{n}.pid").read_text()) for n in ("debootstrap", "dpkg"))
    finally:
        module.send_signal(signal.SIGKILL)  # the crash: no handler, no clean-up
        module.wait()

    # The kernel told the bootstrapper's timeout wrapper, which took its process group down.
    assert wait_for(lambda: not alive(debootstrap), 5), "debootstrap outlived the module"
    assert alive(dpkg), "the straggler should still ignore SIGTERM here"

    # The next run: its clean-up runs under the tree lock, which the straggler still holds.
    seen = {}

    def next_run():
        with aerie_chroot.tree_lock("sl5", str(locks)) as lock:
            # The kernel drops an exiting process's locks (exit_files) a
            # moment before it turns it into a zombie (exit_notify), so the
            # lock can come free while /proc still shows the straggler
            # running: allow that moment, not the seconds it had left to live.
            seen["straggler alive"] = not wait_for(lambda: not alive(dpkg), 1)
            seen["cleaned"] = chroot_build.clear_leftovers(chroot_build.Steps(lock.fileno(), 0), str(root), "sl5")

    rerun = threading.Thread(target=next_run)
    rerun.start()
    time.sleep(0.5)
    assert rerun.is_alive(), "the next run got the lock while a process of the killed build lived"
    rerun.join(30)
    assert not rerun.is_alive()
    assert seen == {"straggler alive": False, "cleaned": [str(scratch[0])]}
    assert list(root.iterdir()) == []


def test_a_bootstrapper_over_its_time_limit_fails_the_build(tmp_path):
    steps = chroot_build.Steps(os.open(tmp_path, os.O_RDONLY), 1)
    started = time.monotonic()
    with pytest.raises(AerieError, match=r"debootstrap failed \(rc=124\): sleep 30"):
        steps.run(["sleep", "30"], "debootstrap", bounded=True)
    assert time.monotonic() - started < 10
    assert steps.run(["sleep", "1.5"], "unbounded step") == ""


def test_every_bootstrapper_section_is_checked_before_anything_is_built():
    assert {kind: cls.section for kind, cls in chroot_build.BOOTSTRAPPERS.items()} == {
        "dnf": "dnf", "yum": "dnf", "debootstrap": "debootstrap", "tarball": "tarball"}
    with pytest.raises(AerieError, match="a tarball tree cannot be updated in place"):
        chroot_build.Tarball(None, {}).update("/nowhere")


def test_a_tarball_with_the_wrong_checksum_is_never_unpacked(tmp_path):
    archive = tmp_path / "t.tar"
    subprocess.run(["tar", "-cf", str(archive), "-C", str(tmp_path), "--files-from", "/dev/null"], check=True)
    tree = tmp_path / ".t-v1.build-x"
    tree.mkdir()
    bad = chroot_build.Tarball(chroot_build.Steps(os.open(tmp_path, os.O_RDONLY), 0),
                               {"src": str(archive), "checksum": "sha256:" + "0" * 64})  # fmt: skip
    with pytest.raises(AerieError, match="checksum mismatch for"):
        bad.bootstrap(str(tree))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".t-v1.build-x", "t.tar"]  # the download is gone too
