#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: the release of the aerie collection (what the drift check ships), its revision and archive."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: aerie_release
short_description: Name and package the release of a collection for the management host
description:
  - Lists the files of the collection at O(src) that a release ships and
    hashes their content into a revision; with O(archive), writes them as a
    C(.tar.gz) holding also C(RELEASE.json) (every file's sha256) and
    C(REVISION) (written last, so a half-unpacked release has none).
  - An installed collection (C(FILES.json) at O(src)) ships exactly the files
    C(FILES.json) lists, each verified against its sha256 (a modified
    installed file fails the task). A git checkout ships the files git
    tracks (never an untracked file), minus what galaxy.yml's
    C(build_ignore) leaves out of a build. A deployed release (C(RELEASE.json))
    ships the files its manifest lists, verified the same way.
  - Never shipped, whatever the source, C(inventories/) and any path with a
    component that looks like a secret (C(*vault*), C(*secret*), C(*.pem),
    C(*.key), C(*.p12), C(*.pfx), C(*.kdbx), C(id_rsa*), C(id_ed25519*) and the
    other SSH key names, C(.env), C(.env.*)). A C(collections/ansible_collections/NAMESPACE/NAME)
    link back to the release root is added so the release finds itself by FQCN.
  - "Runs where O(src) is, normally the controller (C(delegate_to: localhost))."
version_added: "0.3.0"
options:
  src:
    description: Root of the collection (an installed one, a git checkout or a deployed release).
    type: path
    required: true
  inventory:
    description:
      - Inventory file or directory shipped too, as C(inventory/) in the release
        (its files count in the revision). In a git checkout only its tracked
        files travel; secret-looking files never do.
    type: path
  archive:
    description: Write the release to this C(.tar.gz) (atomically, mode 0600). Omit to only compute the revision.
    type: path
  exclude:
    description: More fnmatch patterns (matched against each path and its parent directories) left out.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The archive is not written; the revision and the file list are computed as usual.
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - aerie (@aerie)
notes:
  - The revision is the first 12 hex digits of a sha256 over every shipped path
    with its content hash and executable bit (or its link target); the same
    content gives the same revision on any host.
"""

EXAMPLES = r"""
- name: Determine the aerie revision being applied
  aerie.grid.aerie_release:
    src: "{{ role_path }}/../.."
    inventory: "{{ inventory_dir }}"
  delegate_to: localhost
  run_once: true
  register: release

- name: Package it on the controller
  aerie.grid.aerie_release:
    src: "{{ role_path }}/../.."
    inventory: "{{ inventory_dir }}"
    archive: "/tmp/aerie-release-{{ release.revision }}.tar.gz"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
revision:
  description: Content hash of the shipped files (12 hex digits).
  type: str
  returned: always
  sample: 86e32ba46c7a
source:
  description: Where the files came from.
  type: str
  returned: always
  choices: [installed, git, release]
files:
  description: Paths the release ships, relative to its root.
  type: list
  elements: str
  returned: always
excluded:
  description: Paths of the source left out, each with the reason.
  type: list
  elements: dict
  returned: always
  sample: [{path: inventories/lab/hosts.yml, reason: inventory}]
archive:
  description: The archive written (or, in check mode, that would be).
  type: str
  returned: when O(archive) is set
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError
from ansible_collections.aerie.grid.plugins.module_utils.aerie_release import build_release, write_archive


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            inventory=dict(type="path"),
            archive=dict(type="path"),
            exclude=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        release = build_release(p["src"], p["inventory"], p["exclude"])
        result = {"changed": False, "revision": release.revision, "source": release.source,
                  "files": release.files, "excluded": release.excluded}
        if p["archive"]:
            result.update(changed=True, archive=p["archive"])
            if not module.check_mode:
                write_archive(release, p["archive"])
        module.exit_json(**result)
    except AerieError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
