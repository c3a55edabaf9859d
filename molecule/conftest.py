"""Shared pytest setup for every scenario's testinfra tests.

pytest imports this file before any ``molecule/<scenario>/tests`` module, so
the helper module beside it becomes importable as ``aerie_testinfra``.
"""

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aerie_nsexec
from testinfra.backend import podman as _podman_backend

_podman_run = _podman_backend.PodmanBackend.run


def _nsenter_run(self, command, *args, **kwargs):
    """testinfra's podman backend without a podman process per command.

    The same as ``podman exec NAME /bin/sh -c CMD`` (aerie_nsexec says how);
    a container that is not running answers as podman does, rc 125.
    """
    if self.user is not None:
        return _podman_run(self, command, *args, **kwargs)
    cmd = self.get_command(command, *args)
    try:
        rc, out, err = aerie_nsexec.run(self.name, "/bin/sh -c " + shlex.quote(cmd))
    except aerie_nsexec.NotRunning as exc:
        rc, out, err = 125, b"", str(exc).encode()
    result = self.result(rc, self.encode(cmd), out, err)
    result.command = self.encode(cmd)
    return result


_podman_backend.PodmanBackend.run = _nsenter_run
