"""Benchmark: a new chroot version when one package changed, and the switch latency.

Full bootstrap (debootstrap bullseye minbase, what chroot_tree does today)
versus an incremental build that clones the previous tree (cp --reflink=auto,
or a hard-link copy) and installs the changed package into the clone with
`chroot CLONE dpkg -i`. The previous tree must stay byte-identical: its checksum
(paths, modes, owners, link targets and file contents) is taken before and
after. Needs root, debootstrap, dpkg and the Debian mirror; results go to
bench/chroot.md by hand. Run: python bench/chroot.py [--mirror URL]
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
sys.path.insert(0, str(REPO / "module_utils"))
from aerie_chroot import switch_link  # noqa: E402

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
    args = parser.parse_args()
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
