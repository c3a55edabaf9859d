"""Pull mode of the drift check (issue 19): what a node may deliver, and the report built from deliveries.

The deliveries are the recorded lab run (fixtures/drift/tampered.events.jsonl)
split per host, as each node's own check run would have written them: the
report built from them must say what the push run's report says.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from aerie_testutil import load_script

drift = load_script("scripts/drift-check")
receive = load_script("scripts/drift-receive")
FIXTURES = Path(__file__).parent / "fixtures" / "drift"
NOW = 1_800_000_000.0


def per_host(events: list[dict]) -> dict[str, list[dict]]:
    """Each host's share of a push run: what its own check run would have recorded."""
    names = next(ev["hosts"] for ev in events if ev["event"] == "start")
    out = {}
    for name in names:
        mine = [{"event": "start", "hosts": [name]}]
        mine += [ev for ev in events if ev.get("host") == name]
        recap = next(ev for ev in events if ev["event"] == "stats")["hosts"][name]
        mine.append({"event": "stats", "hosts": {name: recap}})
        out[name] = mine
    return out


def lines(events: list[dict]) -> bytes:
    return "".join(json.dumps(ev) + "\n" for ev in events).encode()


@pytest.fixture
def tampered() -> list[dict]:
    return drift.read_events(FIXTURES / "tampered.events.jsonl")


# -- what a node may deliver ------------------------------------------------
def test_a_node_may_deliver_its_own_run(tampered):
    mine = per_host(tampered)["lab-worker1"]
    assert receive.validate(lines(mine), "lab-worker1") == mine


