"""What the drift check ships to the management host: the release of a collection.

A release is the collection the roles run from plus, optionally, the
inventory the nightly check runs against (under ``inventory/``), packed with
a manifest (``RELEASE.json``: every file's sha256) and its revision
(``REVISION``: a hash of the shipped content).

Where the files come from decides what is shipped:

- an installed collection (``FILES.json`` at its root): exactly the files
  FILES.json lists, each checked against its sha256 (a modified installed
  file is an error);
- a git checkout: the files git tracks (``git ls-files``; an untracked stray
  file is never shipped), minus what galaxy.yml's ``build_ignore`` leaves out
  of a build;
- a deployed release (``RELEASE.json``): the files its manifest lists, checked
  the same way, so the management host computes the revision the controller
  shipped.

Never shipped, whatever the source: ``inventories/`` (a site's inventory only
travels when named, as ``inventory/``) and anything whose name looks like a
secret (SECRET_PATTERNS: vault files, keys, ``.env``).

Stdlib only (PyYAML when galaxy.yml is read); tests/test_release.py builds and
installs a real collection to prove it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field

from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError, read_text

REVISION_FILE = "REVISION"
MANIFEST_FILE = "RELEASE.json"
INVENTORY_DIR = "inventory"
# Matched (case-insensitively) against every path component.
SECRET_PATTERNS = (
    "*vault*", "*secret*", "*.pem", "*.key", "*.p12", "*.pfx", "*.kdbx",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".env", ".env.*",
)
# Top-level directories of a collection that never travel.
NEVER_SHIPPED_DIRS = ("inventories", INVENTORY_DIR)


@dataclass(frozen=True)
class Entry:
    """One shipped path: a regular file (its bytes, executable or not) or a symlink (its target)."""

    data: bytes = b""
    executable: bool = False
    link: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def line(self, rel: str) -> str:
        if self.link is not None:
            return f"{rel}\0l\0{self.link}\n"
        return f"{rel}\0{'x' if self.executable else '-'}\0{self.sha256}\n"

    def manifest(self) -> dict:
        if self.link is not None:
            return {"link": self.link}
        return {"sha256": self.sha256, "executable": self.executable}


@dataclass
class Release:
    source: str
    entries: dict[str, Entry] = field(default_factory=dict)
    excluded: list[dict] = field(default_factory=list)

    @property
    def revision(self) -> str:
        digest = hashlib.sha256()
        for rel in sorted(self.entries):
            digest.update(self.entries[rel].line(rel).encode())
        return digest.hexdigest()[:12]

    @property
    def files(self) -> list[str]:
        return sorted(self.entries)


# --- what is never shipped ---------------------------------------------------


def secret_reason(rel: str) -> str | None:
    for part in rel.split("/"):
        for pattern in SECRET_PATTERNS:
            if fnmatch.fnmatchcase(part.lower(), pattern):
                return f"secret ({pattern})"
    return None


def ignored_by(rel: str, patterns: list[str]) -> str | None:
    """The pattern matching ``rel`` or one of its parent directories, as ansible-galaxy's build_ignore does."""
    parts = rel.split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        for pattern in patterns:
            if fnmatch.fnmatch(prefix, pattern):
                return pattern
    return None


def _link_target(root: str, rel: str) -> str:
    """A symlink's target, refused when it leads outside ``root``."""
    target = os.readlink(os.path.join(root, rel))
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
        raise AerieError(f"{os.path.join(root, rel)} links outside {root} ({target}); a release cannot hold it")
    return target


def _read(root: str, rel: str) -> Entry:
    path = os.path.join(root, rel)
    with open(path, "rb") as handle:
        data = handle.read()
    return Entry(data=data, executable=bool(os.stat(path).st_mode & 0o111))


def _filter(release: Release, candidates: dict[str, Entry], extra: list[str], collection: bool) -> None:
    for rel, entry in sorted(candidates.items()):
        reason = secret_reason(rel)
        if reason is None and collection and rel.split("/")[0] in NEVER_SHIPPED_DIRS:
            reason = "inventory"
        if reason is None and (pattern := ignored_by(rel, extra)):
            reason = f"excluded ({pattern})"
        if reason is None and entry.link is not None:
            # A link into something left out would dangle on the management host.
            target = os.path.normpath(os.path.join(os.path.dirname(rel), entry.link))
            if secret_reason(target) or (collection and target.split("/")[0] in NEVER_SHIPPED_DIRS):
                reason = f"links to {target}, which is not shipped"
        if reason:
            release.excluded.append({"path": rel, "reason": reason})
        else:
            release.entries[rel] = entry


