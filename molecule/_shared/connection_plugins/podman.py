# Test harness only (molecule scenarios), not part of the aerie collection.
"""containers.podman's connection plugin with module pipelining, through nsenter.

Molecule's podman driver names the connection ``podman``; a plugin of that
name on ``connection_plugins`` (set in .config/molecule/config.yml) is found
before ansible-core's redirect to containers.podman.podman. The upstream
plugin disables pipelining (``podman exec`` without ``-i`` drops the module
Ansible pipes on stdin) and runs ``podman mount`` for every task. Here every
task is one command entered into the container's namespaces and cgroups
with nsenter (molecule/aerie_nsexec.py): the scenarios are CPU-bound, and a
podman client, conmon and runc per command were a fifth of their CPU.
A remote user or extra podman arguments fall back to the upstream plugin.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

# molecule/ holds the harness's helper modules (as for testinfra's conftest.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import aerie_nsexec  # pylint: disable=wrong-import-position

DOCUMENTATION = r"""
name: podman
short_description: containers.podman.podman with module pipelining, through nsenter (molecule only)
description:
  - Runs tasks in a running podman container, modules piped on stdin, through nsenter
    (molecule/aerie_nsexec.py) rather than C(podman exec -i).
author: aerie maintainers
options:
  remote_addr:
    description: The container's name or ID.
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_podman_host
  remote_user:
    description: User to run as inside the container (podman exec --user).
    vars:
      - name: ansible_user
  podman_executable:
    description: The podman binary.
    default: podman
    vars:
      - name: ansible_podman_executable
    env:
      - name: ANSIBLE_PODMAN_EXECUTABLE
  podman_extra_args:
    description: Extra arguments for every podman call.
    default: ""
    vars:
      - name: ansible_podman_extra_args
    env:
      - name: ANSIBLE_PODMAN_EXTRA_ARGS
  pipelining:
    description: Pipe modules to the interpreter instead of copying them.
    type: boolean
    default: true
"""


class Connection(PodmanConnection):
    transport = "podman"
    has_pipelining = True

    def _upstream(self):
        return bool(self.user or self.get_option("podman_extra_args"))

    def _connect(self):
        if self._upstream():
            return super()._connect()
        ConnectionBase._connect(self)
        self._connected = True
        return self

    def _run(self, argv_text, in_data=None):
        try:
            return aerie_nsexec.run(self._container_id, argv_text, in_data)
        except aerie_nsexec.NotRunning as exc:
            raise AnsibleConnectionFailure(str(exc)) from exc

    def exec_command(self, cmd, in_data=None, sudoable=False):
        if self._upstream():
            if in_data is None:
                return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
            args = ["exec", "-i", "--user", self.user] if self.user else ["exec", "-i"]
            ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
            return self._podman(args, shlex.split(cmd), in_data)
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        # The command is already one shell line (Ansible quoted it for podman
        # exec, which splits it the same way).
        return self._run(cmd, in_data)

    def put_file(self, in_path, out_path):
        if self._upstream():
            return super().put_file(in_path, out_path)
        ConnectionBase.put_file(self, in_path, out_path)
        write = "/bin/sh -c " + shlex.quote('cat > "$0"') + " " + shlex.quote(out_path)
        with open(in_path, "rb") as src:
            rc, _out, err = self._run(write, src.read())
        if rc != 0:
            raise AnsibleError(f"Failed to copy {in_path} to {out_path} in container {self._container_id}: {err!r}")
        return None

    def fetch_file(self, in_path, out_path):
        if self._upstream():
            return super().fetch_file(in_path, out_path)
        ConnectionBase.fetch_file(self, in_path, out_path)
        rc, out, err = self._run("cat " + shlex.quote(in_path))
        if rc != 0:
            raise AnsibleError(f"Failed to fetch {in_path} from container {self._container_id}: {err!r}")
        with open(out_path, "wb") as dest:
            dest.write(out)
        return None
