"""squid_client_location's default follows the squid_servers group (the interface the HTCondor role reads)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aerie_testutil import REPO

PLAY = [
    {
        "name": "Evaluate the squid_client default",
        "hosts": "worker",
        "connection": "local",
        "gather_facts": False,
        "vars_files": [str(REPO / "roles" / "squid_client" / "defaults" / "main.yml")],
        "tasks": [{"ansible.builtin.debug": {"msg": "LOCATION={{ squid_client_location }}"}}],
    }
]


def _inventory(squid_hosts):
    return {
        "all": {
            "hosts": {"worker": {"ansible_python_interpreter": sys.executable}},
            "children": {"squid_servers": {"hosts": squid_hosts}} if squid_hosts is not None else {},
        }
    }


@pytest.mark.parametrize(
    ("squid_hosts", "expected"),
    [
        (None, "UNAVAILABLE"),
        ({}, "UNAVAILABLE"),
        ({"squid01.example.org": {}}, "squid01.example.org:3128"),
        ({"sq1": {"ansible_host": "10.89.60.21", "squid_port": 3130}, "sq2": {}}, "10.89.60.21:3130"),
        ({"sq1": {"ansible_host": "2001:db8::21"}}, "[2001:db8::21]:3128"),
    ],
)
def test_default_location(tmp_path, squid_hosts, expected):
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(_inventory(squid_hosts)))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    res = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "inventory.yml"),
         str(tmp_path / "play.yml")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.findall(r"LOCATION=(\S+?)\"?$", res.stdout, re.M) == [expected], res.stdout
