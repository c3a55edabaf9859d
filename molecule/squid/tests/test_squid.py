"""The site squid caches job inputs, merges concurrent misses, and refuses what it must.

Every request is made by a real client on a real instance: the worker (the
only address in squid_allowed_networks) through OSG_SQUID_LOCATION from its
login shell, the origin as the stranger. The origin's journal counts the
requests that reached it. Each test fetches files of its own (copies made
with a fresh name), so `molecule verify` can be repeated.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aerie_testinfra
import pytest
import testinfra
import yaml

testinfra_hosts = aerie_testinfra.hosts("squid_servers")

ORIGIN_PORT = 8000
ARCHIVE_BYTES = 83 * 1048576
DATASET_BYTES = 21 * 1048576


def _host(group):
    return testinfra.get_host(aerie_testinfra.hosts(group)[0])


@pytest.fixture(scope="module")
def proxy():
    return _host("squid_servers")


@pytest.fixture(scope="module")
def worker():
    return _host("worker_nodes")


@pytest.fixture(scope="module")
def origin():
    return _host("origins")


def _name(host):
    return host.backend.hostname


def origin_url(origin, path):
    return f"http://{_name(origin)}:{ORIGIN_PORT}/{path}"


def fresh_copy(origin, source):
    """A copy of an origin file under a new name (same bytes, same old mtime): a URL nobody fetched yet."""
    stem, ext = source.rsplit(".", 1)
    name = f"{stem}-{uuid.uuid4().hex[:8]}.{ext}"
    origin.check_output(f"cp -p /srv/origin/{source} /srv/origin/{name}")
    return name


def origin_hits(origin, name):
    """GET requests for /name in the origin's log, once the count is stable."""
    cmd = f"journalctl -u aerie-origin -o cat --no-pager | grep -c '\"GET /{name} ' || true"
    last = None
    for _ in range(10):
        count = int(origin.check_output(cmd).strip() or 0)
        if count == last:
            return count
        last = count
        time.sleep(0.5)
    return last


def on_worker(worker, script):
    """Run script in a login shell on the worker (profile.d applied)."""
    return worker.run("bash -lc " + shlex.quote(script))


def test_squid_runs_enabled_and_listens(proxy):
    squid = proxy.service("squid")
    assert squid.is_running
    assert squid.is_enabled
    assert proxy.socket("tcp://0.0.0.0:3128").is_listening or proxy.socket("tcp://:::3128").is_listening


def test_installed_configuration_is_valid_and_closed(proxy):
    assert proxy.run("squid -k parse -f /etc/squid/squid.conf").rc == 0
    conf = proxy.file("/etc/squid/squid.conf").content_string
    assert "http_access allow all" not in conf
    assert re.search(r"^http_access deny all$", conf, re.M)
    assert "collapsed_forwarding on" in conf
    assert "maximum_object_size 1024 MB" in conf


def test_cache_directory_was_initialized(proxy):
    level1 = proxy.file("/var/spool/squid/00")
    assert level1.is_directory
    assert level1.user == "proxy"


def test_worker_login_shell_knows_the_proxy(worker, proxy):
    inventory = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())
    hostvars = {}
    for group in inventory.values():
        hostvars.update((group or {}).get("hosts") or {})
    address = (hostvars.get(_name(proxy)) or {}).get("ansible_host", _name(proxy))
    res = on_worker(worker, 'echo "$OSG_SQUID_LOCATION"')
    assert res.stdout.strip() == f"{address}:3128"
    csh = worker.file("/etc/profile.d/aerie-squid.csh").content_string
    assert f"setenv OSG_SQUID_LOCATION {address}:3128" in csh


def test_second_fetch_of_the_archive_is_a_cache_hit(worker, proxy, origin):
    name = fresh_copy(origin, "archive.tar")
    url = origin_url(origin, name)
    curl = f'curl -sS -o /dev/null -D - -x "$OSG_SQUID_LOCATION" {url}'
    first = on_worker(worker, curl)
    second = on_worker(worker, curl)
    assert first.rc == 0 and second.rc == 0, first.stderr + second.stderr
    assert re.search(r"^X-Cache: MISS", first.stdout, re.M | re.I), first.stdout
    assert re.search(r"^X-Cache: HIT", second.stdout, re.M | re.I), second.stdout
    assert f"Content-Length: {ARCHIVE_BYTES}" in second.stdout
    log = proxy.check_output(f"grep -F {shlex.quote(url)} /var/log/squid/access.log")
    tags = [line.split()[3] for line in log.splitlines()]
    assert tags[0].startswith("TCP_MISS/200")
    assert tags[1].split("/")[0] in ("TCP_HIT", "TCP_MEM_HIT")
    assert origin_hits(origin, name) == 1


def test_aerie_fetch_gets_the_archive_from_the_cache(worker, origin):
    name = fresh_copy(origin, "archive.tar")
    url = origin_url(origin, name)
    sha = origin.check_output(f"sha256sum /srv/origin/{name}").split()[0]
    for _ in range(2):
        res = on_worker(worker, f"cd /tmp && aerie-fetch {url} job-archive.tar --sha256 {sha}")
        assert res.rc == 0, res.stderr
        assert "via proxy http://" in res.stderr
    assert worker.check_output("sha256sum /tmp/job-archive.tar").split()[0] == sha
    assert origin_hits(origin, name) == 1


