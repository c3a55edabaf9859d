"""One memory budget (issue 18) on a node that is an HTCondor VM-universe node and a nova-compute node.

Host memory M = R (openstack_compute_reserved_host_memory_mb, the host) + V
(condor_vm_memory_mb, HTCondor's VM_MEMORY) + nova's share, planned as
(M - R - V) x ram_allocation_ratio. The arithmetic lives once, in
plugins/filter/memory_filters.py (aerie.grid.shared_memory_problems); both
roles check it from the same inventory values. Here: the filter itself, then
ansible-playbook running openstack_compute's assert.yml and condor_vm's
assert.yml and kvm.yml (and the whole openstack_compute role for refusals) on hosts that
are this machine with a fixed memtotal_mb.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aerie_testutil import CONTROLLER_BIN, isolated_ansible_env
from ansible_collections.aerie.grid.plugins.filter.memory_filters import (
    FilterModule,
    nova_reserved_host_memory_mb,
    shared_memory_problems,
)

M = 32768  # MiB, the hosts' memtotal_mb in the playbook runs below
R, V = 2048, 16384

# --- the filter's arithmetic ------------------------------------------------------------------


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"shared_memory_problems", "nova_reserved_host_memory_mb"}


@pytest.mark.parametrize(("m", "r", "v", "ratio"), [
    (M, R, V, 1.0),          # nova gets exactly the rest
    (M, R, V, 0.5),          # nova plans less than the rest
    (M, 0, M - 1, 1.0),      # one MiB for nova still fits
    ("32768", "2048", "16384", "1.0"),  # as templates may hand them over
])
def test_layouts_that_fit_have_no_problems(m, r, v, ratio):
    assert shared_memory_problems(m, r, v, ratio) == []


def test_overcommit_names_every_number_and_the_variables():
    (msg,) = shared_memory_problems(M, R, V, 1.5)
    plan = (M - R - V) * 1.5  # 21504
    # R + V + (M - R - V) x ratio, each number, nova's plan and the sum that exceeds M.
    assert f"{R} + {V} + ({M} - {R} - {V}) x 1.5 = {R} + {V} + {plan:.0f} = {R + V + plan:.0f} MiB > M = {M} MiB" in msg
    for name in ("openstack_compute_reserved_host_memory_mb", "condor_vm_memory_mb",
                 "openstack_compute_ram_allocation_ratio"):
        assert name in msg
    assert "set openstack_compute_ram_allocation_ratio to 1.0 or less" in msg


def test_any_ratio_above_one_overcommits_when_nova_has_a_share():
    assert shared_memory_problems(M, R, V, 1.0) == []
    (msg,) = shared_memory_problems(M, R, V, 1.01)
    # (32768 - 2048 - 16384) x 1.01 = 14479.36: fractions are shown, to two decimals.
    assert "x 1.01 = 2048 + 16384 + 14479.36 = 32911.36 MiB > M = 32768 MiB" in msg


@pytest.mark.parametrize(("r", "v"), [(R, M - R), (R, M), (M, 1)])
def test_nothing_left_for_nova_is_refused(r, v):
    (msg,) = shared_memory_problems(M, r, v, 1.0)
    assert msg.startswith(f"nothing left for nova: M - R - V = {M} - {r} - {v} = {M - r - v} MiB")
    assert "lower condor_vm_memory_mb or openstack_compute_reserved_host_memory_mb" in msg


@pytest.mark.parametrize("v", [None, "", "None"])
def test_unset_vm_memory_is_refused_with_the_variable_to_set(v):
    (msg,) = shared_memory_problems(M, R, v, 1.0)
    assert msg.startswith("condor_vm_memory_mb is not set")
    assert "in the inventory" in msg


@pytest.mark.parametrize(("args", "expected"), [
    ((M, R, V, 0), "openstack_compute_ram_allocation_ratio must be above 0, got 0"),
    ((M, R, V, -1.5), "openstack_compute_ram_allocation_ratio must be above 0, got -1.5"),
    ((M, R, V, "lots"), "openstack_compute_ram_allocation_ratio must be a number, got 'lots'"),
    ((M, R, 0, 1.0), "condor_vm_memory_mb must be above 0, got 0"),
    ((M, -1, V, 1.0), "openstack_compute_reserved_host_memory_mb must not be negative, got -1"),
    ((M, True, V, 1.0), "openstack_compute_reserved_host_memory_mb must be a number, got True"),
    ((None, R, V, 1.0), "the host's memory (ansible_facts.memtotal_mb) is unknown"),
])
def test_bad_values_are_named(args, expected):
    assert any(p.startswith(expected) for p in shared_memory_problems(*args)), shared_memory_problems(*args)


def test_novas_reservation_is_the_host_plus_htcondor_on_a_shared_node():
    assert nova_reserved_host_memory_mb(R, V) == R + V
    assert nova_reserved_host_memory_mb("2048", "16384") == R + V
    assert nova_reserved_host_memory_mb(R, None) == R
    assert nova_reserved_host_memory_mb(R) == R


# --- the roles, run by ansible-playbook --------------------------------------------------------

NOVA_SECRETS = {
    "openstack_compute_rabbit_host": "controller",
    "openstack_compute_rabbit_password": "rabbit-secret",
    "openstack_compute_nova_password": "nova-secret",
    "openstack_compute_placement_password": "placement-secret",
    "openstack_compute_neutron_password": "neutron-secret",
    "openstack_compute_my_ip": "192.0.2.10",
}
BOTH = ["worker_nodes", "compute_nodes"]
# host: (groups, host vars). Every host is this machine (connection local).
HOSTS = {
    "shared_fits": (BOTH, {"condor_vm_memory_mb": V, "openstack_compute_reserved_host_memory_mb": R}),
    "shared_overcommit": (BOTH, {"condor_vm_memory_mb": V, "openstack_compute_reserved_host_memory_mb": R,
                                 "openstack_compute_ram_allocation_ratio": 1.5}),
    "shared_nothing_left": (BOTH, {"condor_vm_memory_mb": M - R, "openstack_compute_reserved_host_memory_mb": R}),
    "shared_vm_memory_unset": (BOTH, {"openstack_compute_reserved_host_memory_mb": R}),
    "shared_vm_off_recorded": (BOTH, {"fake_local": {"condor_vm": {"vm_universe": False, "vm_memory_mb": 1}}}),
    "compute_only": (["compute_nodes"], {"openstack_compute_ram_allocation_ratio": 1.5}),
    "ratio_zero": (["compute_nodes"], {"openstack_compute_ram_allocation_ratio": 0}),
    "worker_only": (["worker_nodes"], {}),
}
PLAYBOOK = """
- name: Fix the hosts' memory (and condor_vm's local fact where given)
  hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.set_fact:
        memtotal_mb: {M}
        cacheable: true
    - ansible.builtin.set_fact:
        ansible_local: "{{{{ fake_local }}}}"
        cacheable: true
      when: fake_local is defined

