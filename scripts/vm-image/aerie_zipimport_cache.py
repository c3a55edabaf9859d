"""Remember the bytecode of source that Python imports from zip archives (test VM image only).

Every Ansible task ships its module and module_utils to the node as a zip
(AnsiballZ) that Python imports with zipimport, which compiles each module
from source on every import and never keeps the bytecode. Natively that is a
few tens of milliseconds per task; under the software emulation the
cgroups_v2 scenario's VM runs in, compiling ansible.module_utils.basic and
its imports is 1.4 s of a 3.3 s task, repeated for each of some 300 tasks.

scripts/build-vm-image installs this module into the image with a .pth file
that imports it. It wraps zipimport's compile step: the code object is kept
under /var/cache/aerie-zipimport, keyed by a digest of the module's path
inside the archive and its exact source, and handed out again (renamed to the
new archive's path, so tracebacks name the file that was imported) when the
same source is imported from another archive. Different source is a
different key; any failure (an unwritable cache, a damaged entry) falls back
to compiling. It changes how fast a module gets its code, never which code.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import zipimport
from _frozen_importlib_external import MAGIC_NUMBER

CACHE = "/var/cache/aerie-zipimport"
_compile = zipimport._compile_source  # pylint: disable=protected-access


def _inner_path(pathname: str) -> str:
    """The module's path inside its archive: the part that is the same for every task."""
    for marker in (".zip" + os.sep, ".py" + os.sep):
        if marker in pathname:
            pathname = pathname.rsplit(marker, 1)[1]
    return pathname


def _renamed(code, filename: str):
    """``code`` and every code object nested in it, with ``co_filename`` set to ``filename``."""
    consts = tuple(_renamed(c, filename) if hasattr(c, "co_filename") else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def compile_source(pathname: str, source: bytes):
    """zipimport's compile step, remembered by content."""
    if isinstance(source, str):
        source = source.encode()
    # The interpreter's bytecode magic is part of the key: a Python update never reads older code.
    key = hashlib.sha256(MAGIC_NUMBER + _inner_path(pathname).encode() + b"\0" + source).hexdigest()
    entry = os.path.join(CACHE, key)
    try:
        with open(entry, "rb") as handle:
            return _renamed(marshal.load(handle), pathname)
    except Exception:  # pylint: disable=broad-except
        # Not remembered yet, or unusable: compile as zipimport would have.
        pass
    code = _compile(pathname, source)
    try:
        os.makedirs(CACHE, mode=0o755, exist_ok=True)
        partial = f"{entry}.{os.getpid()}"
        with open(partial, "wb") as handle:
            marshal.dump(code, handle)
        os.replace(partial, entry)
    except OSError:
        pass  # A read-only or full cache only costs the next import its compile.
    return code


zipimport._compile_source = compile_source  # pylint: disable=protected-access
