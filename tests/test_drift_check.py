"""drift-check's report building, from events recorded on the lab.

tampered.events.jsonl was recorded by running scripts/drift-check against the
lab after editing the aerie fact on both workers the same way, deleting it on
the compute node and stopping the management host; clean.events.jsonl after
converging again. problems.events.jsonl is written by hand in the recorded
format: a failed, two unreachable and a stale host beside drift on a service.
systemctl-show.*.txt are `systemctl show` of two units on systemd 252 (see
test_callback_names_the_service_and_its_state).
"""

import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
from aerie_testutil import REPO, load_script

drift = load_script("scripts/drift-check")
FIXTURES = Path(__file__).parent / "fixtures" / "drift"


@pytest.fixture
def tampered():
    return drift.build_report(drift.read_events(FIXTURES / "tampered.events.jsonl"), {"finished": "T"})


@pytest.fixture
def clean():
    return drift.build_report(drift.read_events(FIXTURES / "clean.events.jsonl"))


@pytest.fixture
def problems():
    return drift.build_report(drift.read_events(FIXTURES / "problems.events.jsonl"), {"seconds": 97.5})


def test_clean_run_is_exit_0_with_every_host_ok(clean):
    assert clean["exit_code"] == 0
    assert clean["summary"] == {"hosts": 5, "ok": 5, "drift": 0, "failed": 0, "unreachable": 0, "stale": 0,
                                "changed_tasks": 0}
    assert clean["findings"] == []
    assert drift.summary_line(clean).startswith("drift-check: no drift: 5 hosts")


def test_drift_and_unreachable_combine_to_exit_6(tampered):
    assert tampered["exit_code"] == drift.EXIT_DRIFT | drift.EXIT_FAILED == 6
    status = {h: v["status"] for h, v in tampered["hosts"].items()}
    assert status == {"lab-compute1": "drift", "lab-mgmt1": "unreachable", "lab-squid1": "ok",
                      "lab-worker1": "drift", "lab-worker2": "drift"}
    mgmt = tampered["hosts"]["lab-mgmt1"]["failures"][0]
    assert mgmt["status"] == "unreachable" and "10.89.60.41" in mgmt["msg"]


def test_identical_drift_groups_hosts_and_names_role_and_task(tampered):
    first, second = [f for f in tampered["findings"] if f["kind"] == "drift"]
    assert first["hosts"] == ["lab-worker1", "lab-worker2"]
    assert (first["role"], first["task"]) == ("aerie_node", "Ensure the node records what aerie declares it to be")
    assert '-    "site": "tampered"' in first["diff"] and '+    "site": "lab"' in first["diff"]
    # The per-run temp path of the rendered template is normalised away.
    assert "+++ after: (rendered) aerie.fact.j2" in first["diff"]
    assert second["hosts"] == ["lab-compute1"]
    assert "--- before\n" in second["diff"]


def test_exit_codes_in_isolation(tampered):
    events = drift.read_events(FIXTURES / "tampered.events.jsonl")
    only_drift = [e for e in events if not (e.get("host") == "lab-mgmt1" and e["event"] == "result")]
    for e in only_drift:
        if e["event"] == "stats":
            e["hosts"]["lab-mgmt1"]["unreachable"] = 0
    assert drift.build_report(only_drift)["exit_code"] == 2
    no_recap = [e for e in events if e["event"] != "stats"]
    report = drift.build_report(no_recap)
    assert report["exit_code"] == drift.EXIT_ERROR
    assert "did not complete" in drift.summary_line(report)


def test_changed_without_diff_says_so():
    events = [
        {"event": "start", "hosts": ["n1"]},
        {"event": "result", "host": "n1", "play": "p", "role": "squid", "task": "Ensure squid runs",
         "status": "changed", "diff": "", "msg": ""},
        {"event": "stats", "hosts": {"n1": {"ok": 3, "changed": 1, "failures": 0, "unreachable": 0, "skipped": 0}}},
    ]
    report = drift.build_report(events)
    assert report["findings"][0]["diff"] == "changed, no diff"
    assert report["exit_code"] == 2


