#!/usr/bin/env python3
"""Push-mode drift check: controller CPU-seconds and wall time per node, 1 to 16 nodes, forks varied.

The nodes are podman containers started from an image of a converged
execute node (`--image`, default localhost/aerie-bench-worker: `podman
commit` of a worker the condor_pool scenario converged; see
bench/drift_check.md). Each run is what the nightly check does,
`scripts/drift-check --playbook playbooks/worker_nodes.yml` in check mode
with --diff, over aerie's pipelined podman connection; the figure is the
CPU time of drift-check and every process it waited for (ansible-playbook,
its forks, the podman clients: the management host's share), from
getrusage(RUSAGE_CHILDREN). What the modules cost inside the nodes (at a
site the nodes' CPU, not the management host's; about what a pull-mode run
adds on the node beside its own ansible-playbook) is the containers'
cpuacct usage, in its own column.
The copies have no central manager to join (the image's is gone) and a
container restart loses the cgroup mounts the role made: the bench first
converges `--tags cgroups` on them, and the check skips
`condor_worker_service` (the tasks that ask the pool's collector for the
node's slots, 3 of about 170).

    bench/drift_push.py [--nodes 1,2,4,8,16] [--forks 5,20] [--image IMAGE]

Making the image: `molecule converge -s condor_pool`, then
`podman commit pool-worker1 localhost/aerie-bench-worker`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
NETWORK = "aerie-bench-push"
# The worker variables of the condor_pool scenario the image was converged with.
POOL = yaml.safe_load((REPO / "molecule/condor_pool/molecule.yml").read_text())
POOL = POOL["provisioner"]["inventory"]["group_vars"]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


def start(names: list[str], image: str) -> None:
    podman("network", "create", NETWORK, check=False)  # podman 4.3 has no --ignore
    for name in names:
        podman("run", "-d", "--name", name, "--hostname", name, "--privileged", "--systemd", "always",
               "--network", NETWORK, "--label", "aerie.bench=drift_push", image, "/sbin/init")
    for name in names:
        for _ in range(60):
            state = podman("exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(2)


def stop(names: list[str]) -> None:
    for name in names:
        podman("rm", "-f", "-t", "2", name, check=False)


def inventory(names: list[str], path: Path) -> None:
    # A copy's restarted systemd mounts cpu and cpuacct apart; the role's documented knob accepts that.
    data = {"all": {"vars": {**POOL["all"], "ansible_connection": "podman", "cgroups_accept_split_cpu_cpuacct": True},
                    "children": {"worker_nodes": {"vars": POOL["worker_nodes"],
                                                  "hosts": {n: None for n in names}}}}}
    path.write_text(yaml.safe_dump(data))


ENV = dict(os.environ, ANSIBLE_CONNECTION_PLUGINS=str(REPO / "molecule/_shared/connection_plugins"),
           ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))


def prepare(names: list[str], work: Path) -> None:
    inv = work / "inventory-all.yml"
    inventory(names, inv)
    res = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv),
                          str(REPO / "playbooks/worker_nodes.yml"), "--tags", "cgroups",
                          "-e", "aerie_worker_batch=100%"],
                         env=ENV, capture_output=True, text=True, check=False, cwd=REPO)
    if res.returncode:
        sys.exit(f"preparing the nodes failed: {res.stdout[-3000:]}")


def node_cpu(names: list[str]) -> float:
    """CPU-seconds the containers used so far (cgroup v1 cpuacct; HTCondor's idle daemons included)."""
    total = 0
    for name in names:
        cid = podman("inspect", "--format", "{{.Id}}", name).stdout.strip()
        usage = Path(f"/sys/fs/cgroup/cpuacct/libpod_parent/libpod-{cid}/cpuacct.usage")
        total += int(usage.read_text()) if usage.exists() else 0
    return total / 1e9


def run(names: list[str], forks: int, work: Path) -> dict:
    inv = work / f"inventory-{len(names)}.yml"
    inventory(names, inv)
    env = dict(ENV, ANSIBLE_SKIP_TAGS="condor_worker_service")
    nodes_before = node_cpu(names)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, str(REPO / "scripts/drift-check"), "-i", str(inv),
                          "--playbook", str(REPO / "playbooks/worker_nodes.yml"), "--forks", str(forks),
                          "--report-dir", str(work / "reports"), "--keep", "3"],
                         env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    nodes = node_cpu(names) - nodes_before
    report = json.loads((work / "reports" / "latest.json").read_text())
    statuses = {h["status"] for h in report["hosts"].values()}
    if not report["complete"] or statuses - {"ok", "drift"}:
        print(res.stdout[-3000:], res.stderr[-3000:], file=sys.stderr)
        sys.exit(f"the check did not complete on every node ({sorted(statuses)})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    events = max((work / "reports").glob("*.events.jsonl"), key=lambda f: f.stat().st_mtime)
    tasks = max((ev.get("tasks", 0) for ev in map(json.loads, events.read_text().splitlines())
                 if ev.get("event") == "host_done"), default=0)
    return {"nodes": len(names), "forks": forks, "wall": wall, "cpu": cpu, "node_cpu": nodes, "tasks": tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="1,2,4,8,16")
    parser.add_argument("--forks", default="5,20")
    parser.add_argument("--image", default="localhost/aerie-bench-worker")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    forks = [int(f) for f in args.forks.split(",")]
    if podman("image", "exists", args.image, check=False).returncode:
        sys.exit(f"no image {args.image}: converge condor_pool and podman commit a worker (see the docstring)")
    names = [f"bench-w{i:02d}" for i in range(1, max(counts) + 1)]
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    stop(names)
    start(names, args.image)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepare(names, Path(tmp))
            print(f"{'nodes':>5} {'forks':>5} {'tasks':>5} {'wall s':>7} {'wall/node':>9} {'CPU s':>7} {'CPU/node':>8}"
                  f" {'node CPU/node':>13}")
            for n in counts:
                for f in forks:
                    row = run(names[:n], f, Path(tmp))
                    rows.append(row)
                    print(f"{n:>5} {f:>5} {row['tasks']:>5} {row['wall']:>7.1f} {row['wall'] / n:>9.1f} "
                          f"{row['cpu']:>7.1f} {row['cpu'] / n:>8.1f} {row['node_cpu'] / n:>13.1f}", flush=True)
    finally:
        stop(names)
        podman("network", "rm", NETWORK, check=False)
    json.dump(rows, sys.stderr)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()
