"""Map molecule instances to testinfra hosts on the podman:// backend.

testinfra's Ansible backend only short-cuts ssh/docker/lxc connections; for
molecule's podman connection it would run every command through Ansible.
Test modules instead declare::

    import aerie_testinfra
    testinfra_hosts = aerie_testinfra.hosts("squid_servers")

and testinfra talks to the containers with ``podman exec`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import yaml


def _walk(group: dict | None, name: str, want: str, inside: bool) -> Iterator[str]:
    group = group or {}
    inside = inside or name == want
    if inside:
        yield from (group.get("hosts") or {})
    for child, sub in (group.get("children") or {}).items():
        yield from _walk(sub, child, want, inside)


def inventory_hosts(inventory: dict, group: str = "all") -> list[str]:
    """Names of the hosts in ``group`` (recursively) of a YAML inventory."""
    found: list[str] = []
    for name, sub in inventory.items():
        for host in _walk(sub, name, group, group == "all"):
            if host not in found:
                found.append(host)
    return sorted(found)


def hosts(group: str = "all") -> list[str]:
    """podman:// specs for the scenario's instances in ``group``."""
    path = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not path:
        raise RuntimeError("MOLECULE_INVENTORY_FILE is unset: run these tests through `molecule verify`")
    inventory = yaml.safe_load(Path(path).read_text()) or {}
    names = inventory_hosts(inventory, group)
    if not names:
        raise RuntimeError(f"no molecule instance in group {group!r} ({path})")
    return [f"podman://{name}" for name in names]