def test_html_is_self_contained_and_escapes(tampered):
    page = drift.render_html(tampered)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert 'id=count-drift>drifted: 3<' in page and 'id=count-unreachable>unreachable: 1<' in page
    assert "&quot;site&quot;: &quot;tampered&quot;" in page  # diff text escaped, not raw
    assert "2 hosts: lab-worker[1-2]" in page


def test_json_report_round_trips(tampered, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(tampered))
    assert json.loads(path.read_text())["summary"]["drift"] == 3


def test_prune_keeps_newest_reports(tmp_path):
    for stamp in ("drift-20260101T000000Z", "drift-20260102T000000Z", "drift-20260103T000000Z"):
        for ext in ("json", "html", "log", "events.jsonl"):
            (tmp_path / f"{stamp}.{ext}").write_text("x")
    drift.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "drift-20260102T000000Z.events.jsonl"
    assert len(list(tmp_path.iterdir())) == 8


def test_callback_records_a_real_check_mode_run(tmp_path):
    """The callback plugin, driven by a real ansible-playbook --check --diff on localhost."""
    import os
    import subprocess

    from aerie_testutil import REPO

    target = tmp_path / "managed.conf"
    target.write_text("old\n")
    secret_target = tmp_path / "secret.conf"
    play = tmp_path / "play.yml"
    play.write_text(f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Ensure the managed file holds the declared content
      ansible.builtin.copy:
        dest: {target}
        content: "new\\n"
        mode: "0644"
    - name: Ensure a secret file
      ansible.builtin.copy:
        dest: {secret_target}
        content: "hunter2-secret\\n"
        mode: "0600"
      no_log: true
""")
    events = tmp_path / "events.jsonl"
    env = dict(os.environ, AERIE_DRIFT_EVENTS=str(events), ANSIBLE_CALLBACKS_ENABLED="aerie.grid.aerie_drift",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"))
    subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
                    "-e", f"ansible_python_interpreter={REPO / '.venv/bin/python'}",
                    str(play), "--check", "--diff"], env=env, check=True, capture_output=True)
    report = drift.build_report(drift.read_events(events))
    assert target.read_text() == "old\n"  # check mode changed nothing
    assert report["exit_code"] == 2
    changes = report["hosts"]["localhost"]["changes"]
    assert [c["task"] for c in changes] == ["Ensure the managed file holds the declared content",
                                            "Ensure a secret file"]
    assert "-old\n+new" in changes[0]["diff"]
    assert "hunter2" not in events.read_text()  # no_log results arrive censored
    assert changes[1]["diff"] == "(hidden: no_log)"


# -- findings first: failed, unreachable and stale hosts -------------------
def test_failed_unreachable_and_stale_hosts_are_findings_before_drift(problems):
    status = {h: v["status"] for h, v in problems["hosts"].items()}
    assert status == {"cm1": "ok", "worker001": "drift", "worker002": "drift", "worker003": "failed",
                      "worker004": "unreachable", "worker005": "unreachable", "worker006": "stale"}
    assert problems["summary"]["stale"] == 1 and problems["exit_code"] == 6
    failed, unreachable, stale, service = problems["findings"]
    assert (failed["kind"], failed["role"], failed["task"], failed["hosts_folded"]) == (
        "failed", "chroot", "Ensure the chroot tree is unpacked", "worker003")
    assert "No space left on device" in failed["msg"]
    # Each host's address is in its message; without it the two group into one finding.
    assert (unreachable["kind"], unreachable["task"], unreachable["hosts_folded"]) == (
        "unreachable", "Gathering Facts", "worker[004-005]")
    assert "connect to host <address> port 22" in unreachable["msg"]
    assert "10.0.0.5" in problems["hosts"]["worker005"]["failures"][0]["msg"]  # the host's own entry keeps it
    assert (stale["kind"], stale["hosts"], stale["msg"]) == ("stale", ["worker006"], drift.STALE_MSG)
    assert (service["kind"], service["hosts_folded"]) == ("drift", "worker[001-002]")
    assert service["diff"] == "service condor: disabled, should be enabled"


def test_unreachable_messages_lose_the_host_name_and_address_to_group():
    msg = "ssh: Could not resolve hostname cm1: Name or service not known (cm10, 10.0.0.7, cm1.example.org, cm1.)"
    assert drift.normalize_msg(msg, "cm1") == (
        "ssh: Could not resolve hostname <host>: Name or service not known (cm10, <address>, cm1.example.org, <host>.)")


def test_a_host_without_results_or_recap_is_stale_and_critical():
    events = [{"event": "start", "hosts": ["n1", "n2"]},
              {"event": "host_done", "host": "n2", "tasks": 0, "changed": 0},
              {"event": "stats", "hosts": {"n1": {"ok": 3, "changed": 0, "failures": 0, "unreachable": 0,
                                                  "skipped": 0}}}]
    report = drift.build_report(events)
    assert report["hosts"]["n2"]["status"] == "stale" and report["exit_code"] == drift.EXIT_FAILED
    assert "1 stale" in drift.summary_line(report)
    assert drift.nagios(report)[0] == 2


def test_a_broken_off_run_counts_the_failures_recorded():
    events = drift.read_events(FIXTURES / "problems.events.jsonl")
    report = drift.build_report([e for e in events if e["event"] != "stats"])
    status = {h: v["status"] for h, v in report["hosts"].items()}
    assert status["worker003"] == "failed" and status["worker004"] == "unreachable"
    assert status["worker001"] == "drift" and status["worker006"] == "stale"
    assert report["exit_code"] == drift.EXIT_ERROR


def test_html_lists_findings_first_and_only_hosts_not_ok():
    # The admin's case: 122 workers, one failed (row 62 of the old host table).
    names = [f"worker{i:03d}" for i in range(1, 123)]
    ok = {"ok": 90, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 3}
    events = [{"event": "start", "hosts": names},
              {"event": "result", "host": "worker062", "play": "p", "role": "condor_worker",
               "task": "Ensure the HTCondor configuration", "status": "failed", "diff": "",
               "msg": "condor_config_val: <b>parse error</b>"},
              {"event": "stats", "hosts": {n: dict(ok, failures=int(n == "worker062")) for n in names}}]
    report = drift.build_report(events, {"finished": "T"})
    page = drift.render_html(report)
    assert page.index("id=findings") < page.index("worker062") < page.index("id=hosts")
    assert "&lt;b&gt;parse error&lt;/b&gt;" in page
    assert page.count("<tr class=") == 1  # the failed host; clean hosts are counted, not listed
    assert "<details id=ok-hosts><summary>121 hosts ok</summary><p>worker[001-061,063-122]</p></details>" in page
    assert "No previous report: this is the first run." in page
    assert "id=count-stale>stale: 0<" in page


# -- folding host lists -----------------------------------------------------
def expand(folded: str) -> list[str]:
    """The inverse of fold_hosts, to check it round-trips."""
    names = []
    for part in re.findall(r"[^,\[\]\s]*(?:\[[^\]]*\][^,\s]*)?", folded):
        m = re.fullmatch(r"(.*)\[(.*)\](.*)", part)
        if not m:
            names += [part] if part else []
            continue
        for run in m[2].split(","):
            a, _, b = run.partition("-")
            width = len(a) if a.startswith("0") else 0
            names += [f"{m[1]}{n:0{width}d}{m[3]}" for n in range(int(a), int(b or a) + 1)]
    return names


@pytest.mark.parametrize(("names", "folded"), [
    ([f"worker{i:03d}" for i in range(1, 79)], "worker[001-078]"),
    (["lab-worker2", "lab-worker1"], "lab-worker[1-2]"),
    (["worker001", "worker002", "worker004", "worker010"], "worker[001-002,004,010]"),
    (["n9", "n10", "n11"], "n[9-11]"),                 # no padding: the width grows
    (["n08", "n09", "n10"], "n[08-10]"),               # padded to two digits
    (["n009", "n9", "n10"], "n[009,9-10]"),            # different padding, different runs
    (["node1a", "node2a", "node3b"], "node[1-2]a, node3b"),
    (["cm", "squid1", "worker01", "worker02", "lab-worker1", "lab-worker2"],
     "cm, lab-worker[1-2], squid1, worker[01-02]"),
    (["rack1-node1", "rack1-node2", "rack2-node1"], "rack1-node[1-2], rack2-node1"),
    (["10.0.0.1", "10.0.0.2", "10.0.0.3"], "10.0.0.[1-3]"),
    (["a", "a", "b"], "a, b"),
    (["solo7"], "solo7"),
    ([], ""),
])
def test_fold_hosts(names, folded):
    assert drift.fold_hosts(names) == folded
    assert sorted(expand(folded)) == sorted(set(names))


def test_fold_hosts_round_trips_random_inventories():
    rng = random.Random(19)
    for _ in range(200):
        names = {rng.choice(["worker", "lab-worker", "gpu", "cm"]) + rng.choice(["", "0", "00"])
                 + str(rng.randint(0, 120)) + rng.choice(["", "", "-ib"]) for _ in range(rng.randint(1, 60))}
        names |= {rng.choice(["mgmt", "squid", "nfs"]) for _ in range(2)}
        assert sorted(expand(drift.fold_hosts(names))) == sorted(names)


# -- what changed since the last run ---------------------------------------
def test_first_run_says_there_is_no_previous_report(tampered):
    assert tampered["since_last"] == {"previous": None, "note": "no previous report: this is the first run",
                                      "new": [], "resolved": []}


def test_converging_resolves_the_drift_and_the_unreachable_host(tampered):
    report = drift.build_report(drift.read_events(FIXTURES / "clean.events.jsonl"), previous=tampered)
    since = report["since_last"]
    assert since["previous"] == {"finished": "T", "limit": None, "complete": True}
    assert since["new"] == []
    assert [(g["kind"], g["task"], g["hosts_folded"]) for g in since["resolved"]] == [
        ("unreachable", "Gathering Facts", "lab-mgmt1"),
        ("drift", "Ensure the node records what aerie declares it to be", "lab-compute1, lab-worker[1-2]")]
    assert drift.summary_line(report).endswith("; since the last run 0 new findings, 2 resolved")
    page = drift.render_html(report)
    assert "<h3 id=since-new>New (0)</h3>" in page and "<h3 id=since-resolved>Resolved (2)</h3>" in page


def test_a_host_newly_drifting_on_a_known_finding_is_new_for_that_host(tampered):
    events = drift.read_events(FIXTURES / "tampered.events.jsonl")
    before = [e for e in events if not (e.get("host") == "lab-worker2" and e["event"] == "result")]
    before[-1]["hosts"]["lab-worker2"]["changed"] = 0
    report = drift.build_report(events, previous=drift.build_report(before))
    (new,) = report["since_last"]["new"]
    assert (new["kind"], new["role"], new["hosts"]) == ("drift", "aerie_node", ["lab-worker2"])
    assert report["since_last"]["resolved"] == []


def test_drift_on_a_host_now_unreachable_is_not_resolved(tampered):
    events = drift.read_events(FIXTURES / "tampered.events.jsonl")
    for e in events:
        if e.get("host") == "lab-worker1" and e["event"] == "result":
            e.update(status="unreachable", task="Gathering Facts", role="", diff="", msg="timed out")
        if e["event"] == "stats":
            e["hosts"]["lab-worker1"].update(unreachable=1, changed=0)
    since = drift.build_report(events, previous=tampered)["since_last"]
    assert [(g["kind"], g["hosts"]) for g in since["new"]] == [("unreachable", ["lab-worker1"])]
    assert since["resolved"] == []  # lab-worker1 was not checked: its drift is not known to be gone


def test_a_report_from_before_findings_had_kinds_is_compared_too(tampered):
    # Reports written before this change: no kind, no stale, no since_last.
    old = json.loads(json.dumps(tampered))
    for key in ("since_last",):
        del old[key]
    old["findings"] = [{k: f[k] for k in ("role", "task", "diff", "hosts")} for f in old["findings"]
                       if f["kind"] == "drift"]
    del old["summary"]["stale"]
    again = drift.build_report(drift.read_events(FIXTURES / "tampered.events.jsonl"), previous=old)
    assert again["since_last"]["new"] == [] and again["since_last"]["resolved"] == []


# -- monitoring ---------------------------------------------------------------
SAMPLE = re.compile(r'[a-z_]+(\{[a-z_]+="[a-z]+"\})? -?\d+(\.\d+)?')


def test_metrics_file_is_prometheus_text_with_every_status(problems):
    problems["meta"]["finished"] = "2026-12-01T02:31:40+00:00"
    text = drift.render_metrics(problems)
    lines = text.splitlines()
    assert text.endswith("\n")
    declared = set()
    for line in lines:
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind == "gauge"
            declared.add(name)
        elif not line.startswith("# HELP "):
            assert SAMPLE.fullmatch(line), line
            assert line.split("{")[0].split()[0] in declared  # TYPE before the samples
    for status, n in {"ok": 1, "drift": 2, "failed": 1, "unreachable": 2, "stale": 1}.items():
        assert f'aerie_drift_hosts{{status="{status}"}} {n}' in lines
    assert 'aerie_drift_findings{kind="unreachable"} 1' in lines
    assert 'aerie_drift_new_findings{kind="drift"} 0' in lines
    assert "aerie_drift_run_complete 1" in lines and "aerie_drift_run_duration_seconds 97.5" in lines
    assert "aerie_drift_last_run_timestamp_seconds 1796092300.0" in lines
    assert dt.datetime.fromtimestamp(1796092300, dt.UTC).isoformat() == "2026-12-01T02:31:40+00:00"


def test_metrics_file_is_replaced_atomically(tmp_path, monkeypatch):
    prom = tmp_path / "aerie_drift.prom"
    prom.write_text("old\n")
    drift.write_atomic(prom, "new\n")
    assert prom.read_text() == "new\n" and oct(prom.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["aerie_drift.prom"]

    def broken(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(drift.os, "replace", broken)
    with pytest.raises(OSError):
        drift.write_atomic(prom, "half\n")
    assert prom.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["aerie_drift.prom"]


def test_nagios_status_and_perfdata(clean, tampered, problems):
    code, line = drift.nagios(clean)
    assert code == 0 and line.startswith("DRIFT OK - 5 hosts: 0 drifted")
    assert line.split("|")[1] == "hosts=5 ok=5 drift=0 failed=0 unreachable=0 stale=0 findings=0 new_findings=0"
    events = drift.read_events(FIXTURES / "tampered.events.jsonl")
    only_drift = [e for e in events if e.get("host") != "lab-mgmt1"]
    del only_drift[-1]["hosts"]["lab-mgmt1"]
    only_drift[0]["hosts"].remove("lab-mgmt1")
    assert drift.nagios(drift.build_report(only_drift))[1].startswith("DRIFT WARNING - 4 hosts: 3 drifted")
    assert drift.nagios(tampered)[0] == 2
    code, line = drift.nagios(problems)
    assert code == 2 and line.endswith(" duration=97.5s")
    assert drift.nagios(drift.build_report(events[:-1]))[1].startswith("DRIFT UNKNOWN - the run did not complete")
    code, line = drift.nagios(clean, "cannot run ansible-playbook")
    assert code == 3 and line.startswith("DRIFT UNKNOWN - cannot run ansible-playbook|hosts=5")


# -- the script end to end, with the playbook run replaced -------------------
@pytest.fixture
def fake_runs(monkeypatch):
    """Queue of recorded event files main() gets instead of running ansible-playbook (None: no events)."""
    queue: list = []

    def run_playbook(_cmd, events, log_path, say=print):
        log_path.write_text("")
        src = queue.pop(0)
        if isinstance(src, Exception):
            raise src
        if src:
            events.write_text(src.read_text())
        return 0 if src else 4

    ticks = iter(range(60))

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2026, 12, 1, 2, 30, next(ticks), tzinfo=tz)

    monkeypatch.setattr(drift, "run_playbook", run_playbook)
    monkeypatch.setattr(drift, "_revision", lambda: "r1")
    monkeypatch.setattr(drift, "dt", types.SimpleNamespace(datetime=Clock, UTC=dt.UTC))
    return queue


def test_main_compares_with_the_last_complete_report_and_writes_metrics(tmp_path, fake_runs, capsys):
    reports, prom = tmp_path / "reports", tmp_path / "textfile" / "aerie_drift.prom"
    prom.parent.mkdir()
    args = ["--report-dir", str(reports), "--metrics-file", str(prom)]
    fake_runs += [FIXTURES / "tampered.events.jsonl", None, FIXTURES / "clean.events.jsonl"]

    assert drift.main(args) == 6
    first = json.loads((reports / "latest.json").read_text())
    assert first["since_last"]["previous"] is None
    assert 'aerie_drift_hosts{status="unreachable"} 1' in prom.read_text()
    assert sorted(p.name for p in prom.parent.iterdir()) == ["aerie_drift.prom"]

    assert drift.main(args) == drift.EXIT_ERROR  # no events at all: it broke off
    assert "aerie_drift_run_complete 0" in prom.read_text()

    capsys.readouterr()
    assert drift.main([*args, "--nagios"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("DRIFT OK - 5 hosts") and "|hosts=5 ok=5" in out[0]
    latest = json.loads((reports / "latest.json").read_text())
    # The broken-off run in between is skipped: the comparison is with the first.
    assert latest["since_last"]["previous"]["finished"] == first["meta"]["finished"]
    assert len(latest["since_last"]["resolved"]) == 2
    assert "aerie_drift_run_complete 1" in prom.read_text()


def test_main_nagios_exit_status_and_unknown(tmp_path, fake_runs, capsys):
    base = ["--report-dir", str(tmp_path), "--nagios"]
    fake_runs += [FIXTURES / "problems.events.jsonl", None, OSError("no such file: ansible-playbook"),
                  FIXTURES / "clean.events.jsonl"]
    assert drift.main(base) == 2
    assert capsys.readouterr().out.startswith("DRIFT CRITICAL - 7 hosts: 2 drifted, 1 failed, 2 unreachable, 1 stale")
    assert drift.main(base) == 3
    assert capsys.readouterr().out.startswith("DRIFT UNKNOWN - the run did not complete")
    assert drift.main(base) == 3
    assert capsys.readouterr().out.startswith("DRIFT UNKNOWN - cannot run ansible-playbook: no such file")
    assert drift.main([*base, "--metrics-file", str(tmp_path / "missing" / "x.prom")]) == 3
    assert capsys.readouterr().out.startswith("DRIFT UNKNOWN - cannot write the metrics file")


def test_bad_arguments_are_an_error_not_drift(capsys):
    with pytest.raises(SystemExit) as exc:
        drift.main(["--no-such-option"])
    assert exc.value.code == drift.EXIT_ERROR
    with pytest.raises(SystemExit) as exc:
        drift.main(["--nagios", "--no-such-option"])
    assert exc.value.code == 3  # UNKNOWN, not CRITICAL


# -- progress ------------------------------------------------------------------
def test_progress_lines_per_host():
    progress = drift.Progress()
    lines = [line for ev in drift.read_events(FIXTURES / "problems.events.jsonl") for line in progress.lines(ev)]
    assert lines[0] == "drift-check: checking 7 hosts"
    assert "drift-check: worker001: 25 tasks checked, 1 would change" in lines
    assert "drift-check: worker004: unreachable at Gathering Facts" in lines
    assert "drift-check: worker003: failed at chroot : Ensure the chroot tree is unpacked" in lines
    assert lines[-1] == "drift-check: 7/7 hosts finished (worker006: 0 tasks checked, 0 would change)"


def test_progress_shows_while_running_and_every_host_finished_at_the_end(tmp_path):
    """The watcher prints during the run, and reads the last events after the playbook exits."""
    events, go = tmp_path / "events.jsonl", tmp_path / "go"
    lines = (FIXTURES / "tampered.events.jsonl").read_text().splitlines(keepends=True)
    first = lines[0] + json.dumps({"event": "progress", "host": "lab-worker1", "tasks": 25, "changed": 1}) + "\n"
    # A stand-in for ansible-playbook: the first events, then (once the watcher
    # has shown them) the rest, written just before it exits.
    script = f"""
import os, sys, time
from pathlib import Path
out = Path(os.environ["AERIE_DRIFT_EVENTS"])
out.write_text({first!r})
deadline = time.monotonic() + 30
while not Path({str(go)!r}).exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.05)
with out.open("a") as fh:
    fh.write({"".join(lines[1:])!r})