- name: openstack_compute's argument checks
  hosts: compute_nodes
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: openstack_compute
        tasks_from: assert.yml
        public: true
    - name: Show nova.conf's memory options
      ansible.builtin.debug:
        msg:
          reserved_host_memory_mb: "{{{{ __openstack_compute_config['DEFAULT']['reserved_host_memory_mb'] }}}}"
          ram_allocation_ratio: "{{{{ __openstack_compute_config['DEFAULT']['ram_allocation_ratio'] }}}}"

- name: condor_vm's KVM decision and memory check (its argument checks first, as in the role)
  # (shared_vm_off_recorded fakes condor_vm's record of the VM universe off; condor_vm itself decides anew)
  hosts: worker_nodes:!shared_vm_off_recorded
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: condor_vm
        tasks_from: assert.yml
        public: true
    - ansible.builtin.include_role:
        name: condor_vm
        tasks_from: kvm.yml
      vars:
        # No libvirt to ask: the decision assumes KVM, as on a fresh node in check mode.
        __condor_vm_libvirt_present: false
"""


def _run(tmp_path: Path, playbook: str, hosts: dict, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run playbook against hosts; return the run and each host's results by task name, play by play."""
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **NOVA_SECRETS}
    children: dict[str, dict] = {}
    for host, (groups, _) in hosts.items():
        for group in groups:
            children.setdefault(group, {"hosts": {}})["hosts"][host] = {}
    inventory = {"all": {"vars": common, "hosts": {h: hv for h, (_, hv) in hosts.items()}, "children": children}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(playbook)
    run = subprocess.run(
        [str(CONTROLLER_BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory.json"), *args,
         str(tmp_path / "play.yml")],
        capture_output=True, text=True, env=isolated_ansible_env(tmp_path, "forks = 10\n"), cwd=tmp_path,
        timeout=300, check=False,
    )
    out = json.loads(run.stdout)
    results: dict[str, dict[str, dict]] = {}
    for play in out["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"].split(" : ")[-1]
            for host, result in task["hosts"].items():
                results.setdefault(host, {})[name] = result
    return run, results


@pytest.fixture(scope="module")
def roles_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("memory_budget"), PLAYBOOK.format(M=M), HOSTS)


NOVA_CHECK = "Assert HTCondor's VM memory, the host's reservation and nova's plan fit in the host's memory"
CONDOR_CHECK = "Check HTCondor's VM memory, the host's reservation and nova's plan on a compute node"
SHOW = "Show nova.conf's memory options"


def _failed(results, host):
    failed = {name: r["msg"] for name, r in results[host].items() if r.get("failed")}
    assert len(failed) == 1, results[host]
    return failed.popitem()


def test_a_shared_node_that_fits_passes_both_roles_and_nova_reserves_the_host_plus_htcondor(roles_run):
    _, results = roles_run
    host = results["shared_fits"]
    assert not [name for name, r in host.items() if r.get("failed")], host
    assert host[NOVA_CHECK].get("skipped") is not True
    assert host[CONDOR_CHECK].get("skipped") is not True
    assert host[SHOW]["msg"] == {"reserved_host_memory_mb": R + V, "ram_allocation_ratio": 1.0}
    decision = host["Decide whether this node runs the VM universe"]["ansible_facts"]
    assert int(decision["__condor_vm_memory_mb"]) == V


def test_openstack_compute_refuses_an_overcommitted_shared_node_naming_every_number(roles_run):
    _, results = roles_run
    name, msg = _failed(results, "shared_overcommit")
    assert name == NOVA_CHECK
    assert msg.startswith("shared_overcommit is an HTCondor VM-universe node and a nova-compute node: ")
    assert f"{R} + {V} + ({M} - {R} - {V}) x 1.5 = {R} + {V} + 21504 = 39936 MiB > M = {M} MiB" in msg
    assert "set openstack_compute_ram_allocation_ratio to 1.0 or less" in msg
    # Refused in the argument checks: play 3 (condor_vm) never sees the host.
    assert CONDOR_CHECK not in results["shared_overcommit"]


def test_both_roles_refuse_a_layout_with_nothing_left_for_nova(tmp_path, roles_run):
    _, results = roles_run
    name, msg = _failed(results, "shared_nothing_left")
    assert name == NOVA_CHECK
    assert f"nothing left for nova: M - R - V = {M} - {R} - {M - R} = 0 MiB" in msg
    # condor_vm alone (its play only) refuses the same layout, and the overcommit, with the same words.
    hosts = {h: HOSTS[h] for h in ("shared_nothing_left", "shared_overcommit")}
    _, alone = _run(tmp_path, _condor_only_playbook(), hosts)
    name, condor_msg = _failed(alone, "shared_nothing_left")
    assert name == CONDOR_CHECK
    assert f"nothing left for nova: M - R - V = {M} - {R} - {M - R} = 0 MiB" in condor_msg
    assert "(compute_nodes)" in condor_msg and "condor_vm_nova_reserved_mb" in condor_msg
    name, condor_msg = _failed(alone, "shared_overcommit")
    assert name == CONDOR_CHECK
    # The mirror condor_vm_nova_ram_allocation_ratio follows openstack_compute_ram_allocation_ratio.
    assert f"({M} - {R} - {V}) x 1.5 = {R} + {V} + 21504 = 39936 MiB > M = {M} MiB" in condor_msg


def _condor_only_playbook() -> str:
    play = PLAYBOOK.format(M=M)
    setup, rest = play.split("- name: openstack_compute's argument checks", 1)
    return setup + "- name: condor_vm's KVM decision" + rest.split("- name: condor_vm's KVM decision", 1)[1]


def test_an_unset_vm_memory_on_a_shared_node_is_refused_by_both_roles(roles_run):
    _, results = roles_run
    name, msg = _failed(results, "shared_vm_memory_unset")
    assert name == NOVA_CHECK
    assert "condor_vm_memory_mb is not set" in msg


def test_condor_vm_refuses_an_unset_vm_memory_on_a_compute_node(tmp_path):
    _, results = _run(tmp_path, _condor_only_playbook(), {"shared_vm_memory_unset": HOSTS["shared_vm_memory_unset"]})
    name, msg = _failed(results, "shared_vm_memory_unset")
    assert name == CONDOR_CHECK
    assert "condor_vm_memory_mb is not set" in msg and "in the inventory" in msg


def test_a_worker_whose_vm_universe_is_off_is_a_plain_compute_node(roles_run):
    _, results = roles_run
    host = results["shared_vm_off_recorded"]
    assert not [name for name, r in host.items() if r.get("failed")], host
    assert host[NOVA_CHECK].get("skipped") is True
    assert host[SHOW]["msg"] == {"reserved_host_memory_mb": 2048, "ram_allocation_ratio": 1.0}


def test_a_plain_compute_node_keeps_novas_own_overcommit(roles_run):
    _, results = roles_run
    host = results["compute_only"]
    assert host[NOVA_CHECK].get("skipped") is True
    assert host[SHOW]["msg"] == {"reserved_host_memory_mb": 2048, "ram_allocation_ratio": 1.5}


def test_a_ratio_at_or_below_zero_is_refused(roles_run):
    _, results = roles_run
    name, msg = _failed(results, "ratio_zero")
    assert name == "Assert nova's RAM allocation ratio is above 0"
    assert "openstack_compute_ram_allocation_ratio must be above 0 (got 0)" in msg


def test_a_plain_worker_keeps_todays_vm_memory(roles_run):
    _, results = roles_run
    host = results["worker_only"]
    assert host[CONDOR_CHECK].get("skipped") is True
    decision = host["Decide whether this node runs the VM universe"]["ansible_facts"]
    assert int(decision["__condor_vm_memory_mb"]) == M - 2048


FULL_ROLE = """
- name: Fix the hosts' memory
  hosts: all
  gather_facts: true
  gather_subset: [min]
  tasks:
    - ansible.builtin.set_fact:
        memtotal_mb: {M}
        cacheable: true

- name: The whole openstack_compute role, in check mode
  hosts: compute_nodes
  gather_facts: false
  roles:
    - role: openstack_compute
"""


def test_the_whole_role_refuses_before_any_step_that_could_change_the_node(tmp_path):
    hosts = {h: HOSTS[h] for h in ("shared_overcommit", "shared_nothing_left")}
    hosts["ratio_not_a_float"] = (["compute_nodes"], {"openstack_compute_ram_allocation_ratio": "lots"})
    run, results = _run(tmp_path, FULL_ROLE.format(M=M), hosts, "--check")
    assert run.returncode != 0
    for host in ("shared_overcommit", "shared_nothing_left"):
        name, _ = _failed(results, host)
        assert name == NOVA_CHECK
        assert not [n for n, r in results[host].items() if r.get("changed")]
    name, msg = _failed(results, "ratio_not_a_float")
    assert "openstack_compute_ram_allocation_ratio" in msg and "float" in msg
