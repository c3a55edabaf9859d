# Test harness only (molecule scenarios), not part of the aerie collection.
"""containers.podman's connection plugin with module pipelining.

Molecule's podman driver names the connection ``podman``; a plugin of that
name on ``connection_plugins`` (set in .config/molecule/config.yml) is found
before ansible-core's redirect to containers.podman.podman. The upstream
plugin disables pipelining because ``podman exec`` without ``-i`` drops the
module that Ansible pipes on stdin; with ``-i`` every task is one
``podman exec`` instead of a temp directory, a copy, a run and a cleanup.
The scenarios are CPU-bound on podman processes, so this is most of a
scenario's run time (measured in the README's contributing section).
"""

from __future__ import annotations

import shlex

from ansible.plugins.connection import ConnectionBase
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

DOCUMENTATION = r"""
name: podman
short_description: containers.podman.podman with module pipelining (molecule only)
description:
  - Runs tasks in a podman container with C(podman exec -i), modules piped on stdin.
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

    def exec_command(self, cmd, in_data=None, sudoable=False):
        if in_data is None:
            return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        if not self._connected:
            self._connect()
        args = ["exec", "-i"] + (["--user", self.user] if self.user else [])
        return self._podman(args, shlex.split(cmd), in_data)
