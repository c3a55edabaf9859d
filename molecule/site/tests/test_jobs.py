"""Real jobs on the converged site (issue 15): chroot trees and the site squid.

The site's own settings (the lab's group_vars) are what is tested: the
``bullseye`` tree on every worker and the squid on site-squid. (cgroup
enforcement is proven on the cgroup v2 VM, molecule/cgroups_v2: this
machine mounts cpu and cpuacct apart, which HTCondor's v1 code cannot use.)
Jobs are submitted by an ordinary user on site-cm; what is
asserted is what the job saw from inside (its output), what the worker shows
about the job's processes, what HTCondor recorded, and what the origin
served. Independent jobs are submitted together (one fixture), so their
waits overlap.

A job that must stay running while the test looks at it waits for a release
file under /home/aerie-release on its worker: /home is bind-mounted into
every chroot tree, so a chroot job sees it too. The job writes its PID there.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import aerie_jobs
import pytest
import testinfra
from aerie_jobs import job, wait_for
from aerie_origin import Origin

REPO = Path(__file__).resolve().parents[3]
INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent")).parent
AP = testinfra.get_host("podman://site-cm")
W1, W2 = (testinfra.get_host(f"podman://site-worker{i}") for i in (1, 2))
SQUID = testinfra.get_host("podman://site-squid")
HOME = "/home/alice/jobs"
RELEASE = "/home/aerie-release"
TREE = "bullseye"  # the lab's tree (inventories/lab/group_vars/worker_nodes/chroot.yml)

# Waits for its release file, after saying where it runs (its PID goes beside the release file).
HELD_OPEN = """#!/bin/sh
echo $$ > {release}/{name}.pid
echo "== os-release"; cat /etc/os-release
echo "== manifest"; cat /.aerie-chroot.json 2>/dev/null; echo
echo "== pwd"; pwd
echo "== hello"; command -v hello || echo none
while [ ! -e {release}/{name} ]; do sleep 1; done
echo "== released"
"""


def condor_name(worker) -> str:
    """The name jobs ask for (RequestedChroot): the tree's entry in NAMED_CHROOT."""
    entries = worker.check_output("condor_config_val NAMED_CHROOT").split(",")
    names = dict(entry.strip().split("=", 1) for entry in entries)
    return next(name for name, path in names.items() if path == f"/chroot/{TREE}")


def held_open(name: str) -> str:
    return HELD_OPEN.format(release=RELEASE, name=name)


def section(text: str, name: str) -> str:
    return text.split(f"== {name}\n", 1)[1].split("\n== ", 1)[0].strip()


def release(worker, name: str) -> None:
    worker.run(f"touch {RELEASE}/{name}")


def job_pid(worker, name: str) -> int:
    assert wait_for(lambda: worker.file(f"{RELEASE}/{name}.pid").exists, timeout=60), f"{name} wrote no PID"
    return int(worker.file(f"{RELEASE}/{name}.pid").content_string)


def output(name: str) -> str:
    return AP.file(f"{HOME}/{name}/job.out").content_string


def run_site(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", str(INVENTORY), str(REPO / "site.yml"),
                          "-e", "aerie_worker_batch=100%", *args], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    return res


def finished(cluster: str, timeout: int = 240) -> list[str]:
    """JobStatus and ExitCode once the job left the queue (or its state at the timeout)."""
    wait_for(lambda: job(AP, cluster, "JobStatus") in (["4"], ["5"], ["3"]), timeout=timeout)
    return job(AP, cluster, "JobStatus", "ExitCode") or []


ARCHIVE = os.urandom(20 << 20)
SHA = hashlib.sha256(ARCHIVE).hexdigest()


@pytest.fixture(scope="module")
def site():
    """The origin, the user, and the jobs that need nothing from each other, submitted at once."""
    aerie_jobs.ensure_user(AP)
    for w in (W1, W2):
        w.check_output(f"rm -rf {RELEASE} && mkdir -p -m 1777 {RELEASE}")
    with Origin() as origin:
        chroot = f'request_memory = 64\n+RequestedChroot = "{condor_name(W1)}"'
        transfer = "request_memory = 64\nshould_transfer_files = YES\ntransfer_input_files = {}"
        fetch_twice = ('#!/bin/sh\nenv | sort\nfor i in 1 2; do echo "== fetch $i"; '
                       'curl -sS -o /dev/null -D - "{}" | tr -d "\\r"; done\n')
        count = "#!/bin/sh\nsha256sum archive.tar.gz\n"
        clusters = {
            "chroot_a": aerie_jobs.submit(AP, f"{HOME}/chroot_a", held_open("chroot_a"), W1, chroot),
            # A name that is part of a real one: the slot's edChroot (a regexp
            # condor_submit adds) would match it; START's exact check must not.
            "prefix": aerie_jobs.submit(AP, f"{HOME}/prefix", "#!/bin/sh\ncat /etc/os-release\n", None,
                                        f'request_memory = 64\n+RequestedChroot = "{condor_name(W1)[:-1]}"'),
            "env": aerie_jobs.submit(AP, f"{HOME}/env", fetch_twice.format(origin.add("page.bin", ARCHIVE[:1 << 20])),
                                     W1),
            "transfer1": aerie_jobs.submit(AP, f"{HOME}/transfer1", count, W1,
                                           transfer.format(origin.add("archive.tar.gz", ARCHIVE))),
            "transfer2": aerie_jobs.submit(AP, f"{HOME}/transfer2", count, W2,
                                           transfer.format(origin.url("archive.tar.gz"))),
        }
        try:
            yield origin, clusters
        finally:
            for w in (W1, W2):
                w.run(f"touch {RELEASE}/chroot_a {RELEASE}/chroot_b")
            AP.run("condor_rm -all")


