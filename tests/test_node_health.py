"""condor_worker's node health probe (files/aerie-node-health), run as the
startd runs it: a child process with a config file and the scratch path,
whose output is ClassAd attributes. The end-to-end gate (START false, the
reason in the slot ad, cleared by a fix) is molecule/condor_pool's."""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest
from aerie_testutil import REPO

PROBE = REPO / "roles/condor_worker/files/aerie-node-health"


def run_probe(tmp_path, config, scratch=None):
    path = tmp_path / "health.json"
    path.write_text(json.dumps(config))
    argv = [sys.executable, str(PROBE), str(path)] + ([str(scratch)] if scratch else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr  # never non-zero: the startd would drop the attributes
    ad = dict(line.split(" = ", 1) for line in done.stdout.splitlines())
    return ad["NodeHealthy"], json.loads(ad["NodeHealthReason"])


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "sl5-v1"
    (root / "bin").mkdir(parents=True)
    os.symlink("/bin/sh", root / "bin" / "sh")
    link = tmp_path / "sl5"
    link.symlink_to("sl5-v1")
    return link


@pytest.fixture
def http_listener():
    """A TCP service that answers any request with an HTTP status line, as squid does."""
    server = socket.create_server(("127.0.0.1", 0))
    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nServer: squid\r\n\r\n")
    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_a_node_with_everything_its_jobs_need_is_healthy(tmp_path, tree, http_listener):
    healthy, reason = run_probe(tmp_path, {"scratch_min_free_mb": 1, "chroots": {"sl5": str(tree)},
                                           "proxy": http_listener, "cgroup_controllers": []}, scratch=tmp_path)
    assert (healthy, reason) == ("True", "ok")


def test_each_problem_is_named_in_the_reason(tmp_path, tree):
    (tmp_path / "sl5").unlink()
    (tmp_path / "sl5").symlink_to("sl5-v9")  # re-pointed at a tree that is not there
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    free_mb = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize // 2**20
    healthy, reason = run_probe(tmp_path, {"scratch_min_free_mb": free_mb + 10**6, "chroots": {"sl5": str(tree)},
                                           "proxy": f"127.0.0.1:{port}", "cgroup_controllers": ["no_such_ctl"],
                                           "timeout_seconds": 2}, scratch=tmp_path)
    assert healthy == "False"
    problems = reason.split("; ")
    assert problems[0].startswith(f"scratch {tmp_path} has ") and problems[0].endswith(f"below {free_mb + 10**6} MB")
    assert problems[1] == f"chroot sl5: {tree} resolves to {tmp_path / 'sl5-v9'}, which is missing"
    assert problems[2] == f"squid 127.0.0.1:{port} does not answer (Connection refused)"
    assert problems[3] == "cgroup controllers not mounted: no_such_ctl"


def test_this_hosts_cgroup_memory_controller_is_seen(tmp_path):
    healthy, reason = run_probe(tmp_path, {"cgroup_controllers": ["memory"]})
    assert (healthy, reason) == ("True", "ok")


def test_a_probe_that_cannot_read_its_config_reports_unhealthy_with_the_cause(tmp_path):
    done = subprocess.run([sys.executable, str(PROBE), str(tmp_path / "missing.json")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "NodeHealthy = False" in done.stdout
    assert "the health probe failed: FileNotFoundError" in done.stdout


def test_a_reason_with_quotes_stays_one_classad_string(tmp_path):
    bad = tmp_path / 'we"ird'
    healthy, reason = run_probe(tmp_path, {"chroots": {"x": str(bad)}})
    assert healthy == "False" and f"{bad}" in reason