def test_aerie_fetch_falls_back_to_direct_when_the_proxy_refuses(worker, proxy, origin):
    name = fresh_copy(origin, "small.txt")
    # A port where the proxy host refuses connections: as if squid were down.
    res = on_worker(
        worker,
        f"cd /tmp && OSG_SQUID_LOCATION={_name(proxy)}:3999 aerie-fetch --tries 2 --waitretry 0 "
        f"{origin_url(origin, name)} fallback.txt",
    )
    assert res.rc == 0, res.stderr
    assert "connection refused (after 2 tries); fetching directly" in res.stderr
    assert origin_hits(origin, name) == 1


def test_50_concurrent_fetches_of_an_uncached_file_reach_the_origin_once(worker, origin):
    name = fresh_copy(origin, "dataset-01.bin")
    url = origin_url(origin, name)
    res = on_worker(
        worker,
        "seq 50 | xargs -P 50 -I{} "
        f"curl -sS -o /dev/null -w '%{{http_code}} %{{size_download}}\\n' -x \"$OSG_SQUID_LOCATION\" {url}",
    )
    assert res.rc == 0, res.stderr
    results = res.stdout.split("\n")[:-1]
    assert results == [f"200 {DATASET_BYTES}"] * 50
    assert origin_hits(origin, name) == 1


def test_client_outside_the_allowed_networks_gets_403(worker, proxy, origin):
    url = origin_url(origin, "small.txt")
    stranger = origin.run(f"curl -sS -o /dev/null -D - -x {_name(proxy)}:3128 {url}")
    assert stranger.stdout.startswith("HTTP/1.1 403"), stranger.stdout
    assert "X-Squid-Error: ERR_ACCESS_DENIED" in stranger.stdout
    allowed = on_worker(worker, f"curl -sS -o /dev/null -w '%{{http_code}}' -x \"$OSG_SQUID_LOCATION\" {url}")
    assert allowed.stdout == "200"


def _connect_status(worker, target):
    res = on_worker(worker, f"curl -s -o /dev/null -w '%{{http_connect}}' -p -x \"$OSG_SQUID_LOCATION\" http://{target}/")
    return res.stdout.strip()


def test_connect_is_only_allowed_to_ssl_ports(worker, origin):
    assert _connect_status(worker, f"{_name(origin)}:25") == "403"
    # Port 443 passes the ACLs: squid tries, and nothing listens there.
    assert _connect_status(worker, f"{_name(origin)}:443") == "503"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata service
        "http://[fe80::1]/",  # IPv6 link-local
        "http://127.0.0.1:8080/",  # a service on the proxy host itself
    ],
)
def test_link_local_and_localhost_destinations_are_denied(worker, proxy, url):
    res = on_worker(worker, f"curl -sS -o /dev/null -D - -m 10 -x \"$OSG_SQUID_LOCATION\" {url}")
    assert res.stdout.startswith("HTTP/1.1 403"), res.stdout + res.stderr
    assert "X-Squid-Error: ERR_ACCESS_DENIED" in res.stdout
    assert proxy.run(f"grep -F 'TCP_DENIED/403' /var/log/squid/access.log | grep -qF {shlex.quote(url)}").rc == 0


@pytest.mark.parametrize(
    ("directive", "reason"),
    [
        ("cache_mem banana", "FATAL: Bungled new squid.conf line"),
        ("cache_mme 64 MB", "unrecognized: 'cache_mme'"),
    ],
)
def test_broken_custom_directive_fails_with_squids_reason_and_changes_nothing(proxy, worker, origin, directive, reason):
    def state():
        return (
            proxy.check_output("sha256sum /etc/squid/squid.conf"),
            proxy.check_output("systemctl show -p MainPID --value squid"),
            proxy.check_output("systemctl show -p ExecMainStartTimestampMonotonic --value squid"),
        )

    before = state()
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    playbook = Path(sys.executable).with_name("ansible-playbook")
    run = subprocess.run(
        [
            str(playbook),
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(scenario / "converge.yml"),
            "-e",
            json.dumps({"squid_custom_directives": [directive]}),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    failures = [
        json.loads(m.group(1))
        for m in re.finditer(rf"fatal: \[{re.escape(_name(proxy))}\]: FAILED! => (\{{.*\}})", out)
    ]
    assert len(failures) == 1, out
    msg = failures[0]["msg"]
    # squid's own verdict leads the message; none of its "Processing:" noise.
    assert reason in msg and msg.index(reason) < msg.index("(squid -k parse refused"), msg
    assert "Processing:" not in msg and "/dev/stdin" not in msg, msg
    assert "failed to validate" not in out
    # The refused file is no change: the proxy's play changed nothing.
    assert re.search(rf"{re.escape(_name(proxy))}\s*:\s*ok=\d+\s+changed=0\s+.*failed=1", out), out
    assert state() == before
    assert directive not in proxy.file("/etc/squid/squid.conf").content_string
    # ...and the proxy still serves.
    url = origin_url(origin, "small.txt")
    res = on_worker(worker, f"curl -sS -o /dev/null -w '%{{http_code}}' -x \"$OSG_SQUID_LOCATION\" {url}")
    assert res.stdout == "200"
