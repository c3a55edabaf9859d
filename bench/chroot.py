"""Benchmark: a new chroot version when one package changed, and the switch latency.

Part 1, the raw operations: a full bootstrap (debootstrap bullseye minbase)
versus cloning the previous tree (cp --reflink=auto, or a hard-link copy) and
installing the changed package into the clone with `chroot CLONE dpkg -i`.
The previous tree must stay byte-identical: its checksum (paths, modes,
owners, link targets and file contents) is taken before and after.

Part 2, the chroot_tree module as a site runs it (--module): version 1 built
in full, then version 2 with one more package (`hello`) built with
build_mode=incremental and, for comparison, with build_mode=full. The
incremental build includes everything the module does: the read-only view,
the copy, apt-get update/dist-upgrade/install in the copy, the secure pass,
the package list and the manifest.

Needs root, debootstrap, dpkg and the Debian mirror; results go to
bench/chroot.md by hand. Run: python bench/chroot.py [--mirror URL] [--module]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "collections"))  # the checkout as the collection aerie.grid
from ansible_collections.aerie.grid.plugins.module_utils.aerie_chroot import switch_link  # noqa: E402

WORK = REPO / "bench" / "_work" / "chroot"
PACKAGE = "base-files"  # re-installed from the tree's own archive cache: the "changed package"


def tree_checksum(tree: Path) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for entry in sorted(dirnames + filenames):
            full = os.path.join(dirpath, entry)
            st = os.lstat(full)
            digest.update(f"{os.path.relpath(full, tree)}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0".encode())
            if os.path.islink(full):
                digest.update(os.readlink(full).encode())
            elif os.path.isfile(full):
                with open(full, "rb") as handle:
                    for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                        digest.update(chunk)
    return digest.hexdigest()


def timed(argv: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def incremental(previous: Path, clone: Path, copy_flags: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(["cp", "-a", *copy_flags, str(previous), str(clone)], check=True)
    debs = sorted((clone / "var/cache/apt/archives").glob(f"{PACKAGE}_*.deb"))
    # Inside the clone (maintainer scripts must never run against the host).
    deb = "/" + str(debs[-1].relative_to(clone))
    subprocess.run(["chroot", str(clone), "dpkg", "-i", deb], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    return time.monotonic() - start


MODULE_ROOT = Path("/var/lib/aerie-bench/chroot")  # the chain to the trees must be root-owned, not writable


def module_build(version: str, include: list[str], mode: str, mirror: str) -> tuple[float, dict]:
    """Run chroot_tree through ansible on localhost; (seconds, module result)."""
    import json

    args = {"name": "deb", "version": version, "root": str(MODULE_ROOT), "bootstrapper": "debootstrap",
            "debootstrap": {"suite": "bullseye", "mirror": mirror, "include": include}, "build_mode": mode}  # fmt: skip
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_CACHE_PLUGIN="memory")  # fmt: skip
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
            "-e", "ansible_python_interpreter=/usr/bin/python3",  # not whatever python3 is first on PATH
            "-m", "chroot_tree", "-a", json.dumps(args)]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    if result.get("failed"):
        raise SystemExit(f"chroot_tree failed: {result.get('msg')}")
    return seconds, result


def module_bench(mirror: str) -> None:
    shutil.rmtree(MODULE_ROOT, ignore_errors=True)
    MODULE_ROOT.mkdir(parents=True, mode=0o755)
    first, _ = module_build("1", [], "full", mirror)
    before = tree_checksum(MODULE_ROOT / "deb-v1")
    incremental_s, result = module_build("2", ["hello"], "incremental", mirror)
    assert result["build_mode"] == "incremental" and result["base_version"] == "1", result
    same = tree_checksum(MODULE_ROOT / "deb-v1") == before
    shutil.rmtree(MODULE_ROOT / "deb-v2")
    full_s, result = module_build("2", ["hello"], "full", mirror)
    assert result["build_mode"] == "full", result
    shutil.rmtree(MODULE_ROOT, ignore_errors=True)
    print(f"module: version 1, full: {first:.1f} s")
    print(f"module: version 2 (+hello), full: {full_s:.1f} s")
    print(f"module: version 2 (+hello), incremental: {incremental_s:.1f} s ({full_s / incremental_s:.1f}x)")
    print(f"module: version 1 unchanged by the incremental build: {same}")


def switch_latency(count: int = 2000) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        for v in ("a", "b"):
            os.mkdir(os.path.join(tmp, v))
        link = os.path.join(tmp, "stable")
        os.symlink("a", link)
        samples = []
        for i in range(count):
            start = time.perf_counter()
            switch_link(link, "b" if i % 2 == 0 else "a")
            samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", default="http://deb.debian.org/debian")
    parser.add_argument("--module", action="store_true", help="only part 2: the chroot_tree module")
    args = parser.parse_args()
    if args.module:
        module_bench(args.mirror)
        return
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    previous = WORK / "prev"
    argv = ["debootstrap", "--variant=minbase", "bullseye", str(previous), args.mirror]
    full = timed(argv)
    before = tree_checksum(previous)
    results = {"full debootstrap": full}
    modes = (
        ("clone (cp --reflink=auto) + chroot dpkg -i", ["--reflink=auto"]),
        ("hard-link clone + chroot dpkg -i", ["-l"]),
    )
    for label, flags in modes:
        clone = WORK / "clone"
        results[label] = incremental(previous, clone, flags)
        same = tree_checksum(previous) == before
        results[label + " (previous unchanged)"] = same
        shutil.rmtree(clone)
    median, p99 = switch_latency()
    shutil.rmtree(WORK, ignore_errors=True)
    for key, value in results.items():
        print(f"{key}: {value:.1f} s" if isinstance(value, float) else f"{key}: {value}")
    for key in [k for k in results if isinstance(results[k], float) and k != "full debootstrap"]:
        print(f"speed-up {key}: {full / results[key]:.1f}x")
    print(f"switch latency (rename of a temporary link): median {median:.1f} us, p99 {p99:.1f} us")


if __name__ == "__main__":
    main()
