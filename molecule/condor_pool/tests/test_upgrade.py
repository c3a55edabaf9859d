"""An HTCondor upgrade rolls through the workers one batch at a time, each
node drained first, so the job running there finishes (issue 16).

HTCondor's next release cannot be downloaded here, so the test publishes one
the way a site mirror would: the same packages rebuilt as 25.0.13-1+aerie2
(a packaging revision: real daemons, a real apt upgrade), in a repository
signed with a key made for the test and served over HTTP from the
controller. This module runs last in the scenario (it leaves the workers on
that release).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import aerie_testinfra
import pytest
from aerie_jobs import job, wait_for
from test_change import playbook_releasing_on_drain, release, submit, until_released
from test_pool import REPO, WORKERS, node, playbook, slots

testinfra_hosts = aerie_testinfra.hosts("access_points")

OLD, NEW = "25.0.13-1+aerie1", "25.0.13-1+aerie2"


def mirror_dir() -> Path:
    """The HTCondor repository scripts/htcondor-mirror serves."""
    for d in (os.environ.get("AERIE_HTCONDOR_REPO"), REPO.parent / "shared/htcondor", "/work/shared/htcondor"):
        if d and (Path(d) / "dists/bookworm/InRelease").is_file():
            return Path(d)
    pytest.fail("no HTCondor repository (set AERIE_HTCONDOR_REPO)")


def run(*argv, **kw) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def publish_next_release(out: Path) -> None:
    """A signed apt repository in OUT holding every package at NEW."""
    gnupg = out.parent / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(gnupg))
    run("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "aerie test mirror", "ed25519", "sign", "never",
        env=env)
    pool = out / "pool/main"
    pool.mkdir(parents=True)
    for deb in sorted((mirror_dir() / "pool/main").glob(f"*_{OLD}_*.deb")):
        tree = out.parent / deb.stem
        run("dpkg-deb", "-R", str(deb), str(tree))
        control = tree / "DEBIAN/control"
        control.write_text(control.read_text().replace(OLD, NEW))
        run("dpkg-deb", "-Zgzip", "-z1", "-b", str(tree), str(pool / deb.name.replace(OLD, NEW)))
        shutil.rmtree(tree)
    dist = out / "dists/bookworm"
    binary = dist / "main/binary-amd64"
    binary.mkdir(parents=True)
    packages = run("dpkg-scanpackages", "--multiversion", "pool", cwd=out).encode()
    (binary / "Packages").write_bytes(packages)
    (binary / "Packages.gz").write_bytes(gzip.compress(packages))
    sums = "".join(f" {hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_size} {p.relative_to(dist)}\n"
                   for p in (binary / "Packages", binary / "Packages.gz"))
    (dist / "Release").write_text(
        "Origin: aerie test mirror\nSuite: bookworm\nCodename: bookworm\nArchitectures: amd64\nComponents: main\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\nSHA256:\n{sums}")
    run("gpg", "--batch", "--yes", "--clearsign", "-o", str(dist / "InRelease"), str(dist / "Release"), env=env)
    (out / "key.asc").write_text(run("gpg", "--armor", "--export", env=env))
    # gpg started an agent for this keyring; it would outlive the test run.
    run("gpgconf", "--kill", "gpg-agent", env=env)


@pytest.fixture(scope="module")
def next_release(tmp_path_factory):
    """URL of the mirror with NEW, served from the controller while the module runs."""
    out = tmp_path_factory.mktemp("htcondor-next") / "repo"
    publish_next_release(out)
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["python3", "-m", "http.server", "--bind", "0.0.0.0", str(port), "--directory", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://host.containers.internal:{port}"
    finally:
        server.terminate()
        server.wait()


def version(worker: str) -> str:
    return node(worker).check_output("dpkg-query -W -f '${Version}' condor")


def master_pid(worker: str) -> str:
    return node(worker).check_output("systemctl show -P MainPID condor")


def test_an_upgrade_drains_each_node_and_rolls_one_batch_at_a_time(host, next_release):
    assert [version(w) for w in WORKERS] == [OLD, OLD]
    pids = {w: master_pid(w) for w in WORKERS}
    script = until_released(WORKERS[0], "upgrade", "echo upgraded-around-me")
    cluster = submit(host, "upgrade", script, WORKERS[0])
    assert wait_for(lambda: job(host, cluster, "JobStatus") == ["2"], timeout=150), "the job never started"
    pin = {"htcondor_package_version": NEW, "htcondor_repo_debian_url": next_release,
           "htcondor_repo_debian_key_url": f"{next_release}/key.asc"}
    try:
        res = playbook_releasing_on_drain(WORKERS[0], "upgrade", "-e", json.dumps(pin), "-e", "aerie_worker_batch=1",
                                          limit="worker_nodes")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        # The job ran to its end on the node being upgraded: drained, not killed.
        assert job(host, cluster, "JobStatus", "ExitCode", "NumJobStarts") == ["4", "0", "1"]
        assert host.check_output("cat /home/alice/change/upgrade/job.out") == "upgraded-around-me"
    finally:
        release(WORKERS[0], "upgrade")
        host.run(f"condor_rm {cluster}")
    assert [version(w) for w in WORKERS] == [NEW, NEW]
    assert all(master_pid(w) != pids[w] for w in WORKERS), "a worker still runs the old daemons"
    # One batch per worker, in order: worker1 drained and upgraded in the first.
    batches = res.stdout.split("PLAY [Converge the execute nodes]")[1:]
    assert len(batches) == 2
    upgraded = r"TASK \[htcondor : Ensure HTCondor runs the pinned version\][^\n]*\n\s*changed: \[{}\]"
    for worker, other, batch in zip(WORKERS, reversed(WORKERS), batches, strict=True):
        assert re.search(upgraded.format(worker), batch), batch[-3000:]
        assert f"[{other}]" not in batch.split("PLAY RECAP")[0]
    assert "Ask the startd to drain, running jobs = 1" in batches[0]
    # Both nodes advertise again and run the new version's daemons.
    assert wait_for(lambda: {s.split("@", 1)[1] for s in slots(host)} == set(WORKERS), timeout=120)
    assert NEW.split("-")[0] in node(WORKERS[1]).check_output("condor_version")

    again = playbook("-e", json.dumps(pin), limit="worker_nodes")
    assert again.returncode == 0, again.stdout[-3000:]
    assert re.findall(r"changed=(\d+)", again.stdout.split("PLAY RECAP")[-1]) == ["0", "0"]