"""
    said = []

    def say(line):
        said.append(line)
        if "tasks checked" in line:
            go.touch()

    rc = drift.run_playbook([sys.executable, "-c", script], events, tmp_path / "log", say)
    assert rc == 0, "no progress line while the playbook ran"
    assert said[:2] == ["drift-check: checking 5 hosts", "drift-check: lab-worker1: 25 tasks checked, 1 would change"]
    assert sum("hosts finished" in line for line in said) == 5, said
    assert said[-1] == "drift-check: 5/5 hosts finished (lab-mgmt1)"


def test_watch_reads_to_the_end_when_stopped_before_its_first_look(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text((FIXTURES / "tampered.events.jsonl").read_text())
    stop, said = threading.Event(), []
    stop.set()
    drift.watch(events, stop, said.append)
    assert said[-1] == "drift-check: 5/5 hosts finished (lab-mgmt1)"


# -- services: which unit, which state ------------------------------------------
@pytest.mark.parametrize(("service", "text"), [
    ({"name": "squid", "state": "started", "active": "inactive", "unit_file": "enabled"},
     "service squid: stopped, should be running"),
    ({"name": "condor", "state": "started", "enabled": True, "active": "active", "unit_file": "disabled"},
     "service condor: disabled, should be enabled"),
    ({"name": "condor", "state": "started", "enabled": True, "active": "failed", "unit_file": "masked"},
     "service condor: failed, should be running; masked, should be enabled"),
    ({"name": "nova-compute", "state": "stopped", "active": "active"},
     "service nova-compute: running, should be stopped"),
    ({"name": "squid", "state": "restarted", "active": "active"}, "service squid: would be restarted"),
    ({"name": "x", "masked": True, "unit_file": "disabled"}, "service x: disabled, should be masked"),
    ({"name": "x", "masked": False, "unit_file": "masked"}, "service x: masked, should be unmasked"),
    # No state before in the result (not systemd): what the task declares.
    ({"name": "squid", "state": "started", "enabled": True}, "service squid: would change, should be running, enabled"),
    # `indirect` is not enabled to the module, though systemd reports no mismatch we know of.
    ({"name": "y", "enabled": True, "unit_file": "indirect"}, "service y: indirect, should be enabled"),
    ({"name": "z", "enabled": True, "unit_file": "enabled"}, "service z: would change, should be enabled"),
])
def test_describe_service(service, text):
    assert drift.describe_service(service) == text


def run_with_callback(tmp_path: Path, play: str, env: dict | None = None, check: bool = True) -> Path:
    """Run a play on localhost in check mode with the event callback; the events file."""
    path, events = tmp_path / "play.yml", tmp_path / "events.jsonl"
    path.write_text(play)
    env = dict(os.environ, AERIE_DRIFT_EVENTS=str(events), ANSIBLE_CALLBACKS_ENABLED="aerie.grid.aerie_drift",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), **(env or {}))
    subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
                    "-e", f"ansible_python_interpreter={REPO / '.venv/bin/python'}",
                    str(path), "--check", "--diff"], env=env, check=check, capture_output=True)
    return events


def test_callback_reports_progress_every_25_tasks_and_hides_no_log_failures(tmp_path):
    steps = "".join(f"""
    - name: Step {n}
      ansible.builtin.set_fact:
        step: {n}