def test_a_chroot_job_runs_in_the_trees_current_version_with_its_scratch_inside_it(site):
    _origin, clusters = site
    assert wait_for(lambda: job(AP, clusters["chroot_a"], "JobStatus") == ["2"], timeout=150), "never started"
    pid = job_pid(W1, "chroot_a")
    current = W1.check_output(f"readlink -f /chroot/{TREE}")
    assert W1.check_output(f"readlink /proc/{pid}/root") == current
    # The job's scratch is the EXECUTE directory inside the tree, not the host's.
    cwd = W1.check_output(f"readlink /proc/{pid}/cwd")
    assert cwd.startswith(f"{current}/var/lib/condor/execute/dir_"), cwd


def test_a_switch_leaves_the_running_job_alone_and_the_next_runs_in_the_new_version(site):
    _origin, clusters = site
    before = W1.check_output(f"readlink -f /chroot/{TREE}")
    assert before == f"/chroot/{TREE}-v1"
    # Version 2: the tree with one more package, built and switched to while chroot_a runs in version 1.
    v2 = [{"name": TREE, "version": "2", "bootstrapper": "debootstrap",
           "debootstrap": {"suite": "bullseye", "variant": "minbase", "include": ["hello"]}}]
    try:
        run_site("--limit", "site-worker1", "--tags", "chroot", "-e", json.dumps({"chroot_trees": v2}))
        assert W1.check_output(f"readlink -f /chroot/{TREE}") == f"/chroot/{TREE}-v2"
        assert job(AP, clusters["chroot_a"], "JobStatus") == ["2"], "the switch disturbed the running job"
        release(W1, "chroot_a")
        assert finished(clusters["chroot_a"]) == ["4", "0"]
        old = output("chroot_a")
        # Released through the bind-mounted /home: it saw a file made on the host after it started.
        assert "== released" in old
        assert "VERSION_CODENAME=bullseye" in section(old, "os-release")
        assert json.loads(section(old, "manifest"))["version"] == "1"
        assert section(old, "hello") == "none"

        release(W1, "chroot_b")
        b = aerie_jobs.submit(AP, f"{HOME}/chroot_b", held_open("chroot_b"), W1,
                              f'request_memory = 64\n+RequestedChroot = "{condor_name(W1)}"')
        assert finished(b) == ["4", "0"]
        new = output("chroot_b")
        assert json.loads(section(new, "manifest"))["version"] == "2"
        assert section(new, "hello") == "/usr/bin/hello"
        assert section(new, "pwd").startswith("/var/lib/condor/execute/dir_")
    finally:
        # Back to the declared version 1 (kept for rollback), as the rest of the scenario expects.
        run_site("--limit", "site-worker1", "--tags", "chroot")
    assert W1.check_output(f"readlink -f /chroot/{TREE}") == before


def test_a_job_asking_for_a_tree_name_no_node_has_never_starts(site):
    _origin, clusters = site
    # By now the other jobs have been matched and run (several negotiation cycles).
    assert finished(clusters["env"]) == ["4", "0"]
    assert job(AP, clusters["prefix"], "JobStatus", "NumJobStarts") == ["1", "0"]
    AP.run(f"condor_rm {clusters['prefix']}")


def test_a_job_sees_the_squid_and_its_second_fetch_is_a_cache_hit(site):
    origin, clusters = site
    assert finished(clusters["env"]) == ["4", "0"]
    out = output("env")
    location = W1.check_output("condor_config_val OSG_SQUID_LOCATION").strip('"')
    assert location.startswith("site-squid:"), location
    assert f"OSG_SQUID_LOCATION={location}" in out.splitlines()
    assert f"http_proxy=http://{location}" in out.splitlines()
    first, second = section(out, "fetch 1"), section(out, "fetch 2")
    assert first.startswith("HTTP/1.1 200") and second.startswith("HTTP/1.1 200"), out
    assert "X-Cache: MISS" in first and "X-Cache: HIT" in second, out
    assert origin.requests("page.bin") == 1


def test_http_inputs_of_jobs_on_two_workers_cost_the_origin_one_request(site):
    origin, clusters = site
    for name in ("transfer1", "transfer2"):
        assert finished(clusters[name]) == ["4", "0"], name
        assert output(name).split()[0] == SHA, name
    assert origin.requests("archive.tar.gz") == 1


def test_with_the_squid_down_http_inputs_come_from_the_origin(site):
    origin, _clusters = site
    SQUID.check_output("systemctl stop squid")
    try:
        url = origin.add("direct.tar.gz", ARCHIVE[: 5 << 20])
        cluster = aerie_jobs.submit(AP, f"{HOME}/direct", "#!/bin/sh\nsha256sum direct.tar.gz\n", W1,
                                    f"request_memory = 64\nshould_transfer_files = YES\ntransfer_input_files = {url}")
        assert finished(cluster) == ["4", "0"], AP.run(f"condor_q {cluster} -af HoldReason").stdout
        assert output("direct").split()[0] == hashlib.sha256(ARCHIVE[: 5 << 20]).hexdigest()
        assert origin.requests("direct.tar.gz") == 1
    finally:
        SQUID.check_output("systemctl start squid")
