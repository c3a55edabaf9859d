#!/usr/bin/env python3
"""Pull-mode drift check: N nodes delivering at once, then the report from the deliveries.

Each simulated node's delivery is what aerie's callback records during its
own check run of the worker role set (about 330 tasks: a progress event
every 25, a result per change), a third of them with drift. The bench
starts N `scripts/drift-receive` processes at once, each fed its node's
delivery on stdin as sshd would (the forced command of the node's key;
sshd's own cost is not in the figure), waits for all, then times
`drift-check --pulled`'s pure steps: reading the incoming directory,
merging and building the report. Results: bench/drift_check.md, "Pull mode".

    bench/drift_pull.py [N ...]      (default 50 500)
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from aerie_testutil import load_script  # noqa: E402

drift = load_script("scripts/drift-check")
TASKS = 330


def delivery(name: str, drifted: bool) -> bytes:
    out = [{"event": "start", "hosts": [name]}]
    for n in range(25, TASKS + 1, 25):
        out.append({"event": "progress", "host": name, "tasks": n, "changed": int(drifted and n > 100)})
    if drifted:
        out.append({"event": "result", "host": name, "play": "Workers", "role": "condor_worker",
                    "task": "Ensure the execute node configuration is accepted by HTCondor and installed",
                    "status": "changed", "diff": "--- before\n+++ after\n@@ -1 +1 @@\n-START = False\n+START = True\n",
                    "msg": ""})
    out.append({"event": "host_done", "host": name, "tasks": TASKS, "changed": int(drifted)})
    out.append({"event": "stats", "hosts": {name: {"ok": TASKS - 40, "changed": int(drifted), "failures": 0,
                                                   "unreachable": 0, "skipped": 40}}})
    return "".join(json.dumps(ev) + "\n" for ev in out).encode()


def run(n: int) -> dict:
    names = [f"worker{i:04d}" for i in range(1, n + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        incoming = Path(tmp)
        payloads = {name: delivery(name, i % 3 == 0) for i, name in enumerate(names)}
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, str(REPO / "scripts/drift-receive"), "--dir", tmp, name],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) for name in names]
        for name, proc in zip(names, procs, strict=True):
            proc.stdin.write(payloads[name])
            proc.stdin.close()
        failed = sum(proc.wait() != 0 for proc in procs)
        received = time.monotonic() - t0
        t1 = time.monotonic()
        deliveries, when = drift.read_deliveries(incoming)
        t2 = time.monotonic()
        events, stale = drift.merge_deliveries(names, deliveries, when, time.time(), 3600)
        report = drift.build_report(events)
        t3 = time.monotonic()
    assert failed == 0 and not stale and report["summary"]["drift"] == len(names[::3])
    return {"nodes": n, "bytes per delivery": len(payloads[names[0]]), "receive all (s)": round(received, 2),
            "read incoming (ms)": round((t2 - t1) * 1000, 1), "merge + build (ms)": round((t3 - t2) * 1000, 1),
            "findings": len(report["findings"])}


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [50, 500]:
        print(json.dumps(run(n)))
