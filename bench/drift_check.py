#!/usr/bin/env python3
"""Drift-check wall time against the lab for 1, 2 and 4 nodes, with and without pipelining.

Needs a converged lab (./scripts/aerie lab). Runs scripts/drift-check with
--limit on a growing set of lab nodes (forks 20, above the node count) and
prints per-node cost and the scaling ratio. Results: bench/drift_check.md.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SETS = {1: ["lab-worker1"], 2: ["lab-worker1", "lab-worker2"],
        4: ["lab-worker1", "lab-worker2", "lab-squid1", "lab-compute1"]}


def run(hosts: list[str], pipelining: bool) -> float:
    env = dict(os.environ, ANSIBLE_PIPELINING=str(pipelining))
    report_dir = REPO / "bench" / "_work" / "drift"
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, str(REPO / "scripts/drift-check"), "--limit", ",".join(hosts),
                          "--report-dir", str(report_dir), "--keep", "5"],
                         env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - t0
    report = json.loads((report_dir / "latest.json").read_text())
    if res.returncode != 0:
        print(res.stdout, res.stderr, file=sys.stderr)
        sys.exit(f"drift-check exited {res.returncode}: converge the lab first")
    assert report["summary"]["hosts"] == len(hosts)
    return elapsed


def main() -> None:
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} on {os.cpu_count()} cores")
    print(f"{'nodes':>5} {'pipelining':>10} {'seconds':>8} {'s/node':>7} {'vs 1 node':>9}")
    for pipelining in (True, False):
        base = None
        for n, hosts in SETS.items():
            secs = run(hosts, pipelining)
            base = base or secs
            print(f"{n:>5} {pipelining!s:>10} {secs:>8.1f} {secs / n:>7.1f} {secs / base:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
