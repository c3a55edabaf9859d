"""aerie-fetch against local HTTP servers: an origin and proxies that work, refuse, err or lie.

The helper is installed on worker nodes by the squid_client role from
roles/squid_client/files/aerie-fetch; here it is imported as a module (policy
functions) and run as a program (exit codes), with a fresh environment each
time so the developer's own http_proxy never leaks in.
"""

import hashlib
import http.client
import http.server
import os
import socket
import subprocess
import sys
import threading
import urllib.parse

import pytest
from aerie_testutil import REPO, load_script

SCRIPT = REPO / "roles" / "squid_client" / "files" / "aerie-fetch"
fetch = load_script("roles/squid_client/files/aerie-fetch")

ARCHIVE = os.urandom(3 * 1024 * 1024 + 17)  # spans several 1 MiB chunks
ARCHIVE_SHA = hashlib.sha256(ARCHIVE).hexdigest()
STALE = b"an older build of the archive"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.requests = []  # (path or absolute URL, headers) of every request
        self.mode = "forward"
        self.failures_left = 0
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server_address[1]}"

    def count(self, needle):
        return sum(1 for url, _ in self.requests if url.endswith(needle))


class OriginHandler(http.server.BaseHTTPRequestHandler):
    """/archive.tar, /missing (404), /cut (announces more bytes than it sends)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append((self.path, dict(self.headers)))
        if self.path == "/archive.tar":
            self._send(200, ARCHIVE)
        elif self.path == "/cut":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
        else:
            self._send(404, b"not found")

    def _send(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class ProxyHandler(OriginHandler):
    """A forward proxy; server.mode picks how it misbehaves.

    forward  relay to the origin
    error    503 with squid's X-Squid-Error header, like a proxy that cannot reach out
    denied   403 with X-Squid-Error: ERR_ACCESS_DENIED (client not in the allowed networks)
    stale    an outdated cached body unless the client sends Cache-Control: no-cache
    flaky    reset the connection server.failures_left times, then relay
    """

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, dict(self.headers)))
        if server.mode == "error":
            self._send(503, b"proxy error", [("X-Squid-Error", "ERR_CONNECT_FAIL 111")])
        elif server.mode == "denied":
            self._send(403, b"access denied", [("X-Squid-Error", "ERR_ACCESS_DENIED 0")])
        elif server.mode == "stale" and "no-cache" not in self.headers.get("Cache-Control", ""):
            self._send(200, STALE)
        elif server.mode == "flaky" and server.failures_left > 0:
            server.failures_left -= 1
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
        else:
            self._relay()

    def _relay(self):
        url = urllib.parse.urlsplit(self.path)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("GET", url.path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        self._send(resp.status, body)


@pytest.fixture
def origin():
    server = _Server(OriginHandler)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy():
    server = _Server(ProxyHandler)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def refused_address():
    """host:port where nothing listens: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"127.0.0.1:{port}"


