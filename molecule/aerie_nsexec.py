"""Run commands in a running podman container as ``podman exec -i`` does, without podman.

Test harness only. Every task of a scenario and every testinfra command is
a command in a container; through podman each one costs a podman client, a
conmon and a runc (about 0.1 s of CPU), and the upstream connection adds a
``podman mount`` per task. The CI is CPU-bound on two cores, and those
processes were a fifth of a scenario's CPU (process accounting, README's
contributing section). ``nsenter`` into the container's init costs 2 ms.

What ``podman exec`` sets up is reproduced: all of the container's
namespaces, its root and working directory, the container's environment
(its init's, which podman set) and nothing of the caller's, and the
container's cgroups (so a process the command leaves behind belongs to the
container and dies with it). The container's init pid is cached per
container in /run/aerie-nsexec and trusted only while that pid is still
PID 1 of a namespace in the container's cgroup (a restart gives a new one).
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

CACHE = Path("/run/aerie-nsexec")

# /proc/PID/limits rows and prlimit's options: podman exec gives a command the
# container's resource limits (containers.conf's default_ulimits), not the caller's.
LIMITS = {"Max cpu time": "cpu", "Max file size": "fsize", "Max data size": "data", "Max stack size": "stack",
          "Max core file size": "core", "Max resident set": "rss", "Max processes": "nproc",
          "Max open files": "nofile", "Max locked memory": "memlock", "Max address space": "as",
          "Max file locks": "locks", "Max pending signals": "sigpending", "Max msgqueue size": "msgqueue",
          "Max nice priority": "nice", "Max realtime priority": "rtprio", "Max realtime timeout": "rttime"}


class NotRunning(RuntimeError):
    """The container does not exist or is not running."""


def _is_init_of(pid: int, cgroup: str) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
    in_cgroup = any(line.split(":", 2)[2] in (cgroup, cgroup + "/init.scope") for line in cgroups.splitlines())
    return nspid[-1:] == ["1"] and len(nspid) > 1 and in_cgroup


def target(name: str) -> tuple[int, str]:
    """(host pid of the container's init, the container's cgroup path)."""
    cached = CACHE / name
    try:
        pid_text, cgroup = cached.read_text().split(" ", 1)
        if _is_init_of(int(pid_text), cgroup):
            return int(pid_text), cgroup
    except (OSError, ValueError):
        pass
    res = subprocess.run(["podman", "container", "inspect", "--format", "{{.State.Pid}} {{.State.CgroupPath}}", name],
                         capture_output=True, text=True, check=False)
    pid_text, _, cgroup = res.stdout.strip().partition(" ")
    if res.returncode != 0 or not pid_text.isdigit() or int(pid_text) == 0:
        raise NotRunning(f"container {name} is not running: {res.stderr.strip() or res.stdout.strip()}")
    CACHE.mkdir(mode=0o700, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=CACHE, delete=False) as tmp:
        tmp.write(f"{pid_text} {cgroup}")
    os.replace(tmp.name, cached)
    return int(pid_text), cgroup


def prefix(name: str) -> str:
    """A shell fragment that, followed by a command's words, runs them in the container."""
    pid, cgroup = target(name)
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="surrogateescape").split("\0")
    # Each v1 hierarchy and the unified one (or the one v2 tree).
    procs = sorted({*glob.glob(f"/sys/fs/cgroup/*{cgroup}/cgroup.procs"),
                    *glob.glob(f"/sys/fs/cgroup{cgroup}/cgroup.procs")})
    join = "; ".join(f"echo $$ > {shlex.quote(p)}" for p in procs)
    env = " ".join(shlex.quote(e) for e in environ if "=" in e)
    limits = []
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name = next((n for n in LIMITS if line.startswith(n)), None)
        if name:
            soft, hard = line[len(name):].split()[:2]
            limits.append(f"--{LIMITS[name]}={soft}:{hard}")
    enter = f"exec nsenter --target {pid} --all --root --wd /usr/bin/env -i {env}"
    return f"{{ {join}; }} 2>/dev/null; prlimit --pid $$ {' '.join(limits)} && {enter}"


def run(name: str, argv_text: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    """Run a command line (shell words) in the container; (rc, stdout, stderr)."""
    proc = subprocess.run(["/bin/sh", "-c", f"{prefix(name)} {argv_text}"], input=stdin or b"",
                          capture_output=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr
