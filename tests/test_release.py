"""What the drift_check role ships to the management host (module_utils/aerie_release.py).

Real files throughout: a git repository made in tmp_path for the checkout
case, a real ``ansible-galaxy collection build`` of this checkout installed
into tmp_path for the installed case, the archive unpacked the way the
management host does.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from aerie_testutil import CONTROLLER_BIN, REPO, ansible_playbook
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError
from ansible_collections.aerie.grid.plugins.module_utils.aerie_release import (
    build_release,
    deployed_revision,
    write_archive,
)
from test_collection_metadata import built  # noqa: F401  (the real `ansible-galaxy collection build`, module-scoped)

BIN = CONTROLLER_BIN


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True)


def write(path: Path, text: str = "x\n", mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@pytest.fixture
def checkout(tmp_path):
    """A small collection in a git repository, with tracked inventories and secrets and untracked strays."""
    repo = tmp_path / "coll"
    write(repo / "galaxy.yml", "namespace: aerie\nname: grid\nversion: 1.0.0\nbuild_ignore: [tests, '*.tar.gz']\n")
    write(repo / "roles/r/tasks/main.yml", "---\n[]\n")
    write(repo / "library/m.py", "# module\n")
    write(repo / "scripts/tool", "#!/bin/sh\n", 0o755)
    write(repo / "tests/test_x.py")
    write(repo / "inventories/site/hosts.yml", "all: {}\n")
    write(repo / "roles/r/files/secret.txt", "hunter2\n")
    write(repo / "roles/r/files/vault.yml", "$ANSIBLE_VAULT;1.1;AES256\n")
    write(repo / "site/group_vars/all/main.yml", "a: 1\n")
    write(repo / "site/hosts.yml", "all: {hosts: {n1: {}}}\n")
    write(repo / "site/group_vars/all/vault.yml", "$ANSIBLE_VAULT;1.1;AES256\n")
    (repo / "plugins").mkdir()
    (repo / "plugins/modules").symlink_to("../library")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "init")
    # Strays nobody committed: never shipped.
    write(repo / "stray.txt")
    write(repo / "inventories/foo/vault.yml", "password: plain\n")
    write(repo / ".env", "TOKEN=1\n")
    write(repo / "site/host_vars/n1.yml", "untracked: true\n")
    return repo


SHIPPED = {"galaxy.yml", "roles/r/tasks/main.yml", "library/m.py", "scripts/tool", "plugins/modules",
           "site/group_vars/all/main.yml", "site/hosts.yml", "collections/ansible_collections/aerie/grid"}


def test_checkout_ships_tracked_files_only_never_inventories_or_secrets(checkout):
    release = build_release(str(checkout))
    assert release.source == "git"
    assert set(release.files) == SHIPPED
    reasons = {x["path"]: x["reason"] for x in release.excluded}
    assert reasons["inventories/site/hosts.yml"] == "inventory"
    assert reasons["roles/r/files/secret.txt"].startswith("secret")
    assert reasons["site/group_vars/all/vault.yml"].startswith("secret")
    assert reasons["tests/test_x.py"] == "excluded (tests)"  # galaxy.yml's build_ignore
    # Untracked files are not even candidates.
    assert not {"stray.txt", ".env", "inventories/foo/vault.yml", "site/host_vars/n1.yml"} & (
        set(reasons) | set(release.files))
    assert release.entries["scripts/tool"].executable
    assert release.entries["plugins/modules"].link == "../library"


def test_revision_is_stable_and_follows_tracked_content_only(checkout):
    first = build_release(str(checkout)).revision
    assert len(first) == 12 and build_release(str(checkout)).revision == first
    write(checkout / "another-stray.yml")
    write(checkout / "inventories/site/hosts.yml", "all: {changed: 1}\n")  # tracked, but never shipped
    assert build_release(str(checkout)).revision == first
    write(checkout / "library/m.py", "# edited\n")
    edited = build_release(str(checkout)).revision
    assert edited != first
    (checkout / "scripts/tool").chmod(0o644)
    assert build_release(str(checkout)).revision not in (first, edited)


def test_named_inventory_ships_its_tracked_non_secret_files(checkout):
    release = build_release(str(checkout), str(checkout / "site"))
    inventory = {f for f in release.files if f.startswith("inventory/")}
    assert inventory == {"inventory/hosts.yml", "inventory/group_vars/all/main.yml"}
    assert {"path": "inventory/group_vars/all/vault.yml", "reason": "secret (*vault*)"} in release.excluded
    assert release.revision != build_release(str(checkout)).revision
    # One inventory file: only it.
    single = build_release(str(checkout), str(checkout / "site/hosts.yml"))
    assert {f for f in single.files if f.startswith("inventory/")} == {"inventory/hosts.yml"}
    with pytest.raises(AerieError, match="not tracked"):
        build_release(str(checkout), str(checkout / "site/host_vars/n1.yml"))


def test_inventory_outside_git_ships_every_file_but_secrets(checkout, tmp_path):
    inv = tmp_path / "plain-inventory"
    write(inv / "hosts.ini", "[nodes]\nn1\n")
    write(inv / "group_vars/all/vault.yml", "secret: 1\n")
    write(inv / "id_ed25519", "KEY\n")
    write(inv / ".env", "X=1\n")
    release = build_release(str(checkout), str(inv))
    assert {f for f in release.files if f.startswith("inventory/")} == {"inventory/hosts.ini"}


def unpack(archive: Path, dest: Path) -> list[str]:
    """With GNU tar, as ansible.builtin.unarchive does on the management host."""
    dest.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(dest)], check=True)
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_archive_unpacks_to_a_release_that_reads_back_the_revision(checkout, tmp_path):
    release = build_release(str(checkout), str(checkout / "site"))
    archive = tmp_path / "release.tar.gz"
    write_archive(release, str(archive))
    deployed = tmp_path / "deployed"
    names = unpack(archive, deployed)
    assert names[-2:] == ["RELEASE.json", "REVISION"]  # REVISION last: a half-unpacked release has none
    assert sorted(names[:-2]) == release.files
    assert (deployed / "REVISION").read_text() == release.revision + "\n"
    assert os.access(deployed / "scripts/tool", os.X_OK)
    assert (deployed / "collections/ansible_collections/aerie/grid/library/m.py").exists()
    # The management host computes the same revision from the files it holds.
    assert deployed_revision(str(deployed)) == release.revision
    again = build_release(str(deployed), str(deployed / "inventory"))
    assert again.source == "release" and again.revision == release.revision
    # An edited release is reported, not trusted.
    write(deployed / "library/m.py", "# hand edit\n")
    with pytest.raises(AerieError, match=r"modified library/m\.py"):
        deployed_revision(str(deployed))


def test_symlink_out_of_the_collection_is_refused(checkout):
    (checkout / "escape").symlink_to("/etc/passwd")
    git(checkout, "add", "escape")
    with pytest.raises(AerieError, match="links outside"):
        build_release(str(checkout))


def test_neither_collection_nor_checkout_is_an_error(tmp_path):
    with pytest.raises(AerieError, match="neither"):
        build_release(str(tmp_path))


# --- the installed collection: a real build of this checkout ----------------


@pytest.fixture(scope="module")
def installed(request, tmp_path_factory):
    """The collection as `ansible-galaxy collection build` makes it (test_collection_metadata's build), installed."""
    tarball = request.getfixturevalue("built")
    work = tmp_path_factory.mktemp("installed")
    # --force: this checkout (collections/ in its ansible.cfg) already counts as installed aerie.grid.
    res = subprocess.run([BIN / "ansible-galaxy", "collection", "install", "--offline", "--no-deps", "--force",
                          "-p", work / "collections", tarball], capture_output=True, text=True, cwd=work)
    assert res.returncode == 0, res.stdout + res.stderr
    return work / "collections/ansible_collections/aerie/grid"


def test_installed_release_is_exactly_what_files_json_lists(installed):
    listing = json.loads((installed / "FILES.json").read_text())["files"]
    files = {f["name"]: f["chksum_sha256"] for f in listing if f["ftype"] == "file"}
    links = {f["name"] for f in listing if (installed / f["name"]).is_symlink()}
    release = build_release(str(installed))
    assert release.source == "installed"
    expected = {n for n in files | dict.fromkeys(links) if not n.startswith("inventories/")}
    assert set(release.files) == expected | {"collections/ansible_collections/aerie/grid"}
    assert {f"plugins/{d}" for d in ("modules", "module_utils", "action", "callback")} <= set(release.files)
    for name in expected - links:
        assert release.entries[name].sha256 == files[name]
    assert [x for x in release.excluded if x["path"].startswith("inventories/example/")]
    # What the role's default pins and the management host need is in the build.
    assert {"requirements-runtime.txt", "scripts/drift-check", "site.yml", "ansible.cfg"} <= set(release.files)
    assert "MANIFEST.json" not in release.files and "FILES.json" not in release.files
    assert build_release(str(installed)).revision == release.revision


def test_installed_cli_agrees_with_the_module_helper(installed):
    res = subprocess.run([sys.executable, str(installed / "scripts/aerie-release"), "revision"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == build_release(str(installed)).revision


def test_modified_installed_file_is_an_error(installed):
    target = installed / "roles/drift_check/defaults/main.yml"
    original = target.read_text()
    try:
        target.write_text(original + "# hand edit\n")
        with pytest.raises(AerieError, match=r"modified roles/drift_check/defaults/main\.yml"):
            build_release(str(installed))
    finally:
        target.write_text(original)


# --- the module, driven by ansible-playbook ---------------------------------


def test_module_reports_the_revision_and_writes_no_archive_in_check_mode(checkout, tmp_path):
    archive = tmp_path / "out.tar.gz"
    play = tmp_path / "play.yml"
    play.write_text(f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Package the release
      aerie.grid.aerie_release:
        src: {checkout}
        inventory: {checkout / "site"}
        archive: {archive}
      register: release
    - name: Show it
      ansible.builtin.debug:
        var: release
""")
    args = ["-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", str(play)]
    res = ansible_playbook(*args, "--check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not archive.exists()
    res = ansible_playbook(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    revision = build_release(str(checkout), str(checkout / "site")).revision
    assert f'"revision": "{revision}"' in res.stdout
    assert archive.exists() and oct(archive.stat().st_mode & 0o777) == "0o600"


# --- the role's pins ---------------------------------------------------------


def _pins(name: str) -> dict:
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            pkg, version = line.split("#", 1)[0].strip().split("==", 1)
            pins[pkg.lower()] = version
    return pins


def test_role_pins_are_the_tested_ansible():
    defaults = yaml.safe_load((REPO / "roles/drift_check/defaults/main.yml").read_text())
    pins = dict(p.split("==", 1) for p in defaults["drift_check_python_packages"])
    assert pins["ansible-core"] == _pins("requirements-runtime.txt")["ansible-core"]
    assert pins == {k: _pins("requirements.txt")[k] for k in ("ansible-core", "ansible")}
    spec = yaml.safe_load((REPO / "roles/drift_check/meta/argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"]["drift_check_python_packages"]["default"] == [
        f"{k}=={v}" for k, v in pins.items()]


def test_this_checkouts_release_reads_back_its_revision_on_its_own(tmp_path):
    """The release of this checkout, unpacked elsewhere: its scripts/aerie-release (what drift-check
    reports) finds aerie.grid through the release's own collections/ link and prints the shipped revision."""
    release = build_release(str(REPO))
    assert not [f for f in release.files if f.startswith(("inventories/", "molecule/", "tests/", ".cache/"))]
    write_archive(release, str(tmp_path / "r.tar.gz"))
    deployed = tmp_path / "deployed"
    unpack(tmp_path / "r.tar.gz", deployed)
    cli = [sys.executable, str(deployed / "scripts/aerie-release"), "revision"]
    res = subprocess.run(cli, capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert (res.returncode, res.stdout.strip()) == (0, release.revision), res.stderr
    (deployed / "site.yml").write_text("# edited on the management host\n")
    res = subprocess.run(cli, capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert res.returncode == 1 and "modified site.yml" in res.stderr
