"""Every custom module documents itself: ansible-doc renders it with examples and return values."""

import json
import os
import subprocess

import pytest
from aerie_testutil import REPO

MODULES = sorted(p.stem for p in (REPO / "library").glob("*.py"))


def test_there_are_modules():
    assert len(MODULES) >= 9


@pytest.fixture(scope="module")
def docs():
    # The checkout's ansible.cfg finds the checkout as the collection aerie.grid.
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    out = subprocess.run([str(REPO / ".venv/bin/ansible-doc"), "--json", *(f"aerie.grid.{m}" for m in MODULES)],
                         capture_output=True, text=True, check=True, env=env).stdout
    return {name.removeprefix("aerie.grid."): entry for name, entry in json.loads(out).items()}


@pytest.mark.parametrize("module", MODULES)
def test_module_renders_with_examples_and_return(docs, module):
    entry = docs[module]
    doc = entry["doc"]
    assert doc["short_description"]
    assert doc.get("options"), f"{module} documents no options"
    for name, opt in doc["options"].items():
        assert opt.get("description"), f"{module}: option {name} has no description"
    assert entry["examples"].strip(), f"{module} has no EXAMPLES"
    assert entry["return"] is not None, f"{module} has no RETURN"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("chroot_")])
def test_chroot_modules_share_the_tree_options_from_one_fragment(docs, module):
    options = docs[module]["doc"]["options"]
    assert options["name"]["required"] is True
    assert options["root"]["default"] == "/chroot"
    assert "stable links" in str(options["root"]["description"])
