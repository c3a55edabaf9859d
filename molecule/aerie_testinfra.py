"""Map molecule instances to testinfra hosts: podman:// for containers, ssh:// for VMs.

testinfra's Ansible backend only short-cuts ssh/docker/lxc connections; for
molecule's podman connection it would run every command through Ansible.
Test modules instead declare::

    import aerie_testinfra
    testinfra_hosts = aerie_testinfra.hosts("squid_servers")

and testinfra talks to the containers directly (``podman exec`` semantics through
nsenter: aerie_nsexec.py, patched into testinfra by conftest.py).
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


REPO = Path(__file__).resolve().parent.parent


def role_tags(*roles: str) -> list[str]:
    """The step tags (``<role>_install``, ``<role>_config``, ``<role>_service``) the roles have, in order.

    Read from each role's tasks/main.yml (the role skeleton, roles/README.md).
    """
    tags: list[str] = []
    for role in roles:
        for task in yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text()) or []:
            for tag in task.get("tags") or []:
                if tag.startswith(f"{role}_") and tag not in tags:
                    tags.append(tag)
    return tags


def run_playbook(playbook: str | os.PathLike, *args: str, limit: str | None = None) -> dict:
    """Run a playbook against the scenario's instances as molecule would; Ansible's JSON report.

    The report gains ``_returncode`` and ``_stderr``.
    """
    import json
    import subprocess
    import sys

    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.cfg"))
    env.update(ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_NOCOLOR="1")
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
            str(playbook), *args]
    if limit:
        argv += ["--limit", limit]
    run = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    try:
        report = json.loads(run.stdout[run.stdout.index("{"):])
    except ValueError:
        report = {"stats": {}, "plays": [], "_stdout": run.stdout}
    report.update(_returncode=run.returncode, _stderr=run.stderr)
    return report


def _snapshot(host, files: list[str], watch: list[str]) -> dict[str, str]:
    """Mode, owner and SHA-256 of every regular file under ``files`` (shell globs), and each watch command's output."""
    # The paths go in unquoted: shell globs expand on the instance.
    listing = host.run(
        "for f in " + " ".join(files) + "; do [ -e \"$f\" ] && find \"$f\" -xdev -type f; done | sort -u"
        " | while read -r f; do printf '%s %s ' \"$(stat -c '%a %U:%G' \"$f\")\" \"$f\"; sha256sum < \"$f\"; done"
    )
    state = {"files": listing.stdout}
    for command in watch:
        state[command] = host.run(command).stdout
    return state


def tags_alone(playbook: str | os.PathLike, tags: list[str], files: list[str], *, group: str = "all",
               watch: list[str] = (), extra_args: list[str] = (), after_each=None) -> list[str]:
    """Run ``playbook`` once per tag alone (``--tags T``) against the converged instances of ``group``.

    Each run must report changed=0 and failed=0 on every host and leave
    every file under ``files`` (paths or shell globs, on each instance)
    byte-identical, with the same mode and owner, and the output of each
    ``watch`` command (a daemon's PID and start time, say) unchanged.
    ``after_each(tag)``, if given, runs after each tag's run (more checks).
    Returns what went wrong, one line each; empty when every tag left the
    instances alone.
    """
    import testinfra

    names = [h.removeprefix("podman://") for h in hosts(group)]
    instances = {name: testinfra.get_host(f"podman://{name}") for name in names}
    before = {name: _snapshot(host, files, list(watch)) for name, host in instances.items()}
    problems: list[str] = []
    for tag in tags:
        report = run_playbook(playbook, "--tags", tag, *extra_args)
        stats = report.get("stats") or {}
        if report["_returncode"] != 0 or not stats:
            problems.append(f"--tags {tag}: ansible-playbook exited {report['_returncode']}: "
                            f"{(report.get('_stdout') or '')[-1500:]}{report['_stderr'][-1500:]}")
        for name in names:
            host_stats = stats.get(name)
            if host_stats is None:
                problems.append(f"--tags {tag}: {name} is not in the play recap")
                continue
            if host_stats.get("changed") or host_stats.get("failures") or host_stats.get("unreachable"):
                changed = [f"{task['task']['name']}" for play in report.get("plays", []) for task in play["tasks"]
                           if (task["hosts"].get(name) or {}).get("changed")
                           or (task["hosts"].get(name) or {}).get("failed")]
                problems.append(f"--tags {tag}: {name} changed={host_stats.get('changed')} "
                                f"failed={host_stats.get('failures')} unreachable={host_stats.get('unreachable')}"
                                f" ({'; '.join(changed)})")
        for name, host in instances.items():
            after = _snapshot(host, files, list(watch))
            for key, value in after.items():
                if value != before[name][key]:
                    problems.append(f"--tags {tag}: {name}: {'rendered files' if key == 'files' else key} changed:"
                                    f"\n  before: {before[name][key]!r}\n  after:  {value!r}")
            before[name] = after
        if after_each:
            after_each(tag)
    return problems
