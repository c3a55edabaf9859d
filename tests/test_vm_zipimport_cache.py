"""The VM image's zipimport bytecode cache (scripts/vm-image/aerie_zipimport_cache.py).

It only makes Ansible's tasks cheaper under emulation, so what matters is
that it never changes which code runs: real imports from real zip archives
in a fresh interpreter, as AnsiballZ does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

HOOK = Path(__file__).resolve().parents[1] / "scripts" / "vm-image"


def archive(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("pkg/mod.py", source)
    return path


def import_from(zip_path: Path, cache: Path) -> str:
    """Import pkg.mod from ``zip_path`` in a fresh interpreter with the hook; its output."""
    program = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HOOK)!r})
        import aerie_zipimport_cache
        aerie_zipimport_cache.CACHE = {str(cache)!r}
        sys.path.insert(0, {str(zip_path)!r})
        import traceback
        import pkg.mod
        print(pkg.mod.value())
        try:
            pkg.mod.fail()
        except RuntimeError:
            print(traceback.extract_tb(sys.exc_info()[2])[-1].filename)
    """)
    res = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


MODULE = textwrap.dedent("""
    def value():
        return {value!r}

    def fail():
        def inner():
            raise RuntimeError("boom")
        inner()
""")


def test_the_same_source_from_another_archive_is_served_from_the_cache_under_its_own_name(tmp_path):
    cache = tmp_path / "cache"
    first = archive(tmp_path / "task1" / "ansible_stat_payload.zip", MODULE.format(value="one"))
    second = archive(tmp_path / "task2" / "ansible_stat_payload.zip", MODULE.format(value="one"))
    out1 = import_from(first, cache)
    entries = sorted(cache.iterdir())
    assert len(entries) == 2  # pkg/__init__.py and pkg/mod.py
    mtimes = [e.stat().st_mtime_ns for e in entries]
    out2 = import_from(second, cache)
    assert sorted(cache.iterdir()) == entries and [e.stat().st_mtime_ns for e in entries] == mtimes
    assert out1.splitlines()[0] == out2.splitlines()[0] == "one"
    # Tracebacks (from a nested function's code) name the archive that was imported.
    assert out1.splitlines()[1].startswith(str(first)) and out2.splitlines()[1].startswith(str(second))


def test_changed_source_is_compiled_anew(tmp_path):
    cache = tmp_path / "cache"
    assert import_from(archive(tmp_path / "a" / "p.zip", MODULE.format(value="old")), cache).startswith("old\n")
    assert import_from(archive(tmp_path / "b" / "p.zip", MODULE.format(value="new")), cache).startswith("new\n")
    assert len(list(cache.iterdir())) == 3


def test_a_damaged_or_unwritable_cache_only_costs_a_compile(tmp_path):
    cache = tmp_path / "cache"
    zip_path = archive(tmp_path / "a" / "p.zip", MODULE.format(value="kept"))
    import_from(zip_path, cache)
    for entry in cache.iterdir():
        entry.write_bytes(b"\x00garbage")
    assert import_from(zip_path, cache).startswith("kept\n")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    assert import_from(zip_path, blocker).startswith("kept\n")
