"""aerie as the collection aerie.grid: metadata in step, a build that holds
every plugin and nothing a site must not receive, a valid execution
environment definition and changelog."""

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from aerie_testutil import CONTROLLER_BIN

REPO = Path(__file__).resolve().parent.parent
BIN = CONTROLLER_BIN


def _yaml(name):
    return yaml.safe_load((REPO / name).read_text())


def _pins(name):
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            pkg, version = line.split("==", 1)
            pins[pkg.lower().replace("_", "-")] = version
    return pins


def test_galaxy_yml_names_the_collection_and_matches_the_roles_license():
    galaxy = _yaml("galaxy.yml")
    assert (galaxy["namespace"], galaxy["name"]) == ("aerie", "grid")
    assert re.fullmatch(r"\d+\.\d+\.\d+", galaxy["version"])
    licenses = {_yaml(p.relative_to(REPO))["galaxy_info"]["license"] for p in REPO.glob("roles/*/meta/main.yml")}
    assert licenses == set(galaxy["license"])
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_requirements_yml_lists_exactly_the_collections_the_roles_use():
    used = set()
    for pattern in ("roles/*/tasks/*.yml", "roles/*/handlers/*.yml", "playbooks/*.yml"):
        for path in REPO.glob(pattern):
            used.update(re.findall(r"^\s*-?\s*([a-z_]+\.[a-z_]+)\.[a-z_]+:", path.read_text(), re.M))
    used -= {"ansible.builtin", "ansible.legacy", "aerie.grid"}
    listed = {c["name"] for c in _yaml("requirements.yml")["collections"]}
    assert listed == used
    # galaxy.yml's dependencies are the same set, so an install pulls them.
    assert set(_yaml("galaxy.yml")["dependencies"]) == listed


def test_runtime_requirements_are_the_pins_of_the_tested_set():
    runtime, full = _pins("requirements-runtime.txt"), _pins("requirements.txt")
    assert "ansible-core" in runtime
    assert {k: full.get(k) for k in runtime} == runtime
    # Development tools stay out of the controller's runtime set.
    assert not {"ansible", "molecule", "ansible-lint", "ruff", "pytest", "libvirt-python"} & set(runtime)


def test_changelog_is_current_and_its_fragments_lint_clean():
    version = str(_yaml("galaxy.yml")["version"])
    assert version in _yaml("changelogs/changelog.yaml")["releases"]
    assert f"v{version}".replace(".", "\\.") in (REPO / "CHANGELOG.md").read_text()
    res = subprocess.run([BIN / "antsibull-changelog", "lint"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    res = subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", out, REPO],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    (tarball,) = out.glob("aerie-grid-*.tar.gz")
    return tarball


def test_build_holds_every_plugin_through_its_link(built):
    with tarfile.open(built) as tar:
        members = {m.name: m for m in tar.getmembers()}
    links = {"modules": "library", "module_utils": "module_utils", "doc_fragments": "doc_fragments",
             "action": "action_plugins", "callback": "callback_plugins"}
    for plugin_dir, target in links.items():
        member = members[f"plugins/{plugin_dir}"]
        assert member.issym() and member.linkname == f"../{target}"
        sources = [p.name for p in (REPO / target).glob("*.py")]
        assert sources and all(f"{target}/{name}" in members for name in sources), plugin_dir
    # Filters live in the roles that use them (role-local, unqualified there), and each is
    # linked file by file into plugins/filter for everyone else (FQCN).
    filters = sorted(REPO.glob("roles/*/filter_plugins/*.py"))
    assert {p.name for p in filters} >= {"squid_filters.py", "netacct_filters.py"}
    for path in filters:
        member = members[f"plugins/filter/{path.name}"]
        assert member.issym() and member.linkname == f"../../{path.relative_to(REPO)}", path
        assert str(path.relative_to(REPO)) in members
    for name in ("MANIFEST.json", "meta/runtime.yml", "requirements.yml", "LICENSE", "roles/aerie_node/tasks/main.yml"):
        assert name in members, name


def test_build_leaves_out_the_lab_tests_and_local_state(built):
    with tarfile.open(built) as tar:
        names = tar.getnames()
    left_out = ("inventories/lab", "molecule", "tests", "bench", ".venv", ".cache", ".git", ".config", ".ansible")
    for prefix in left_out:
        assert not [n for n in names if n == prefix or n.startswith(prefix + "/")], prefix
    assert not [n for n in names if "vault" in n or n.endswith((".pem", ".key"))]


def test_execution_environment_definition_is_valid(built, tmp_path):
    # `ansible-builder build` needs the base image from a registry this
    # machine cannot reach; `create` checks the definition and writes the
    # build context, which is what can be proven here.
    shutil.copy(REPO / "execution-environment.yml", tmp_path)
    shutil.copy(built, tmp_path)
    res = subprocess.run([BIN / "ansible-builder", "create", "-f", "execution-environment.yml", "-c", "context"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    build = tmp_path / "context" / "_build"
    assert (build / "collections" / built.name).is_file()
    wanted = {c["name"] for c in yaml.safe_load((build / "requirements.yml").read_text())["collections"]}
    assert {c["name"] for c in _yaml("requirements.yml")["collections"]} <= wanted
