"""Bad squid role input fails before any change, and the message names the variable.

One ansible-playbook run (check mode, localhost, no facts) tries every case
in a block/rescue and prints what failed; the role never reaches a task that
could touch the machine, and the recap proves nothing changed.
"""

import json
import re

import pytest
import yaml
from aerie_testutil import ansible_playbook, load_script

filters = load_script("roles/squid/filter_plugins/squid_filters.py", "squid_filters")

GOOD = {"squid_allowed_networks": ["10.89.60.0/24", "2001:db8::/64", "192.0.2.7"]}

CASES = {
    "ok": ({}, None),
    "missing_networks": ({"squid_allowed_networks": None}, "squid_allowed_networks"),
    "empty_networks": ({"squid_allowed_networks": []}, "squid_allowed_networks is empty"),
    "invalid_cidr": (
        {"squid_allowed_networks": ["10.89.60.0/24", "10.89.600.0/24"]},
        "squid_allowed_networks has invalid entries: '10.89.600.0/24'",
    ),
    "host_bits": ({"squid_allowed_networks": ["10.89.60.1/24"]}, "squid_allowed_networks has invalid entries"),
    "world": ({"squid_allowed_networks": ["0.0.0.0/0"]}, "admits every address"),
    "relative_cache_path": (
        {"squid_cache_dir_path": "var/spool/squid"},
        "squid_cache_dir_path must be an absolute path",
    ),
    "cache_size_zero": ({"squid_cache_dir_size_mb": 0}, "squid_cache_dir_size_mb must be at least 1"),
    "cache_type": ({"squid_cache_dir_type": "zfs"}, "squid_cache_dir_type"),
    "safe_ports": ({"squid_safe_ports": ["80", "70000"]}, "squid_safe_ports has invalid entries: '70000'"),
    "memory_object": ({"squid_maximum_object_size_in_memory_mb": 2048}, "squid_maximum_object_size_in_memory_mb"),
}


def _playbook():
    tasks = []
    for case, (overrides, _) in CASES.items():
        role_vars = {**GOOD, **overrides}
        role_vars = {k: v for k, v in role_vars.items() if v is not None}
        include = {"name": "squid", "tasks_from": "validate"} if case == "ok" else {"name": "squid"}
        tasks.append(
            {
                "name": f"Case {case}",
                "block": [
                    {"ansible.builtin.include_role": include, "vars": role_vars},
                    {"ansible.builtin.debug": {"msg": f"AERIE-CASE {case} :: passed"}},
                ],
                "rescue": [
                    {
                        "ansible.builtin.debug": {
                            "msg": f"AERIE-CASE {case} :: {{{{ ansible_failed_result.msg | default('') }}}}"
                        }
                    }
                ],
            }
        )
    return [{"name": "Bad squid input", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": tasks}]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    path = tmp_path_factory.mktemp("squid") / "play.yml"
    path.write_text(yaml.safe_dump(_playbook(), sort_keys=False))
    res = ansible_playbook("-i", "localhost,", "--check", str(path))
    messages = {}
    for match in re.finditer(r'"msg": "AERIE-CASE (\w+) :: (.*)"', res.stdout):
        messages[match.group(1)] = json.loads(f'"{match.group(2)}"')
    return res, messages


@pytest.mark.parametrize("case", [c for c in CASES if c != "ok"])
def test_bad_input_fails_naming_the_variable(outcome, case):
    res, messages = outcome
    assert case in messages, res.stdout[-3000:] + res.stderr[-2000:]
    assert CASES[case][1] in messages[case]


def test_good_input_passes_validation(outcome):
    res, messages = outcome
    assert messages.get("ok") == "passed", res.stdout[-3000:]


def test_nothing_changed(outcome):
    res, _ = outcome
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", res.stdout), res.stdout[-2000:]


def test_network_filter_messages():
    assert filters.squid_network_problems(["10.0.0.0/8", "::1", "fd00::/8"]) == []
    problems = filters.squid_network_problems(["10.0.0.0/33", "::/0", "squid.example.org"])
    assert len(problems) == 3
    assert "admits every address" in problems[1]


def test_port_filter():
    assert filters.squid_port_problems(["80", "1025-65535"]) == []
    assert len(filters.squid_port_problems(["0", "65536", "90-80", "http", "1-2-3"])) == 5
