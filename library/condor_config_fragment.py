#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: one HTCondor config.d fragment, installed only if HTCondor's parser accepts the result."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: condor_config_fragment
short_description: Install an HTCondor config.d fragment only if HTCondor's own parser accepts it
description:
  - Manages one file in an HTCondor C(LOCAL_CONFIG_DIR) directory (such as C(/etc/condor/config.d)).
  - Before anything changes, loads the complete configuration the node would have (the root config,
    every other fragment, and the candidate in place) with HTCondor's real parser, in a temporary copy
    of the directory. The file is written (atomically) only if the parser accepts it; otherwise the
    task fails with the parser's message and the old fragment stays byte-identical.
  - The parser is C(condor_config_val) where HTCondor is installed, otherwise the C(htcondor2) Python
    bindings (PyPI wheel C(htcondor)) run in a child process by O(python).
  - In check mode the candidate is validated as well; when the validator or the root config does not
    exist yet (a fresh node whose earlier tasks only pretended to install them), the module reports
    the change with RV(validated=false) and a warning instead of failing.
options:
  path:
    description:
      - Absolute path of the fragment. Its directory must be one of the root config's C(LOCAL_CONFIG_DIR)
        entries.
    type: path
    required: true
  content:
    description: Full text of the fragment. Required when O(state=present).
    type: str
  state:
    description: V(present) installs the fragment; V(absent) removes it (after validating the configuration without it).
    type: str
    choices: [present, absent]
    default: present
  root_config:
    description: The node's root config file, the one HTCondor's daemons read first (C(CONDOR_CONFIG)).
    type: path
    default: /etc/condor/condor_config
  validator:
    description:
      - V(auto) uses C(condor_config_val) when it is on the PATH, otherwise V(htcondor2).
    type: str
    choices: [auto, condor_config_val, htcondor2]
    default: auto
  python:
    description:
      - Python interpreter that can import C(htcondor2), used by the V(htcondor2) validator.
      - Defaults to the interpreter running this module.
    type: path
  query:
    description:
      - Knob names whose expanded values to return in RV(params), read from the validated configuration.
    type: list
    elements: str
    default: []
notes:
  - O(mode) defaults to C(0644) for a new file (HTCondor's daemons read config as root, tools as any user).
  - A configuration error in a file this module does not manage also fails the task, because the
    daemons would refuse that configuration too.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    details: The candidate is validated as well (see above).
  diff_mode:
    support: full
  platform:
    platforms: linux
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Ensure the VM universe fragment is installed (HTCondor validates it first)
  condor_config_fragment:
    path: /etc/condor/config.d/60-vm-universe.conf
    content: "{{ lookup('ansible.builtin.template', '60-vm-universe.conf.j2') }}"
    python: /opt/aerie/condor-validator/bin/python
    query: [VM_TYPE, VM_MEMORY]
  notify: condor reconfig

- name: Ensure the retired fragment is gone
  condor_config_fragment:
    path: /etc/condor/config.d/35-old.conf
    state: absent
"""

RETURN = r"""
path:
  description: The fragment's path.
  returned: always
  type: str
validated:
  description: Whether HTCondor's parser accepted the configuration with the candidate in place.
  returned: always
  type: bool
validator:
  description: The validator used (V(condor_config_val) or V(htcondor2)).
  returned: always
  type: str
params:
  description: Expanded values of O(query) in the validated configuration (null when undefined).
  returned: when validated
  type: dict
  sample: {"DAEMON_LIST": "MASTER STARTD", "MOUNT_UNDER_SCRATCH": "\"/tmp,/var/tmp\""}
"""

import os
import shutil
import sys
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils.aerie_condor import Rejected, ValidationError, validate
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import read_text, write_atomic


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "content": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "root_config": {"type": "path", "default": "/etc/condor/condor_config"},
            "validator": {"type": "str", "choices": ["auto", "condor_config_val", "htcondor2"], "default": "auto"},
            "python": {"type": "path"},
            "query": {"type": "list", "elements": "str", "default": []},
        },
        required_if=[("state", "present", ["content"])],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    p = module.params
    path = p["path"]
    if not os.path.isabs(path):
        module.fail_json(msg=f"path must be absolute, got {path!r}")
    config_dir, name = os.path.split(path)
    content = p["content"] if p["state"] == "present" else None
    before = read_text(path, None)
    changed = before != content
    result = {"path": path, "changed": changed, "validated": False, "validator": None,
              "diff": {"before": before or "", "after": content or "", "before_header": path, "after_header": path}}

    validator = p["validator"]
    ccv = module.get_bin_path("condor_config_val")
    if validator == "auto":
        validator = "condor_config_val" if ccv else "htcondor2"
    result["validator"] = validator
    program = ccv if validator == "condor_config_val" else (p["python"] or sys.executable)

    missing = None
    if not program or not os.path.exists(program):
        missing = f"the {validator} validator ({program or 'condor_config_val'}) does not exist"
    elif not os.path.isfile(p["root_config"]):
        missing = f"root config {p['root_config']} does not exist"
    elif content is not None and not os.path.isdir(config_dir):
        missing = f"directory {config_dir} does not exist"
    if missing:
        if not module.check_mode:
            module.fail_json(msg=f"cannot validate {path}: {missing}", **result)
        module.warn(f"{path} not validated in check mode: {missing}")
    else:
        def run(argv, env):
            return module.run_command(argv, environ_update=env)

        workdir = tempfile.mkdtemp(prefix="aerie-condor-", dir=module.tmpdir)
        try:
            result["params"] = validate(run, validator, program, p["root_config"], config_dir, name,
                                        content, workdir, p["query"])
        except Rejected as exc:
            # Nothing was written: a refused change is no change.
            result["changed"] = False
            module.fail_json(msg=f"HTCondor's parser rejected the configuration with {path}"
                             f"{' removed' if content is None else ''}: {exc}", **result)
        except ValidationError as exc:
            module.fail_json(msg=f"cannot validate {path}: {exc}", **result)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        result["validated"] = True

    if changed and not module.check_mode:
        if content is None:
            os.unlink(path)
        else:
            # An old file keeps its mode; owner, group and an asked-for mode follow below.
            mode = os.stat(path).st_mode & 0o7777 if before is not None else 0o644
            write_atomic(path, content, mode=mode)
    if content is not None and os.path.exists(path):
        file_args = module.load_file_common_arguments(module.params)
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
