"""aerie-http-plugin's route choice, run as a program in front of a stand-in curl_plugin.

The real plugin is proven in the site scenario (molecule/site/tests/test_jobs.py):
jobs on two workers cost the origin one request, and with the squid stopped
the job's input comes from the origin. Here a recording shell script plays
HTCondor's curl_plugin and condor_config_val, so each route can be checked
quickly, including the ones the scenario cannot reach (an upload, a squid
that answers but fails the transfer).
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from aerie_testutil import REPO, load_script

SCRIPT = REPO / "roles" / "condor_worker" / "files" / "aerie-http-plugin"
plugin = load_script("roles/condor_worker/files/aerie-http-plugin")


@pytest.fixture
def squid():
    """A listening socket standing in for a squid that answers; yields its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tmp_path, location: str | None, args: list[str], curl_rcs: list[int], curl: bool = True):
    """Run the plugin with a stand-in HTCondor.

    Returns (rc, [(http_proxy, CURL_IGNORE_HTTP_PROXY, argv) of each curl_plugin run], stderr)."""
    libexec = tmp_path / "libexec"
    libexec.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    rcs = tmp_path / "rcs"
    rcs.write_text("\n".join(map(str, curl_rcs)) + "\n")
    if curl:
        (libexec / "curl_plugin").write_text(
            f'#!/bin/sh\necho "${{http_proxy:-none}}|${{CURL_IGNORE_HTTP_PROXY:-0}}|$*" >> {calls}\n'
            f'rc=$(head -n 1 {rcs}); sed -i 1d {rcs}; exit "$rc"\n')
        (libexec / "curl_plugin").chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    values = {"LIBEXEC": str(libexec)} | ({"OSG_SQUID_LOCATION": f'"{location}"'} if location else {})
    cases = "".join(f"  {k}) echo '{v}' ;;\n" for k, v in values.items())
    ccv = bin_dir / "condor_config_val"
    ccv.write_text(f'#!/bin/sh\ncase "$1" in\n{cases}  *) echo "Not defined: $1" >&2; exit 1 ;;\nesac\n')
    ccv.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "http_proxy": "http://site-default:8080"}
    res = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return res.returncode, [tuple(line.split("|", 2)) for line in lines], res.stderr


def test_the_plugin_claims_http_only_with_curl_plugins_protocol():
    res = subprocess.run([sys.executable, str(SCRIPT), "-classad"], capture_output=True, text=True, check=True)
    ad = dict(line.split(" = ", 1) for line in res.stdout.splitlines())
    assert ad["SupportedMethods"] == '"http"'
    assert ad["ProtocolVersion"] == "2" and ad["MultipleFileSupport"] == "true"
    assert ad["PluginType"] == '"FileTransfer"'


def test_an_answering_squid_carries_the_transfer(tmp_path, squid):
    rc, calls, err = run(tmp_path, f"127.0.0.1:{squid}", ["-infile", "in", "-outfile", "out"], [0])
    assert rc == 0
    assert calls == [(f"http://127.0.0.1:{squid}", "0", "-infile in -outfile out")]
    assert "via squid" in err


def test_a_squid_that_does_not_answer_is_skipped_for_the_origin(tmp_path):
    port = closed_port()
    rc, calls, err = run(tmp_path, f"127.0.0.1:{port}", ["-infile", "in", "-outfile", "out"], [0])
    assert rc == 0
    assert calls == [("none", "1", "-infile in -outfile out")]
    assert f"squid http://127.0.0.1:{port} does not answer" in err


def test_a_transfer_that_fails_through_the_squid_is_tried_directly_once(tmp_path, squid):
    rc, calls, _ = run(tmp_path, f"127.0.0.1:{squid}", ["-infile", "in", "-outfile", "out"], [1, 0])
    assert rc == 0
    assert [c[:2] for c in calls] == [(f"http://127.0.0.1:{squid}", "0"), ("none", "1")]


def test_a_failure_both_ways_is_reported_with_curl_plugins_status(tmp_path, squid):
    rc, calls, _ = run(tmp_path, f"127.0.0.1:{squid}", ["-infile", "in", "-outfile", "out"], [1, 1])
    assert rc == 1 and len(calls) == 2


@pytest.mark.parametrize("location", [None, "UNAVAILABLE"])
def test_without_a_squid_the_transfer_is_direct(tmp_path, location):
    rc, calls, _ = run(tmp_path, location, ["-infile", "in", "-outfile", "out"], [0])
    assert rc == 0 and calls == [("none", "1", "-infile in -outfile out")]


def test_uploads_never_go_through_the_squid(tmp_path, squid):
    rc, calls, _ = run(tmp_path, f"127.0.0.1:{squid}", ["-infile", "in", "-outfile", "out", "-upload"], [0])
    assert rc == 0 and calls == [("none", "1", "-infile in -outfile out -upload")]


def test_without_curl_plugin_it_fails_with_a_message(tmp_path, squid):
    (tmp_path / "libexec").mkdir()
    (tmp_path / "libexec" / "curl_plugin").mkdir()  # there, but not an executable file
    rc, calls, err = run(tmp_path, f"127.0.0.1:{squid}", ["-infile", "in", "-outfile", "out"], [0], curl=False)
    assert rc == 1 and calls == []
    assert f"curl_plugin is not at {tmp_path}/libexec/curl_plugin" in err


@pytest.mark.parametrize(("location", "address"), [
    ("squid.example.org:3128", ("squid.example.org", 3128)),
    ("squid.example.org", ("squid.example.org", 3128)),
    ("[2001:db8::1]:8080", ("2001:db8::1", 8080)),
    ("UNAVAILABLE", None),
    ("squid:notaport", None),
])
def test_squid_locations_are_read_as_osg_writes_them(location, address):
    assert plugin.squid_address(location) == address
