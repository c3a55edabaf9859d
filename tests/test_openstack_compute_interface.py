"""openstack_compute: defaults, argument_specs and README describe one interface."""

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parent.parent / "roles" / "openstack_compute"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
SPEC = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
README = (ROLE / "README.md").read_text()


def test_every_default_is_typed_with_the_same_default():
    for name, value in DEFAULTS.items():
        assert name in SPEC, name
        assert SPEC[name].get("default") == value, name


def test_every_option_has_a_default_or_is_required():
    for name, spec in SPEC.items():
        assert name.startswith("openstack_compute_"), name
        assert (name in DEFAULTS) != bool(spec.get("required")), name


def test_secrets_are_required_hidden_and_never_defaulted():
    secrets = {name for name, spec in SPEC.items() if spec.get("no_log")}
    assert secrets == {name for name in SPEC if name.endswith("_password")}
    assert not secrets & DEFAULTS.keys()
    assert all(SPEC[name].get("required") for name in secrets)


def test_readme_table_lists_exactly_the_options():
    rows = re.findall(r"^\| `(openstack_compute_\w+)` \|", README, flags=re.MULTILINE)
    assert sorted(rows) == sorted(SPEC)
