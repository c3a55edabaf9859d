#!/usr/bin/env python3
"""Drift report builder at 5,000 hosts: build_report, render_html, fold_hosts, metrics.

No lab needed: generates the events a check of 5,000 hosts would record
(identical drift on thousands of workers, a stopped service, failures,
unreachable and stale hosts, per-host progress), a previous report to
compare with, and times each pure step of scripts/drift-check (best of 5).
Results: bench/drift_check.md, "Report builder at scale".
"""

import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from aerie_testutil import load_script  # noqa: E402

drift = load_script("scripts/drift-check")
FACT_DIFF = ("--- before: /etc/ansible/facts.d/aerie.fact\n+++ after: /root/.ansible/tmp/ansible-local-{n}/tmp{n}/"
             "aerie.fact.j2\n@@ -3,5 +3,5 @@\n-    \"site\": \"old\"\n+    \"site\": \"lab\"\n }}\n")


def hosts() -> list[str]:
    return ([f"worker{i:04d}" for i in range(1, 4801)] + [f"gpu{i:03d}" for i in range(1, 151)]
            + [f"compute{i:03d}" for i in range(1, 41)] + [f"squid{i:02d}" for i in range(1, 9)] + ["cm1", "cm2"])


def events(names: list[str], shift: int = 0) -> list[dict]:
    """A check of `names`; `shift` moves which hosts drift, so two runs differ."""
    out = [{"event": "start", "hosts": names}]
    stats = {}

    def result(host: str, status: str, **kw) -> None:
        out.append({"event": "result", "host": host, "play": "Workers", "role": kw.pop("role", "condor_worker"),
                    "task": kw.pop("task"), "status": status, "diff": "", "msg": "", **kw})

    for i, host in enumerate(names):
        k = (i + shift) % len(names)
        ok, changed, failed, unreachable = 95, 0, 0, 0
        if k < 3000:  # identical fact drift (per-run temp paths normalised away)
            result(host, "changed", role="aerie_node", task="Ensure the node records what aerie declares it to be",
                   diff=FACT_DIFF.format(n=i))
            changed += 1
        if 3000 <= k < 3400:
            result(host, "changed", task="Ensure the HTCondor daemons run and start at boot",
                   services=[{"name": "condor", "state": "started", "enabled": True, "active": "inactive",
                              "unit_file": "enabled"}])
            changed += 1
        if 3400 <= k < 3500:  # three different diffs of one task
            result(host, "changed", role="chroot", task="Ensure the current tree link",
                   diff=f"--- before\n+++ after\n-el9-{k % 3}\n+el9-current\n")
            changed += 1
        if 3500 <= k < 3550:
            result(host, "failed", role="chroot", task="Ensure the chroot tree is unpacked",
                   msg="No space left on device")
            ok, failed = 40, 1
        if 3550 <= k < 3580:
            result(host, "unreachable", role="", task="Gathering Facts",
                   msg=f"ssh: connect to host 10.1.{k // 250}.{k % 250} port 22: Connection timed out")
            ok, unreachable = 0, 1
        if 3580 <= k < 3600:
            continue  # stale: nothing at all
        out.extend({"event": "progress", "host": host, "tasks": t, "changed": changed} for t in (25, 50, 75)
                   if t <= ok)
        out.append({"event": "host_done", "host": host, "tasks": ok + failed + unreachable, "changed": changed})
        stats[host] = {"ok": ok, "changed": changed, "failures": failed, "unreachable": unreachable, "skipped": 4}
    out.append({"event": "stats", "hosts": stats})
    return out


def best(fn, repeat: int = 5) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main() -> None:
    names = hosts()
    evs = events(names)
    previous = drift.build_report(events(names, shift=200))
    lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in evs)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{len(names)} hosts, {len(evs)} events, {len(lines) / 1e6:.1f} MB of JSON lines")

    t_parse, _ = best(lambda: [json.loads(line) for line in lines.splitlines()])
    t_build, report = best(lambda: drift.build_report(evs, {"finished": "2026-12-01T02:31:40+00:00",
                                                            "seconds": 2700.0}, previous))
    t_html, page = best(lambda: drift.render_html(report))
    t_json, text = best(lambda: json.dumps(report, indent=2))
    t_metrics, _ = best(lambda: drift.render_metrics(report))
    t_compare, _ = best(lambda: drift.compare(previous, report))
    t_fold, folded = best(lambda: drift.fold_hosts(names))
    t_gaps, _ = best(lambda: drift.fold_hosts(names[::3]))  # worst case: no run longer than one
    s = report["summary"]
    print(f"summary: {s['ok']} ok, {s['drift']} drift, {s['failed']} failed, {s['unreachable']} unreachable, "
          f"{s['stale']} stale; {len(report['findings'])} findings; "
          f"{len(report['since_last']['new'])} new, {len(report['since_last']['resolved'])} resolved")
    print(f"all hosts folded: {folded}")
    print(f"{'step':<28} {'ms':>8}")
    for step, secs in (("parse events (json.loads)", t_parse), ("build_report (with compare)", t_build),
                       ("  of which compare", t_compare), ("render_html", t_html),
                       ("json.dumps(report)", t_json), ("render_metrics", t_metrics),
                       ("fold_hosts (5,000 names)", t_fold), ("fold_hosts (every 3rd name)", t_gaps)):
        print(f"{step:<28} {secs * 1000:>8.1f}")
    print(f"report: JSON {len(text) / 1e6:.1f} MB, HTML {len(page) / 1e6:.2f} MB; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
