"""drift-check's report building, from events recorded on the lab.

tampered.events.jsonl was recorded by running scripts/drift-check against the
lab after editing the aerie fact on both workers the same way, deleting it on
the compute node and stopping the management host; clean.events.jsonl after
converging again.
"""

import json
from pathlib import Path

import pytest
from aerie_testutil import load_script

drift = load_script("scripts/drift-check")
FIXTURES = Path(__file__).parent / "fixtures" / "drift"


@pytest.fixture
def tampered():
    return drift.build_report(drift.read_events(FIXTURES / "tampered.events.jsonl"), {"finished": "T"})


@pytest.fixture
def clean():
    return drift.build_report(drift.read_events(FIXTURES / "clean.events.jsonl"))


def test_clean_run_is_exit_0_with_every_host_ok(clean):
    assert clean["exit_code"] == 0
    assert clean["summary"] == {"hosts": 5, "ok": 5, "drift": 0, "failed": 0, "unreachable": 0, "changed_tasks": 0}
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
    first, second = tampered["findings"]
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
    assert "2 host(s): lab-worker1, lab-worker2" in page


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