""" for n in range(29))
    events = run_with_callback(tmp_path, f"""
- hosts: localhost
  gather_facts: false
  tasks:{steps}
    - name: Fail with a secret
      ansible.builtin.fail:
        msg: "the password is hunter2"
      no_log: true
""", check=False)
    recorded = drift.read_events(events)
    assert [e for e in recorded if e["event"] == "progress"] == [
        {"event": "progress", "host": "localhost", "tasks": 25, "changed": 0}]
    assert {"event": "host_done", "host": "localhost", "tasks": 30, "changed": 0} in recorded
    assert "hunter2" not in events.read_text()
    report = drift.build_report(recorded)
    (finding,) = report["findings"]
    assert (finding["kind"], finding["task"], finding["msg"]) == ("failed", "Fail with a secret", "(hidden: no_log)")


def test_callback_names_the_service_and_its_state(tmp_path):
    """ansible.builtin.systemd/systemd_service/service in check mode, through the callback.

    Verified first against real systemd 252 (Debian 12, in a throwaway
    container of the aerie node image): a transient unit from `systemd-run
    --unit aerie-test-xyz sleep 600` and a disabled, stopped unit
    aerie-probe.service. The check-mode result carries `status` (the whole
    `systemctl show`, with ActiveState and UnitFileState as they were) and
    `state`/`enabled` as declared; a looped task has them per item; the
    generic service module (use: service) returns no status. The same run
    gave exactly the `services` asserted below. This machine has no systemd,
    so the real module runs here against a systemctl that answers with the
    `systemctl show` output recorded there.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f"""#!{sys.executable}
import sys
from pathlib import Path
args = [a for a in sys.argv[1:] if not a.startswith("-")]
show = Path({str(FIXTURES)!r}) / f"systemctl-show.{{args[1].removesuffix('.service')}}.txt"
if args[0] == "show":
    sys.stdout.write(show.read_text())
    sys.exit(0)
if args[0] == "is-enabled":
    state = dict(line.split("=", 1) for line in show.read_text().splitlines())["UnitFileState"]
    print(state)
    sys.exit(0 if state in ("enabled", "static", "generated") else 1)
sys.exit(1)
""")
    fake.chmod(0o755)
    events = run_with_callback(tmp_path, """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Stop the transient unit
      ansible.builtin.systemd:
        name: aerie-test-xyz
        state: stopped
    - name: Probe runs and starts at boot
      ansible.builtin.systemd_service:
        name: aerie-probe
        state: started
        enabled: true
    - name: Probe via service
      ansible.builtin.service:
        name: aerie-probe
        state: started
        enabled: true
        use: systemd
    - name: Restart the transient unit
      ansible.builtin.systemd:
        name: aerie-test-xyz
        state: restarted
    - name: Loop
      ansible.builtin.service:
        name: "{{ item }}"
        state: stopped
        use: systemd
      loop: [aerie-test-xyz, aerie-probe]
    - name: Masked
      ansible.builtin.systemd:
        name: aerie-probe
        masked: true
    - name: Secret service
      ansible.builtin.systemd:
        name: aerie-probe
        state: started
      no_log: true
""", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    recorded = {e["task"]: e.get("services") for e in drift.read_events(events) if e["event"] == "result"}
    probe = {"active": "inactive", "enabled": True, "name": "aerie-probe", "state": "started", "unit_file": "disabled"}
    xyz = {"active": "active", "name": "aerie-test-xyz", "unit_file": "transient"}
    assert recorded == {
        "Stop the transient unit": [{**xyz, "state": "stopped"}],
        "Probe runs and starts at boot": [probe],
        "Probe via service": [probe],
        "Restart the transient unit": [{**xyz, "state": "restarted"}],
        "Loop": [{**xyz, "state": "stopped"}],  # aerie-probe is stopped already: no change
        "Masked": [{"active": "inactive", "masked": True, "name": "aerie-probe", "unit_file": "disabled"}],
        "Secret service": None,
    }
    changes = drift.build_report(drift.read_events(events))["hosts"]["localhost"]["changes"]
    diffs = {c["task"]: c["diff"] for c in changes}
    assert diffs == {
        "Stop the transient unit": "service aerie-test-xyz: running, should be stopped",
        "Probe runs and starts at boot": "service aerie-probe: stopped, should be running; disabled, should be enabled",
        "Probe via service": "service aerie-probe: stopped, should be running; disabled, should be enabled",
        "Restart the transient unit": "service aerie-test-xyz: would be restarted",
        "Loop": "service aerie-test-xyz: running, should be stopped",
        "Masked": "service aerie-probe: disabled, should be masked",
        "Secret service": "(hidden: no_log)",
    }
