"""condor_vm's KVM decision and VM_MEMORY, run by Ansible against libvirt's test driver.

The test driver offers only the "test" domain type, never kvm: the node the
role must refuse, or run without the VM universe when the site says so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from test_libvirt_host_facts import run_ansible

PLAYBOOK = """
- hosts: all
  gather_facts: true
  gather_subset: [min, hardware]
  tasks:
    - name: Run the role's KVM decision
      ansible.builtin.include_role:
        name: condor_vm
        tasks_from: kvm.yml
      vars:
        __condor_vm_libvirt_present: true
        condor_vm_libvirt_uri: test:///default
"""


def decide(tmp_path: Path, groups: list[str], **extra: object) -> dict[str, dict]:
    """Run the decision; return each task's result by task name."""
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"hosts": {"node": host}, "children": {g: {"hosts": {"node": {}}} for g in groups}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    inventory_file, play = str(tmp_path / "inventory.json"), str(tmp_path / "play.yml")
    out = run_ansible(tmp_path, "ansible-playbook", "-i", inventory_file, "-e", json.dumps(extra), play)
    # Task names come as "condor_vm : <name>" for the role's tasks.
    tasks = {t["task"]["name"].split(" : ")[-1]: t["hosts"].get("node", {}) for t in out["plays"][0]["tasks"]}
    tasks["memtotal_mb"] = {"value": tasks["Gathering Facts"]["ansible_facts"]["ansible_memtotal_mb"]}
    return tasks


def test_kvm_required_but_absent_fails_with_the_reason(tmp_path):
    tasks = decide(tmp_path, ["worker_nodes"], condor_vm_kvm_required=True)
    failed = tasks["Fail where KVM is required but not usable"]
    assert failed["failed"] is True
    assert "KVM is not usable on node" in failed["msg"]
    assert "for no architecture" in failed["msg"]
    assert '{"i686": ["test"]}' in failed["msg"]
    assert "condor_vm_kvm_required: false" in failed["msg"]


def test_kvm_absent_and_optional_turns_the_vm_universe_off_and_says_so(tmp_path):
    tasks = decide(tmp_path, ["worker_nodes"], condor_vm_kvm_required=False)
    decision = tasks["Decide whether this node runs the VM universe"]["ansible_facts"]
    assert decision["__condor_vm_enabled"] is False
    said = tasks["Say that the VM universe stays off"]
    assert "The VM universe stays off on node" in said["msg"]
    assert tasks["Fail where KVM is required but not usable"].get("skipped") is True
    # Not a compute node: only the host reserve comes off.
    assert int(decision["__condor_vm_memory_mb"]) == tasks["memtotal_mb"]["value"] - 2048


def test_compute_nodes_also_keep_novas_reservation_out_of_vm_memory(tmp_path):
    # The openstack_compute role's setting is nova's reservation.
    nova = {"openstack_compute_reserved_host_memory_mb": 1024}
    tasks = decide(tmp_path, ["worker_nodes", "compute_nodes"], condor_vm_kvm_required=False, **nova)
    decision = tasks["Decide whether this node runs the VM universe"]["ansible_facts"]
    assert int(decision["__condor_vm_memory_mb"]) == tasks["memtotal_mb"]["value"] - 2048 - 1024
