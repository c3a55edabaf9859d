#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Documentation of the aerie_python_floor action; its code: plugins/action/aerie_python_floor.py."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: aerie_python_floor
short_description: Fail on a node whose Python is older than aerie's floor, before any module runs
description:
  - Finds the interpreter Ansible's modules will run on (the configured
    C(ansible_python_interpreter), or the one Ansible's own discovery picks)
    and the interpreter aerie's node programs run (O(programs_interpreter)),
    asks each for its version with a raw command, and fails naming every one
    that is missing or older than O(minimum), with what to do on EL 8.
  - A raw command needs no Python, so the check answers where a module would
    only fail with "Module result deserialization failed".
  - Runs first in the first play of C(site.yml) (role C(aerie_node)), before
    facts are gathered.
options:
  minimum:
    description: The oldest Python aerie supports on nodes (EL 9's 3.9).
    type: str
    default: "3.9"
  programs_interpreter:
    description: The interpreter in the shebang of the programs aerie's roles install on nodes.
    type: path
    default: /usr/bin/python3
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - aerie.grid.aerie_check_action
attributes:
  platform:
    platforms: posix
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Ensure the node's Python is one aerie runs on
  aerie.grid.aerie_python_floor:
  tags: [always]
"""

RETURN = r"""
interpreters:
  description: Each interpreter checked, with the version it answered (V(null) where none answered).
  returned: always
  type: dict
  sample: {/usr/bin/python3: "3.11.2"}
msg:
  description: The versions found, or every interpreter below the floor and what to do.
  returned: always
  type: str
  sample: "/usr/bin/python3.9 is Python 3.9.18, /usr/bin/python3 is Python 3.9.18"
"""
