#!/usr/bin/env python3
"""Site squid benchmark: N concurrent jobs fetching the 83 MB job archive.

For N = 1, 10, 50 concurrent clients (curl, like a job wrapper) it measures

  direct  every client fetches from the origin itself (no proxy);
  cold    through squid, the archive not cached yet (a URL nobody fetched);
  warm    through squid, the archive cached;

the wall time until the last client has the whole file, and how many
requests reached the origin. The origin sits behind a WAN-like link: all its
responses together are limited to --origin-rate-mb (20 MB/s), as a site's
uplink to a remote data server would be.

Squid runs in a podman container from the aerie node image, configured by
the squid role itself (defaults plus squid_allowed_networks = the bench
network), so the figures are those of the configuration aerie ships. The
origin is a thread of this script on the podman bridge; the clients run on
this machine. Scratch files go to bench/_work/; results are printed and
written to bench/_work/squid.json.

    .venv/bin/python bench/squid.py [--counts 1,10,50] [--origin-rate-mb 20] [--keep]

Needs root (rootful podman) and the node image (scripts/build-test-image).
"""

import argparse
import email.utils
import http.server
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "_work"
IMAGE = os.environ.get("AERIE_IMAGE", "localhost/aerie-node:debian12")
NETWORK = "aerie-bench-squid"
CONTAINER = "aerie-bench-squid"
ARCHIVE_BYTES = 83 * 1048576
CHUNK = 64 * 1024
MB = 1e6


class Link:
    """A shared WAN link: every byte any response sends waits for its slot at `rate` bytes/s."""

    def __init__(self, rate):
        self.rate = rate
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def send(self, nbytes):
        with self.lock:
            start = max(time.monotonic(), self.next_free)
            self.next_free = start + nbytes / self.rate
            done = self.next_free
        delay = done - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address, payload, link):
        super().__init__((address, 0), OriginHandler)
        self.payload = payload
        self.link = link
        self.lock = threading.Lock()
        self.requests = {}
        # A month old: squid's heuristic freshness (20% of the age) keeps it fresh.
        self.last_modified = email.utils.formatdate(time.time() - 30 * 86400, usegmt=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def count(self, path):
        with self.lock:
            return self.requests.get(path, 0)


class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests[self.path] = server.requests.get(self.path, 0) + 1
        if not self.path.startswith("/archive-"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(server.payload)))
        self.send_header("Last-Modified", server.last_modified)
        self.end_headers()
        view = memoryview(server.payload)
        try:
            for offset in range(0, len(view), CHUNK):
                chunk = view[offset : offset + CHUNK]
                server.link.send(len(chunk))
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass


def sh(*argv, check=True, capture=True, **kw):
    return subprocess.run(argv, check=check, text=True, capture_output=capture, **kw)


def log(msg):
    print(f"bench/squid: {msg}", file=sys.stderr, flush=True)


def start_squid():
    """Bench network + container, converged with the squid role; returns (proxy ip, gateway ip)."""
    if sh("podman", "network", "exists", NETWORK, check=False).returncode != 0:
        sh("podman", "network", "create", NETWORK)
    net = json.loads(sh("podman", "network", "inspect", NETWORK).stdout)[0]
    subnet = net["subnets"][0]["subnet"]
    gateway = net["subnets"][0]["gateway"]
    if sh("podman", "container", "exists", CONTAINER, check=False).returncode != 0:
        sh("podman", "run", "-d", "--name", CONTAINER, "--hostname", CONTAINER, "--network", NETWORK,
           "--privileged", "--systemd=always", IMAGE)
        sh("podman", "exec", CONTAINER, "timeout", "120", "systemctl", "is-system-running", "--wait", check=False)
    WORK.mkdir(parents=True, exist_ok=True)
    inventory = WORK / "squid-inventory.yml"
    inventory.write_text(
        f"all:\n  hosts:\n    {CONTAINER}:\n      ansible_connection: containers.podman.podman\n"
        "      ansible_python_interpreter: /usr/bin/python3\n"
    )
    playbook = WORK / "squid-converge.yml"
    playbook.write_text(
        "- name: Bench squid, configured by the squid role\n"
        "  hosts: all\n"
        "  roles:\n"
        "    - role: squid\n"
        f"      squid_allowed_networks: [\"{subnet}\"]\n"
    )
    log(f"converging {CONTAINER} with the squid role (allowed: {subnet})")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    res = sh(str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(playbook),
             check=False, env=env, cwd=REPO)
    if res.returncode != 0:
        sys.exit(f"bench/squid: converge failed\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}")
    ip = sh("podman", "inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}",
            CONTAINER).stdout.strip()
    version = sh("podman", "exec", CONTAINER, "squid", "-v").stdout.splitlines()[0]
    return ip, gateway, version


def stop_squid():
    sh("podman", "rm", "-f", "-t", "5", CONTAINER, check=False)
    sh("podman", "network", "rm", NETWORK, check=False)