def run(*args, cwd, **env):
    """Run aerie-fetch as a program with exactly the given environment."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


# ---- proxy selection and names -------------------------------------------


def test_proxy_comes_from_http_proxy_first():
    env = {"http_proxy": "http://squid.site:3128", "OSG_SQUID_LOCATION": "other:8080"}
    assert fetch.proxy_for("http://origin/a", env) == "http://squid.site:3128"


def test_osg_squid_location_is_used_without_http_proxy():
    assert fetch.proxy_for("http://origin/a", {"OSG_SQUID_LOCATION": "squid.site:3130"}) == "http://squid.site:3130"
    # host without a port: squid's customary 3128
    assert fetch.proxy_for("http://origin/a", {"OSG_SQUID_LOCATION": "squid.site"}) == "http://squid.site:3128"


def test_unavailable_means_direct():
    assert fetch.proxy_for("http://origin/a", {"OSG_SQUID_LOCATION": "UNAVAILABLE"}) is None
    assert fetch.proxy_for("http://origin/a", {}) is None


def test_https_uses_only_https_proxy():
    env = {"OSG_SQUID_LOCATION": "squid.site:3128", "http_proxy": "http://squid.site:3128"}
    assert fetch.proxy_for("https://origin/a", env) is None
    assert fetch.proxy_for("https://origin/a", {"https_proxy": "http://p:3128"}) == "http://p:3128"


def test_no_proxy_is_honoured():
    env = {"http_proxy": "http://p:3128", "no_proxy": "localhost,.site.example"}
    assert fetch.proxy_for("http://data.site.example/a", env) is None
    assert fetch.proxy_for("http://site.example/a", env) is None
    assert fetch.proxy_for("http://localhost:8000/a", env) is None
    assert fetch.proxy_for("http://elsewhere.org/a", env) == "http://p:3128"


def test_default_dest_is_the_url_file_name():
    assert fetch.default_dest("http://o/x/archive%20v2.tar?token=1") == "archive v2.tar"
    with pytest.raises(fetch.UsageError):
        fetch.default_dest("http://o/")


# ---- fetching ------------------------------------------------------------


def test_fetches_through_the_proxy_from_the_environment(origin, proxy, tmp_path):
    url = f"http://{origin.address}/archive.tar"
    res = run(url, "--sha256", ARCHIVE_SHA, cwd=tmp_path, OSG_SQUID_LOCATION=proxy.address)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "archive.tar").read_bytes() == ARCHIVE
    assert proxy.count("/archive.tar") == 1
    assert origin.count("/archive.tar") == 1  # relayed by the proxy, not fetched twice
    assert f"via proxy http://{proxy.address}" in res.stderr
    assert (tmp_path / "archive.tar").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert leftovers(tmp_path) == []


def test_refusing_proxy_is_retried_then_bypassed(origin, refused_address, tmp_path):
    url = f"http://{origin.address}/archive.tar"
    res = run(url, "out.tar", "--tries", "3", "--waitretry", "0", cwd=tmp_path,
              http_proxy=f"http://{refused_address}")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.tar").read_bytes() == ARCHIVE
    assert res.stderr.count("connection refused (try") == 2  # tries 1 and 2 wait, try 3 gives up
    assert "connection refused (after 3 tries); fetching directly" in res.stderr
    assert origin.count("/archive.tar") == 1


def test_waits_grow_and_are_capped_by_waitretry(origin, refused_address, tmp_path):
    waits = []
    fetcher = fetch.Fetcher(tries=5, waitretry=2.5, sleep=waits.append)
    size, digest, route = fetcher.fetch(
        f"http://{origin.address}/archive.tar", str(tmp_path / "a"), proxy=f"http://{refused_address}"
    )
    assert waits == [1.0, 2.0, 2.5, 2.5]
    assert (size, digest, route) == (len(ARCHIVE), ARCHIVE_SHA, "direct")


def test_proxy_returning_errors_falls_back_to_direct(origin, proxy, tmp_path):
    proxy.mode = "error"
    res = run(f"http://{origin.address}/archive.tar", "--sha256", ARCHIVE_SHA, cwd=tmp_path,
              http_proxy=f"http://{proxy.address}")
    assert res.returncode == 0, res.stderr
    assert "proxy error HTTP 503 (ERR_CONNECT_FAIL 111); fetching directly" in res.stderr
    assert (tmp_path / "archive.tar").read_bytes() == ARCHIVE
    assert proxy.count("/archive.tar") == 1  # a proxy error is not retried on the proxy
    assert origin.count("/archive.tar") == 1


def test_proxy_denying_access_falls_back_to_direct(origin, proxy, tmp_path):
    proxy.mode = "denied"
    res = run(f"http://{origin.address}/archive.tar", cwd=tmp_path, http_proxy=f"http://{proxy.address}")
    assert res.returncode == 0, res.stderr
    assert "ERR_ACCESS_DENIED" in res.stderr
    assert origin.count("/archive.tar") == 1


def test_no_direct_fails_when_the_proxy_fails(origin, proxy, tmp_path):
    proxy.mode = "error"
    res = run(f"http://{origin.address}/archive.tar", "--no-direct", cwd=tmp_path,
              http_proxy=f"http://{proxy.address}")
    assert res.returncode == 8
    assert origin.count("/archive.tar") == 0
    assert list(tmp_path.iterdir()) == []


def test_origin_error_through_the_proxy_is_final(origin, proxy, tmp_path):
    # A 404 the origin sent through a healthy proxy: fetching it directly would only load the origin.
    res = run(f"http://{origin.address}/missing", cwd=tmp_path, http_proxy=f"http://{proxy.address}")
    assert res.returncode == 8
    assert "HTTP 404" in res.stderr
    assert origin.count("/missing") == 1
    assert list(tmp_path.iterdir()) == []


def test_connection_reset_by_the_proxy_is_retried(origin, proxy, tmp_path):
    proxy.mode = "flaky"
    proxy.failures_left = 1
    res = run(f"http://{origin.address}/archive.tar", "--waitretry", "0", cwd=tmp_path,
              http_proxy=f"http://{proxy.address}")
    assert res.returncode == 0, res.stderr
    assert "(try 1/3), retrying" in res.stderr
    assert proxy.count("/archive.tar") == 2
    assert "fetching directly" not in res.stderr


def test_checksum_mismatch_exits_9_and_writes_nothing(origin, tmp_path):
    wrong = "0" * 64
    (tmp_path / "archive.tar").write_bytes(b"the previous good copy")
    res = run(f"http://{origin.address}/archive.tar", "--sha256", wrong, cwd=tmp_path)
    assert res.returncode == 9
    assert "does not match" in res.stderr
    assert (tmp_path / "archive.tar").read_bytes() == b"the previous good copy"  # untouched
    assert leftovers(tmp_path) == []


def test_checksum_mismatch_through_the_proxy_refreshes_then_goes_direct(origin, proxy, tmp_path):
    res = run(f"http://{origin.address}/archive.tar", "--sha256", "f" * 64, cwd=tmp_path,
              http_proxy=f"http://{proxy.address}")
    assert res.returncode == 9
    assert proxy.count("/archive.tar") == 2  # plain, then Cache-Control: no-cache
    assert origin.count("/archive.tar") == 3  # two relayed by the proxy, one direct
    assert leftovers(tmp_path) == []


def test_stale_cached_copy_is_refreshed_through_the_proxy(origin, proxy, tmp_path):
    proxy.mode = "stale"
    res = run(f"http://{origin.address}/archive.tar", "--sha256", ARCHIVE_SHA, cwd=tmp_path,
              http_proxy=f"http://{proxy.address}")
    assert res.returncode == 0, res.stderr
    assert "asking the proxy to refetch" in res.stderr
    assert (tmp_path / "archive.tar").read_bytes() == ARCHIVE
    headers = [h for _, h in proxy.requests]
    assert headers[0].get("Cache-Control") is None
    assert headers[1].get("Cache-Control") == "no-cache"
    assert origin.count("/archive.tar") == 1  # only the refresh reached the origin


def test_unreachable_everything_is_a_network_failure(refused_address, tmp_path):
    res = run(f"http://{refused_address}/archive.tar", "--tries", "2", "--waitretry", "0", cwd=tmp_path,
              http_proxy=f"http://{refused_address}")
    assert res.returncode == 4
    assert "direct: connection refused (after 2 tries)" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_body_cut_short_is_a_network_failure(origin, tmp_path):
    res = run(f"http://{origin.address}/cut", "--tries", "2", "--waitretry", "0", cwd=tmp_path)
    assert res.returncode == 4
    assert "transfer cut short: 10 of 1000 bytes" in res.stderr
    assert origin.count("/cut") == 2
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_is_a_local_error(origin, tmp_path):
    res = run(f"http://{origin.address}/archive.tar", str(tmp_path / "no" / "such" / "dir" / "f"), cwd=tmp_path)
    assert res.returncode == 3
    assert origin.count("/archive.tar") == 0  # fails before loading anybody


def test_destination_directory_gets_the_url_file_name(origin, tmp_path):
    (tmp_path / "inputs").mkdir()
    res = run(f"http://{origin.address}/archive.tar", "inputs", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert (tmp_path / "inputs" / "archive.tar").read_bytes() == ARCHIVE


@pytest.mark.parametrize(
    "args",
    [
        ["ftp://origin/file"],
        ["http://origin/file", "--sha256", "abc"],
        ["http://origin/file", "--tries", "0"],
        [],
    ],
)
def test_usage_errors_exit_2(args, tmp_path):
    res = run(*args, cwd=tmp_path)
    assert res.returncode == 2
    assert "usage: aerie-fetch" in res.stderr


def test_help_documents_the_exit_codes(tmp_path):
    res = run("--help", cwd=tmp_path)
    assert res.returncode == 0
    for line in ("0  success", "3  local file error", "4  network failure", "8  the server answered", "9  checksum"):
        assert line in res.stdout


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
