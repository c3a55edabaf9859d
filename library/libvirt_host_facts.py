#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: report a libvirt hypervisor's capabilities as facts."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_host_facts
short_description: Report what a libvirt host can run, for HTCondor's VM universe
description:
  - Connects to libvirt with libvirt-python and reports the hypervisor's
    capabilities (the domain types, such as C(kvm) and C(qemu), per guest
    architecture), the libvirt and hypervisor versions, host memory and CPU
    count, and the defined and active virtual networks.
  - Also reports whether the KVM device (default C(/dev/kvm)) exists, its
    owner, group and mode, and whether the connecting user can open it
    read-write, which is what C(condor_vm-gahp) needs.
  - Read-only; never reports a change, so it runs unchanged in check mode.
version_added: "0.1.0"
options:
  uri:
    description:
      - libvirt connection URI. C(test:///default) needs no daemon.
    type: str
    default: qemu:///system
  kvm_device:
    description:
      - Path of the KVM device node to examine.
    type: path
    default: /dev/kvm
requirements:
  - libvirt-python (Debian C(python3-libvirt), EL C(python3-libvirt)) on the target
notes:
  - Fails when libvirt cannot be reached; probe with C(failed_when) or
    C(ignore_errors) when libvirtd may not be installed yet.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: Reads only; reports the same in check mode.
  diff_mode:
    support: N/A
    details: Changes nothing, so there is no diff.
  facts:
    support: full
  platform:
    platforms: linux
author:
  - aerie (@aerie)
"""

EXAMPLES = r"""
- name: Read the hypervisor's capabilities
  libvirt_host_facts:

- name: Refuse the VM universe without KVM
  ansible.builtin.assert:
    that: ansible_facts.libvirt_host.kvm_usable
    fail_msg: >-
      KVM is not usable on {{ inventory_hostname }}: domain types
      {{ ansible_facts.libvirt_host.domain_types }}, /dev/kvm
      {{ ansible_facts.libvirt_host.kvm_device }}

- name: Inspect a libvirt without a daemon (tests)
  libvirt_host_facts:
    uri: test:///default
"""

RETURN = r"""
ansible_facts:
  description: Facts about the libvirt host.
  returned: always
  type: dict
  contains:
    libvirt_host:
      description: What the hypervisor reports.
      returned: always
      type: dict
      contains:
        uri:
          description: Canonical URI of the connection.
          type: str
          sample: qemu:///system
        libvirt_version:
          description: Version of libvirt behind the connection (the daemon's for remote URIs).
          type: str
          sample: 9.0.0
        hypervisor_type:
          description: Driver name.
          type: str
          sample: QEMU
        hypervisor_version:
          description: Hypervisor version, null when the driver reports none.
          type: str
          sample: 7.2.0
        cpu_model:
          description: CPU model (architecture) from virNodeGetInfo.
          type: str
          sample: x86_64
        cpu_mhz:
          description: CPU frequency in MHz.
          type: int
        cpu_count:
          description: Active logical CPUs.
          type: int
          sample: 16
        numa_nodes:
          description: NUMA cells.
          type: int
        memory_mb:
          description: Host memory in MiB.
          type: int
          sample: 24040
        host_arch:
          description: Host architecture from the capabilities.
          type: str
          sample: x86_64
        domain_types:
          description: Per guest architecture, the domain types libvirt can run.
          type: dict
          sample: {"x86_64": ["kvm", "qemu"], "i686": ["kvm", "qemu"]}
        os_types:
          description: Per guest architecture, the guest OS types (hvm, xen, ...).
          type: dict
          sample: {"x86_64": ["hvm"]}
        kvm_domain_archs:
          description: Architectures for which libvirt offers the kvm domain type.
          type: list
          elements: str
          sample: ["i686", "x86_64"]
        kvm_device:
          description: The KVM device node.
          type: dict
          sample:
            path: /dev/kvm
            exists: true
            is_char_device: true
            mode: "0660"
            owner: root
            group: kvm
            readable: true
            writable: true
            usable: true
        kvm_usable:
          description: libvirt offers kvm for some architecture and the device opens read-write for this user.
          type: bool
        networks:
          description: Every network with its state and bridge.
          type: list
          elements: dict
          sample: [{"name": "default", "active": true, "persistent": true, "autostart": true, "bridge": "virbr0"}]
        defined_networks:
          description: Names of persistent (defined) networks.
          type: list
          elements: str
        active_networks:
          description: Names of running networks.
          type: list
          elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.aerie.grid.plugins.module_utils.aerie_libvirt import host_facts

try:
    import libvirt
except ImportError:
    libvirt = None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "uri": {"type": "str", "default": "qemu:///system"},
            "kvm_device": {"type": "path", "default": "/dev/kvm"},
        },
        supports_check_mode=True,
    )
    if libvirt is None:
        module.fail_json(msg=missing_required_lib("libvirt-python (python3-libvirt)"))
    uri = module.params["uri"]
    # Without this, libvirt prints every error to stderr before raising it.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        module.fail_json(msg=f"cannot connect to libvirt at {uri}: {exc}")
    try:
        facts = host_facts(conn, module.params["kvm_device"])
    except libvirt.libvirtError as exc:
        module.fail_json(msg=f"libvirt at {uri} did not answer: {exc}")
    finally:
        conn.close()
    module.exit_json(changed=False, ansible_facts={"libvirt_host": facts})


if __name__ == "__main__":
    main()