# --- sources -----------------------------------------------------------------


def _git_toplevel(path: str) -> str | None:
    try:
        res = subprocess.run(["git", "-C", path, "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_tracked(root: str) -> dict[str, Entry]:
    """Every file and symlink git tracks under ``root`` (index paths, working-tree content)."""
    res = subprocess.run(["git", "-C", root, "ls-files", "-z", "--stage"], capture_output=True, check=False)
    if res.returncode != 0:
        raise AerieError(f"git ls-files in {root} failed: {res.stderr.decode(errors='replace').strip()}")
    found = {}
    for record in res.stdout.decode().split("\0"):
        if not record:
            continue
        meta, rel = record.split("\t", 1)
        mode = meta.split()[0]
        path = os.path.join(root, rel)
        if mode == "120000" and os.path.islink(path):
            found[rel] = Entry(link=_link_target(root, rel))
        elif mode.startswith("100") and os.path.isfile(path) and not os.path.islink(path):
            found[rel] = _read(root, rel)
        # A tracked file deleted from the working tree, or a submodule, is not shipped.
    return found


def walk_files(root: str) -> dict[str, Entry]:
    """Every file and symlink below ``root`` (not in a git checkout), .git skipped."""
    found = {}
    for top, dirs, names in os.walk(root):
        rel_top = os.path.relpath(top, root)
        for name in list(dirs):
            rel = os.path.normpath(os.path.join(rel_top, name))
            if name == ".git":
                dirs.remove(name)
            elif os.path.islink(os.path.join(top, name)):
                found[rel] = Entry(link=_link_target(root, rel))
        for name in names:
            rel = os.path.normpath(os.path.join(rel_top, name))
            if os.path.islink(os.path.join(top, name)):
                found[rel] = Entry(link=_link_target(root, rel))
            else:
                found[rel] = _read(root, rel)
    return found


def _checked(root: str, listed: dict[str, str | None], what: str) -> dict[str, Entry]:
    """The files ``listed`` (path -> sha256, None for a directory), verified against their checksums."""
    found, modified, missing = {}, [], []
    for rel, sha in sorted(listed.items()):
        path = os.path.join(root, rel)
        if os.path.islink(path):
            found[rel] = Entry(link=_link_target(root, rel))
        elif sha is None:
            continue  # a plain directory: its files are listed themselves
        elif not os.path.isfile(path):
            missing.append(rel)
        else:
            entry = _read(root, rel)
            if entry.sha256 != sha:
                modified.append(rel)
            found[rel] = entry
    if missing or modified:
        raise AerieError(f"{root} does not match its {what}: "
                         + "; ".join(filter(None, [missing and "missing " + ", ".join(missing),
                                                   modified and "modified " + ", ".join(modified)])))
    return found


def installed_files(root: str) -> dict[str, Entry]:
    listing = json.loads(read_text(os.path.join(root, "FILES.json")))
    listed = {}
    for item in listing["files"]:
        if item["name"] in (".", ""):
            continue
        if item["ftype"] == "file" and item.get("chksum_type") != "sha256":
            raise AerieError(f"FILES.json of {root}: {item['name']} has no sha256")
        listed[item["name"]] = item["chksum_sha256"] if item["ftype"] == "file" else None
    return _checked(root, listed, "FILES.json")


def release_files(root: str) -> dict[str, Entry]:
    manifest = read_release_manifest(root)
    listed = {rel: item.get("sha256") for rel, item in manifest["files"].items()}
    found = _checked(root, listed, MANIFEST_FILE)
    for rel, item in manifest["files"].items():
        if "link" in item and found.get(rel, Entry()).link != item["link"]:
            raise AerieError(f"{root} does not match its {MANIFEST_FILE}: {rel} should link to {item['link']}")
    return found


def read_release_manifest(root: str) -> dict:
    text = read_text(os.path.join(root, MANIFEST_FILE), None)
    if text is None:
        raise AerieError(f"{root} is not a deployed release (no {MANIFEST_FILE})")
    return json.loads(text)


def _collection_name(root: str) -> tuple[str, str]:
    manifest = read_text(os.path.join(root, "MANIFEST.json"), None)
    if manifest is not None:
        info = json.loads(manifest)["collection_info"]
        return info["namespace"], info["name"]
    galaxy = _galaxy(root)
    return galaxy.get("namespace", "aerie"), galaxy.get("name", "grid")


def _galaxy(root: str) -> dict:
    text = read_text(os.path.join(root, "galaxy.yml"), None)
    if text is None:
        return {}
    import yaml  # ansible-core's dependency; only a checkout's galaxy.yml needs it

    return yaml.safe_load(text) or {}


def build_release(src: str, inventory: str | None = None, exclude: list[str] | None = None) -> Release:
    """The release of the collection at ``src`` (and of ``inventory``, shipped as inventory/)."""
    src = os.path.abspath(src)
    extra = list(exclude or [])
    if os.path.exists(os.path.join(src, MANIFEST_FILE)):
        release = Release("release")
        found = {rel: e for rel, e in release_files(src).items() if rel.split("/")[0] != INVENTORY_DIR}
        _filter(release, found, extra, collection=True)
    elif os.path.exists(os.path.join(src, "FILES.json")):
        release = Release("installed")
        _filter(release, installed_files(src), extra, collection=True)
    elif _git_toplevel(src):
        release = Release("git")
        _filter(release, git_tracked(src), extra + list(_galaxy(src).get("build_ignore") or []), collection=True)
    else:
        raise AerieError(f"{src} is neither an installed collection (FILES.json), a git checkout "
                         f"nor a deployed release ({MANIFEST_FILE})")
    if release.source != "release":
        # The release's ansible.cfg finds the collection by its FQCN through collections/.
        namespace, name = _collection_name(src)
        release.entries[f"collections/ansible_collections/{namespace}/{name}"] = Entry(link="../../..")
    if inventory:
        add_inventory(release, inventory, extra)
    return release


def add_inventory(release: Release, inventory: str, exclude: list[str]) -> None:
    """Ship the inventory file or directory ``inventory`` as inventory/ (tracked files only in a git checkout)."""
    inventory = os.path.abspath(inventory)
    if os.path.isfile(inventory):
        top, names = os.path.dirname(inventory), [os.path.basename(inventory)]
        found = git_tracked(top) if _git_toplevel(top) else {names[0]: _read(top, names[0])}
        found = {rel: e for rel, e in found.items() if rel in names}
        if not found:
            raise AerieError(f"inventory {inventory} is not tracked by git: commit it to ship it")
    elif os.path.isdir(inventory):
        found = git_tracked(inventory) if _git_toplevel(inventory) else walk_files(inventory)
    else:
        raise AerieError(f"inventory {inventory} does not exist")
    shipped = Release(release.source)
    _filter(shipped, found, exclude, collection=False)
    if not shipped.entries:
        raise AerieError(f"inventory {inventory} has no file to ship (untracked, or all excluded)")
    release.entries.update({f"{INVENTORY_DIR}/{rel}": e for rel, e in shipped.entries.items()})
    release.excluded += [{**x, "path": f"{INVENTORY_DIR}/{x['path']}"} for x in shipped.excluded]


# --- the archive and what the management host reads back --------------------


def manifest_text(release: Release) -> str:
    return json.dumps({"revision": release.revision, "source": release.source,
                       "files": {rel: release.entries[rel].manifest() for rel in release.files}},
                      indent=1, sort_keys=True) + "\n"


def write_archive(release: Release, dest: str) -> None:
    """``dest`` (.tar.gz): the shipped files, then RELEASE.json and REVISION last (a partial unpack lacks it)."""
    now = int(time.time())

    def member(name: str, **kw) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mtime, info.uid, info.gid = now, 0, 0
        for key, value in kw.items():
            setattr(info, key, value)
        return info

    directory = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
            tail = [(MANIFEST_FILE, Entry(data=manifest_text(release).encode())),
                    (REVISION_FILE, Entry(data=(release.revision + "\n").encode()))]
            for rel, entry in [(r, release.entries[r]) for r in release.files] + tail:
                if entry.link is not None:
                    tar.addfile(member(rel, type=tarfile.SYMTYPE, linkname=entry.link, mode=0o777))
                else:
                    info = member(rel, size=len(entry.data), mode=0o755 if entry.executable else 0o644)
                    tar.addfile(info, io.BytesIO(entry.data))
        os.chmod(tmp, 0o600)
        os.rename(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def deployed_revision(root: str) -> str:
    """The revision of a deployed release, recomputed from its files (an edited release is an error)."""
    stamp = (read_text(os.path.join(root, REVISION_FILE), "") or "").strip()
    release = Release("release", release_files(root))
    if release.revision != stamp:
        raise AerieError(f"{root}: its files hash to {release.revision}, its {REVISION_FILE} says {stamp or 'nothing'}")
    return stamp
