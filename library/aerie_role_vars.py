#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Documentation of the aerie_role_vars action; its code is the action plugin plugins/action/aerie_role_vars.py."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: aerie_role_vars
short_description: Fail when a variable named after the calling role is one its argument spec does not know
description:
  - Runs as the first task of a role, tagged C(always), before any change.
  - Looks at every variable the host sees (inventory, group_vars, play and role
    vars, extra vars, facts) and fails naming each C(ROLE_) variable that the
    role's C(meta/argument_specs.yml) does not know, with the closest name it
    does know (or the same name in another role, for a variable that moved).
  - Ansible's own argument spec validation only checks the variables a spec
    names, so a misspelt variable would otherwise be ignored silently and the
    default would win.
  - Not judged are C(ROLE__) internals, variables of a role whose name is a
    longer match (C(squid_client_location) belongs to C(squid_client), not to
    C(squid)), and the names listed in O(published).
  - Runs on the controller only; it needs no connection to the host.
options:
  published:
    description:
      - Variables named after the role that the role itself sets for other roles
        (facts, registered results) rather than reads as input.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - aerie.grid.aerie_check_action
attributes:
  platform:
    platforms: all
notes:
  - Call it from a role's tasks; elsewhere it fails, as there is no role to check.
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Ensure every variable named after the role is one its argument spec knows
  aerie.grid.aerie_role_vars:
    # Not input: what the role hands to other roles.
    published: [cgroups_condor_knobs, cgroups_facts]
  tags: [always]
"""

RETURN = r"""
unknown:
  description:
    - Each unknown variable of the role, with the closest known name (V(null) when the role knows none).
  returned: always
  type: dict
  sample: {condor_worker_centrl_manager: condor_worker_central_manager}
msg:
  description: What was found, naming every unknown variable and its closest known name.
  returned: always
  type: str
  sample: "role cgroups: every cgroups_ variable is one the role knows"
"""
