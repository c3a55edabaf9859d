#!/usr/bin/env python3
"""What the netacct agent's full pass costs as a node's job count grows (issue 21).

One pass (Agent.poll): list the job cgroups, `nft -j list table`, parse it,
account and write every live job's record. The table lives in a network
namespace of its own (the machine's ruleset is untouched); N cgroups stand
for N running jobs, each with an element in all four counter sets (added
by path, as traffic would add them). Measured: wall time and CPU time of
the pass (the agent's own and nft's), median of 5, for N = 16 .. 1024.
A node runs at most its slot count of jobs (a few hundred on the largest).

Run as root on a host with nftables and a cgroup v2 hierarchy:
    python bench/netacct_agent.py            # as the agent runs nft (ids)
    python bench/netacct_agent.py --paths    # nft resolving cgroup paths
Results: bench/netacct_agent.md.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from aerie_testutil import load_script  # noqa: E402

agent_mod = load_script("roles/netacct/files/aerie-netacct")
UNIFIED = Path("/sys/fs/cgroup/unified")


def cpu():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main():
    root = UNIFIED if (UNIFIED / "cgroup.procs").exists() else Path("/sys/fs/cgroup")
    ns = f"nabench{os.getpid()}"
    parent = root / f"aerie-bench-{os.getpid()}" / "htcondor"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    parent.mkdir(parents=True)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            nft = Path(tmp) / "nft"
            # nsenter, not ip netns exec: that remounts /sys, where nft finds cgroups by path.
            nft.write_text(f'#!/bin/sh\nexec nsenter --net=/run/netns/{ns} nft "$@"\n')
            nft.chmod(0o755)
            config = Path(tmp) / "netacct.json"
            config.write_text(json.dumps({
                "site_networks": ["10.0.0.0/8", "2001:db8::/32"], "cgroup_root": str(root),
                "job_parent": str(parent.relative_to(root)), "state_dir": f"{tmp}/state", "nft": str(nft)}))
            agent = agent_mod.Agent(str(config), log=lambda m: None)
            # --paths: nft resolving each element's cgroup to its path (what the agent avoids).
            agent.nft.numeric = False if "--paths" in sys.argv else None
            agent.load_state()
            agent.poll()  # makes the table
            made = 0
            for n in (16, 64, 256) if "--paths" in sys.argv else (16, 64, 256, 1024):
                batch = []
                for i in range(made, n):
                    (parent / f"_var_lib_condor_execute_slot1_{i}@node.slice").mkdir()
                    # nft resolves a cgroupv2 path below /sys/fs/cgroup (unified/... on a hybrid host).
                    path = (parent / f"_var_lib_condor_execute_slot1_{i}@node.slice").relative_to("/sys/fs/cgroup")
                    batch += [f'add element inet aerie_netacct {s} {{ "{path}" }}' for s in agent_mod.BUCKETS]
                made = n
                if batch:
                    subprocess.run([str(nft), "-f", "-"], input="\n".join(batch) + "\n", text=True, check=True)
                walls, cpus = [], []
                for _ in range(5):
                    c0, t0 = cpu(), time.perf_counter()
                    agent.poll()
                    walls.append(time.perf_counter() - t0)
                    cpus.append(cpu() - c0)
                listing = subprocess.run([str(nft), "-j", "list", "table", "inet", "aerie_netacct"],
                                         capture_output=True, text=True, check=True).stdout
                rows.append((n, statistics.median(walls) * 1000, statistics.median(cpus) * 1000,
                             len(listing) // 1024, len(agent.records)))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        for d in sorted(parent.parent.glob("**/"), key=lambda p: -len(p.parts)):
            d.rmdir()
    print("jobs  pass wall ms  pass CPU ms  nft JSON KiB  records")
    for n, wall, cpu_ms, kib, records in rows:
        print(f"{n:4d}  {wall:12.1f}  {cpu_ms:11.1f}  {kib:12d}  {records:7d}")


if __name__ == "__main__":
    main()