def fetch_all(n, url, proxy):
    """n concurrent curl fetches of url; returns (wall seconds, per-client seconds, all complete)."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}"]
    argv += ["-x", f"http://{proxy}"] if proxy else ["--noproxy", "*"]
    t0 = time.monotonic()
    procs = [subprocess.Popen([*argv, url], stdout=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate()[0].split() for p in procs]
    wall = time.monotonic() - t0
    ok = all(o[:2] == ["200", str(ARCHIVE_BYTES)] for o in outs)
    return wall, [float(o[2]) for o in outs if len(o) == 3] or [wall], ok


def squid_cpu_seconds():
    """CPU seconds (user + system) the squid worker process has used so far."""
    script = "for p in $(pgrep -f '^\\(squid-1\\)'); do cut -d' ' -f14,15 /proc/$p/stat; done"
    ticks = sh("podman", "exec", CONTAINER, "sh", "-c", script).stdout.split()
    return sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK")


def cache_tags(url):
    """Result codes squid logged for url, e.g. {"TCP_MEM_HIT/200": 10}."""
    log_text = sh("podman", "exec", CONTAINER, "cat", "/var/log/squid/access.log").stdout
    tags = {}
    for line in log_text.splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[6] == url:
            tags[fields[3]] = tags.get(fields[3], 0) + 1
    return tags


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,10,50", help="concurrent clients to try (default 1,10,50)")
    parser.add_argument("--origin-rate-mb", type=float, default=20.0, help="origin link rate, MB/s (default 20)")
    parser.add_argument("--skip-direct", action="store_true", help="skip the (slow) direct fetches")
    parser.add_argument("--keep", action="store_true", help="leave the squid container running")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("podman") or not shutil.which("curl"):
        sys.exit("bench/squid: needs root, podman and curl")
    counts = [int(c) for c in args.counts.split(",")]

    proxy_ip, gateway, version = start_squid()
    origin = Origin(gateway, os.urandom(ARCHIVE_BYTES), Link(args.origin_rate_mb * MB))
    base = f"http://{gateway}:{origin.server_address[1]}"
    proxy = f"{proxy_ip}:3128"
    log(f"{version} at {proxy}; origin {base} limited to {args.origin_rate_mb:g} MB/s")
    rows = []
    try:
        for n in counts:
            if not args.skip_direct:
                path = f"/archive-direct-{uuid.uuid4().hex[:8]}.tar"
                load = os.getloadavg()[0]
                wall, each, ok = fetch_all(n, base + path, None)
                rows.append({"clients": n, "mode": "direct", "wall_s": wall, "max_client_s": max(each),
                             "origin_requests": origin.count(path), "complete": ok, "squid": {},
                             "squid_cpu_s": 0.0, "load_before": load})
                log(f"N={n:<3} direct  {wall:7.2f} s  origin requests {origin.count(path)}")
            path = f"/archive-{uuid.uuid4().hex[:8]}.tar"
            for mode in ("cold", "warm"):
                load = os.getloadavg()[0]
                cpu0 = squid_cpu_seconds()
                wall, each, ok = fetch_all(n, base + path, proxy)
                cpu = squid_cpu_seconds() - cpu0
                time.sleep(0.5)  # access.log is written by a daemon helper
                tags = cache_tags(base + path)
                rows.append({"clients": n, "mode": mode, "wall_s": wall, "max_client_s": max(each),
                             "origin_requests": origin.count(path), "complete": ok, "squid": tags,
                             "squid_cpu_s": cpu, "load_before": load})
                log(f"N={n:<3} {mode:<6}  {wall:7.2f} s  origin requests {origin.count(path)}  squid CPU {cpu:.2f} s"
                    f"  load {load:.1f}  {tags}")
    finally:
        origin.shutdown()
        if not args.keep:
            stop_squid()

    print(f"\n{version}; origin link {args.origin_rate_mb:g} MB/s; archive {ARCHIVE_BYTES / MB:.1f} MB "
          f"({ARCHIVE_BYTES // 1048576} MiB); {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"{'clients':>7}  {'mode':<6} {'wall s':>8} {'agg MB/s':>9} {'origin req':>10} {'squid CPU s':>11} "
          f"{'load':>5}  squid log (this URL, cumulative)")
    for r in rows:
        agg = r["clients"] * ARCHIVE_BYTES / MB / r["wall_s"]
        tags = ", ".join(f"{k} x{v}" for k, v in sorted(r["squid"].items())) or "-"
        flag = "" if r["complete"] else "  INCOMPLETE"
        print(f"{r['clients']:>7}  {r['mode']:<6} {r['wall_s']:8.2f} {agg:9.1f} {r['origin_requests']:>10} "
              f"{r['squid_cpu_s']:11.2f} {r['load_before']:5.1f}  {tags}{flag}")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "squid.json").write_text(json.dumps({"squid": version, "origin_rate_mb": args.origin_rate_mb,
                                                 "rows": rows}, indent=2))
    return 0 if all(r["complete"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