@pytest.mark.parametrize("forged", [
    {"event": "result", "host": "lab-worker2", "task": "t", "status": "changed"},
    {"event": "stats", "hosts": {"lab-worker1": {}, "lab-worker2": {}}},
    {"event": "start", "hosts": ["lab-worker1", "lab-cm1"]},
    {"event": "host_done"},
])
def test_a_node_cannot_report_for_another_host(tampered, forged):
    mine = per_host(tampered)["lab-worker1"]
    with pytest.raises(receive.Refused, match="line 2: names"):
        receive.validate(lines([*mine[:1], forged, *mine[1:]]), "lab-worker1")


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "no events"),
    (b'{"event": "start", "hosts": []}\nnot json\n', "line 2: not JSON"),
    (b'{"event": "shell", "host": "n1"}\n', "line 1: not a drift-check event"),
    (b'["result"]\n', "line 1: not a drift-check event"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_what_is_not_a_delivery_is_refused(data, reason):
    with pytest.raises(receive.Refused, match=reason):
        receive.validate(data, "n1")


def test_an_oversized_delivery_is_refused_before_it_is_parsed():
    with pytest.raises(receive.Refused, match="more than"):
        receive.validate(b" " * (receive.MAX_BYTES + 1), "n1")


def test_a_delivery_replaces_the_last_and_a_refused_one_keeps_it(tmp_path, tampered, capsys):
    mine = per_host(tampered)["lab-worker1"]
    assert receive.main(["--dir", str(tmp_path), "lab-worker1"], io.BytesIO(lines(mine[:2]))) == 0
    assert receive.main(["--dir", str(tmp_path), "lab-worker1"], io.BytesIO(lines(mine))) == 0
    kept = tmp_path / "lab-worker1.jsonl"
    assert drift.read_events(kept) == mine
    assert oct(kept.stat().st_mode & 0o777) == "0o640"
    assert receive.main(["--dir", str(tmp_path), "lab-worker1"], io.BytesIO(b"garbage\n")) == 1
    assert "refused lab-worker1's report: line 1: not JSON" in capsys.readouterr().err
    assert drift.read_events(kept) == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab-worker1.jsonl"]  # no temp file left


@pytest.mark.parametrize("name", ["../etc/passwd", ".hidden", "a/b", ""])
def test_a_key_for_a_name_that_is_no_host_name_stores_nothing(tmp_path, name):
    assert receive.main(["--dir", str(tmp_path), name], io.BytesIO(b'{"event": "start", "hosts": []}\n')) == 1
    assert list(tmp_path.iterdir()) == []


# -- the report from deliveries ---------------------------------------------
def test_deliveries_make_the_same_report_as_the_push_run(tampered):
    push = drift.build_report(tampered)
    deliveries = per_host(tampered)
    received = dict.fromkeys(deliveries, NOW - 3600)
    events, stale = drift.merge_deliveries(sorted(deliveries), deliveries, received, NOW, 26 * 3600)
    pull = drift.build_report(events)
    assert stale == {}
    assert {h: v["status"] for h, v in pull["hosts"].items()} == {h: v["status"] for h, v in push["hosts"].items()}
    assert pull["findings"] == push["findings"]
    assert pull["exit_code"] == push["exit_code"] == 6


def test_a_node_that_never_reported_or_reported_too_long_ago_is_stale(tampered):
    deliveries = per_host(tampered)
    received = dict.fromkeys(deliveries, NOW - 3600)
    received["lab-squid1"] = NOW - 3 * 86400
    del deliveries["lab-compute1"]
    expected = [*received]
    events, stale = drift.merge_deliveries(expected, deliveries, received, NOW, 26 * 3600)
    report = drift.build_report(events)
    assert stale == {"lab-compute1": "never reported",
                     "lab-squid1": "last report 72.0 h ago, older than the 26 h window"}
    status = {h: v["status"] for h, v in report["hosts"].items()}
    assert status == {"lab-compute1": "stale", "lab-mgmt1": "unreachable", "lab-squid1": "stale",
                      "lab-worker1": "drift", "lab-worker2": "drift"}
    # Why each is stale, grouped by reason: the finding an admin reads first.
    stale_findings = {f["msg"]: f["hosts"] for f in report["findings"] if f["kind"] == "stale"}
    assert stale_findings == {"never reported": ["lab-compute1"],
                              "no report within the 26 h window": ["lab-squid1"]}


def test_events_about_other_hosts_count_for_nobody_and_a_run_without_recap_is_a_failure(tampered):
    deliveries = per_host(tampered)
    received = dict.fromkeys(deliveries, NOW)
    # worker1 claims squid1 drifted; worker2's run broke off before its recap.
    deliveries["lab-worker1"].insert(1, {"event": "result", "host": "lab-squid1", "play": "", "role": "squid",
                                         "task": "forged", "status": "changed", "diff": "x", "msg": ""})
    deliveries["lab-worker2"] = [ev for ev in deliveries["lab-worker2"] if ev["event"] != "stats"]
    events, _stale = drift.merge_deliveries(sorted(deliveries), deliveries, received, NOW, 3600)
    report = drift.build_report(events)
    assert report["hosts"]["lab-squid1"]["status"] == "ok"
    assert report["hosts"]["lab-worker2"]["status"] == "failed"
    assert report["hosts"]["lab-worker2"]["failures"][-1]["msg"] == "the node's check run ended without a play recap"


def test_main_builds_the_pull_report_from_the_incoming_directory(tmp_path, tampered, capsys):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    deliveries = per_host(tampered)
    for name in ("lab-worker1", "lab-worker2", "lab-squid1"):
        (incoming / f"{name}.jsonl").write_bytes(lines(deliveries[name]))
    old = incoming / "lab-squid1.jsonl"
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    (incoming / "stranger.jsonl").write_bytes(lines([{"event": "start", "hosts": ["stranger"]}]))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    worker_nodes:\n      hosts:\n        lab-worker1:\n"
                         "        lab-worker2:\n    squid_servers:\n      hosts:\n        lab-squid1:\n"
                         "    compute_nodes:\n      hosts:\n        lab-compute1:\n")
    rc = drift.main(["-i", str(inventory), "--pulled", str(incoming), "--report-dir", str(tmp_path / "reports")])
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert rc == drift.EXIT_DRIFT | drift.EXIT_FAILED
    assert report["meta"]["mode"] == "pull"
    assert report["meta"]["unexpected"] == ["stranger"]
    assert set(report["meta"]["stale"]) == {"lab-compute1", "lab-squid1"}
    assert {h: v["status"] for h, v in report["hosts"].items()} == {
        "lab-compute1": "stale", "lab-squid1": "stale", "lab-worker1": "drift", "lab-worker2": "drift"}
    assert "drift-check: PROBLEMS: 4 hosts" in capsys.readouterr().out
