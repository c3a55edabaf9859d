"""The molecule inventory walker maps groups to podman:// hosts."""

import aerie_testinfra
import pytest

INVENTORY = {
    "all": {
        "hosts": {"a": {"ansible_connection": "podman"}, "b": {}, "c": {}},
        "children": {"ungrouped": {"hosts": {}}},
    },
    "squid_servers": {"hosts": {"b": {}}},
    "worker_nodes": {"hosts": {"a": {}}, "children": {"gpu_workers": {"hosts": {"c": {}}}}},
}


def test_all_lists_every_host_once():
    assert aerie_testinfra.inventory_hosts(INVENTORY) == ["a", "b", "c"]


def test_group_includes_child_groups():
    assert aerie_testinfra.inventory_hosts(INVENTORY, "worker_nodes") == ["a", "c"]
    assert aerie_testinfra.inventory_hosts(INVENTORY, "squid_servers") == ["b"]


def test_hosts_reads_molecule_inventory(tmp_path, monkeypatch):
    inv = tmp_path / "inventory.yml"
    inv.write_text("squid_servers:\n  hosts:\n    proxy: {}\n")
    monkeypatch.setenv("MOLECULE_INVENTORY_FILE", str(inv))
    assert aerie_testinfra.hosts("squid_servers") == ["podman://proxy"]
    with pytest.raises(RuntimeError, match="no molecule instance in group 'worker_nodes'"):
        aerie_testinfra.hosts("worker_nodes")


def test_hosts_outside_molecule_says_how_to_run(monkeypatch):
    monkeypatch.delenv("MOLECULE_INVENTORY_FILE", raising=False)
    with pytest.raises(RuntimeError, match="molecule verify"):
        aerie_testinfra.hosts()
