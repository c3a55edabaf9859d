"""Map molecule instances to testinfra hosts: podman:// for containers, ssh:// for VMs.

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


def _molecule_inventory(group: str) -> tuple[Path, dict, list[str]]:
    """(path, content, names of the instances in ``group``) of molecule's inventory."""
    path = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not path:
        raise RuntimeError("MOLECULE_INVENTORY_FILE is unset: run these tests through `molecule verify`")
    inventory = yaml.safe_load(Path(path).read_text()) or {}
    names = inventory_hosts(inventory, group)
    if not names:
        raise RuntimeError(f"no molecule instance in group {group!r} ({path})")
    return Path(path), inventory, names


def hosts(group: str = "all") -> list[str]:
    """podman:// specs for the scenario's instances in ``group``."""
    _path, _inventory, names = _molecule_inventory(group)
    return [f"podman://{name}" for name in names]


def ssh_hosts(group: str = "all") -> list[str]:
    """ssh:// specs for the scenario's instances in ``group`` that molecule reaches over SSH.

    For scenarios on molecule's default driver (VMs): testinfra's ssh://
    backend takes no SSH options in its URL, so this writes an ssh_config in
    molecule's ephemeral directory with what the inventory records for each
    instance (address, port, user, key), no host key checks (each run boots
    a new VM) and one multiplexed connection per instance, which keeps a
    command to a few tenths of a second even on an emulated CPU.
    """
    path, inventory, names = _molecule_inventory(group)
    host_vars: dict[str, dict] = {}
    for sub in inventory.values():
        for name, values in ((sub or {}).get("hosts") or {}).items():
            host_vars.setdefault(name, {}).update(values or {})
    entries = []
    for name in names:
        values = host_vars.get(name, {})
        entries.append(
            f"Host {name}\n"
            f"  HostName {values.get('ansible_host', name)}\n"
            f"  Port {values.get('ansible_port', 22)}\n"
            f"  User {values.get('ansible_user', 'root')}\n"
            + (f"  IdentityFile {values['ansible_private_key_file']}\n  IdentitiesOnly yes\n"
               if values.get("ansible_private_key_file") else "")
            + "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            "  ControlPath /tmp/aerie-testinfra-%C\n  ServerAliveInterval 5\n"
        )
    config = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY") or path.parent.parent) / "testinfra_ssh_config"
    config.write_text("".join(entries))
    return [f"ssh://{name}?ssh_config={config}" for name in names]
