"""Staging a VM disk: the nfs plugin's qcow2 overlay against a full copy.

Measures, for sparse raw templates of 1, 10 and 50 GiB:
  - the plugin (legacy mode, one process a file, as HTCondor runs it);
  - a full copy of the template into the sandbox (cp --sparse=never + fsync:
    every byte written, which is what transferring the image costs at best,
    before any network);
and the per-file cost of one multi-file call staging 100 instances, against
100 legacy calls.

Usage: .venv/bin/python bench/vm_plugin.py [--sizes-gib 1 10 50] [--repeat 5]
Scratch data goes to bench/_work/vm_plugin and is removed afterwards.
Results: bench/vm_plugin.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "roles" / "condor_vm" / "files" / "aerie-vm-nfs-plugin"
WORK = REPO / "bench" / "_work" / "vm_plugin"
GiB = 1 << 30


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def full_copy(src: Path, dst: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["cp", "--sparse=never", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    written = os.stat(dst).st_blocks * 512
    if written < os.stat(src).st_size * 0.99:
        raise RuntimeError(f"cp kept {dst} sparse ({written} bytes allocated); not a full copy")
    dst.unlink()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gib", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeat", type=int, default=5, help="plugin runs per size (median reported)")
    parser.add_argument("--instances", type=int, default=100)
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    templates = WORK / "templates"
    sandbox = WORK / "execute" / "dir_1"
    templates.mkdir(parents=True)
    sandbox.mkdir(parents=True)
    config = WORK / "vm-nfs-plugin.conf"
    config.write_text(f"[vm-nfs-plugin]\nallowed_roots = {templates}\nexecute_dir = {WORK / 'execute'}\n")
    env = {**os.environ, "AERIE_VM_NFS_PLUGIN_CONFIG": str(config), "_CONDOR_SCRATCH_DIR": str(sandbox)}
    plugin = [sys.executable, str(PLUGIN)]

    print(f"# vm_plugin bench on {platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"# qemu-img: {subprocess.run(['qemu-img', '--version'], capture_output=True, text=True).stdout.split()[2]}")
    print()
    print(f"| template (sparse raw) | plugin (median of {args.repeat}) | full copy | copy / plugin |")
    print("| --- | --- | --- | --- |")
    try:
        for size in args.sizes_gib:
            template = templates / f"t{size}.img"
            with template.open("wb") as handle:
                handle.truncate(size * GiB)
            runs = []
            for i in range(args.repeat):
                instance = sandbox / f"vm{i}.img"
                runs.append(timed([*plugin, f"nfs://{template}", str(instance)], env))
                instance.unlink()
            plugin_s = statistics.median(runs)
            free = shutil.disk_usage(WORK).free
            if free < size * GiB + 20 * GiB:
                copy_cell, ratio_cell = f"not run ({free / GiB:.0f} GiB free)", "-"
            else:
                copy_s = full_copy(template, sandbox / "copy.img")
                copy_cell, ratio_cell = f"{copy_s:.2f} s ({size / copy_s:.2f} GiB/s)", f"{copy_s / plugin_s:,.0f}x"
            print(f"| {size} GiB | {plugin_s * 1000:.0f} ms | {copy_cell} | {ratio_cell} |", flush=True)

        # 100 instances of the largest template in one multi-file call, then one process each.
        template = templates / f"t{args.sizes_gib[-1]}.img"
        n = args.instances
        infile, outfile = WORK / "in.ads", WORK / "out.ads"
        infile.write_text(
            "".join(f'[ Url = "nfs://{template}:vm{i}.img"; LocalFileName = "{sandbox}/x{i}" ]\n' for i in range(n))
        )
        multi_s = timed([*plugin, "-infile", str(infile), "-outfile", str(outfile)], env)
        if outfile.read_text().count("TransferSuccess = true") != n:
            raise RuntimeError("multi-file call did not stage every instance")
        for i in range(n):
            (sandbox / f"vm{i}.img").unlink()
        legacy_s = sum(timed([*plugin, f"nfs://{template}", str(sandbox / f"vm{i}.img")], env) for i in range(n))
        print()
        print(f"| {n} instances of {args.sizes_gib[-1]} GiB | total | per file |")
        print("| --- | --- | --- |")
        print(f"| one multi-file call | {multi_s:.2f} s | {multi_s / n * 1000:.1f} ms |")
        print(f"| {n} legacy calls | {legacy_s:.2f} s | {legacy_s / n * 1000:.1f} ms |")
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
