"""The smallest instance that proves a boot: Debian's cloud kernel and a busybox initramfs.

No image service on the internet is reachable here (no cirros), and a full
disk image would cost minutes of emulated boot. The instance boots glance's
kernel (aki) and ramdisk (ari) images the way nova's libvirt driver does for
kernel_id/ramdisk_id; /init prints MARKER and the kernel release on the
serial console, which nova's console log records, then waits to be deleted.

Built on this machine from Debian's packages and cached under
/var/cache/aerie/openstack-instance/<kernel package version>/.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path("/var/cache/aerie/openstack-instance")
MARKER = "aerie-instance-booted"
INIT = f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox echo "{MARKER} kernel=$(/bin/busybox uname -r)" > /dev/ttyS0
while :; do /bin/busybox sleep 3600; done
"""


def newc(entries: list[tuple[str, int, bytes, object]]) -> bytes:
    """A cpio archive in the kernel's initramfs format (newc): (name, mode, data, (major, minor) or 0)."""
    out = bytearray()
    for ino, (name, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], start=1):
        major, minor = rdev if rdev else (0, 0)
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(encoded), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _run(*argv: str, cwd: Path | None = None) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout


def build() -> tuple[Path, Path]:
    """(vmlinuz, initramfs) paths, built once per kernel package version."""
    kernel_pkg = next(line.split()[-1] for line in _run("apt-cache", "depends", "linux-image-cloud-amd64").splitlines()
                      if "Depends: linux-image-" in line)
    version = _run("apt-cache", "show", "--no-all-versions", kernel_pkg).split("Version: ", 1)[1].split()[0]
    target = CACHE / version
    kernel, initrd = target / "vmlinuz", target / "initramfs.cpio.gz"
    if kernel.exists() and initrd.exists():
        return kernel, initrd
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _run("apt-get", "download", kernel_pkg, "busybox-static", cwd=work)
        for deb in work.glob("*.deb"):
            _run("dpkg-deb", "-x", str(deb), str(work / "x"))
        busybox = (work / "x" / "bin" / "busybox").read_bytes()
        cpio = newc([("bin", 0o040755, b"", 0), ("bin/busybox", 0o100755, busybox, 0),
                     # The kernel opens /dev/console before /init runs.
                     ("dev", 0o040755, b"", 0), ("dev/console", 0o020600, b"", (5, 1)),
                     ("init", 0o100755, INIT.encode(), 0)])
        target.mkdir(parents=True, exist_ok=True)
        initrd.write_bytes(gzip.compress(cpio, mtime=0))
        shutil.copy2(next((work / "x" / "boot").glob("vmlinuz-*")), kernel)
    return kernel, initrd
