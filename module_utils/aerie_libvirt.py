"""Pure helpers for libvirt_host_facts: read a hypervisor the way the VM universe needs.

Standard library only. ``host_facts`` takes an open libvirt connection (any
object with libvirt-python's virConnect methods) so unit tests pass one to
libvirt's ``test:///`` driver and the module one to ``qemu:///system``.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import xml.etree.ElementTree as ET


def version_string(number: int) -> str:
    """libvirt packs versions as major * 1,000,000 + minor * 1,000 + release."""
    major, rest = divmod(int(number), 1_000_000)
    minor, release = divmod(rest, 1_000)
    return f"{major}.{minor}.{release}"


def parse_capabilities(xml: str) -> dict:
    """Host architecture and, per guest architecture, the domain types libvirt can run.

    A ``<guest>`` element exists per OS type (hvm, xen, ...); the domain types
    of all OS types for one architecture are merged.
    """
    root = ET.fromstring(xml)
    domain_types: dict[str, set[str]] = {}
    os_types: dict[str, set[str]] = {}
    for guest in root.findall("guest"):
        os_type = (guest.findtext("os_type") or "").strip()
        for arch in guest.findall("arch"):
            name = arch.get("name")
            if not name:
                continue
            types = domain_types.setdefault(name, set())
            types.update(d.get("type") for d in arch.findall("domain") if d.get("type"))
            if os_type:
                os_types.setdefault(name, set()).add(os_type)
    return {
        "host_arch": (root.findtext("host/cpu/arch") or "").strip(),
        "domain_types": {arch: sorted(types) for arch, types in sorted(domain_types.items())},
        "os_types": {arch: sorted(types) for arch, types in sorted(os_types.items())},
    }


def device_status(path: str) -> dict:
    """Presence, kind, permissions and usability (read-write by this user) of a device node."""
    status = {
        "path": path,
        "exists": False,
        "is_char_device": False,
        "mode": None,
        "owner": None,
        "group": None,
        "readable": False,
        "writable": False,
        "usable": False,
    }
    try:
        st = os.stat(path)
    except OSError:
        return status
    status.update(
        exists=True,
        is_char_device=stat.S_ISCHR(st.st_mode),
        mode=f"{stat.S_IMODE(st.st_mode):04o}",
        owner=_name(pwd.getpwuid, st.st_uid),
        group=_name(grp.getgrgid, st.st_gid),
        readable=os.access(path, os.R_OK),
        writable=os.access(path, os.W_OK),
    )
    # condor_vm-gahp opens /dev/kvm read-write; anything else is not KVM.
    status["usable"] = status["is_char_device"] and status["readable"] and status["writable"]
    return status


def _name(lookup, ident: int) -> str:
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def network_facts(conn) -> list[dict]:
    """Every network libvirt knows, persistent (defined) or transient, active or not."""
    found = []
    for net in conn.listAllNetworks():
        try:
            bridge = net.bridgeName()
        except Exception:  # an inactive network may have no bridge yet
            bridge = None
        found.append(
            {
                "name": net.name(),
                "active": bool(net.isActive()),
                "persistent": bool(net.isPersistent()),
                "autostart": bool(net.autostart()),
                "bridge": bridge,
            }
        )
    return sorted(found, key=lambda item: item["name"])


def host_facts(conn, kvm_device: str = "/dev/kvm") -> dict:
    """Everything the condor_vm role decides on, from one libvirt connection."""
    model, memory_mb, cpus, mhz, numa_nodes, _sockets, _cores, _threads = conn.getInfo()
    caps = parse_capabilities(conn.getCapabilities())
    networks = network_facts(conn)
    try:
        hypervisor_version = version_string(conn.getVersion())
    except Exception:  # some drivers do not report one
        hypervisor_version = None
    kvm = device_status(kvm_device)
    kvm_domain_archs = sorted(arch for arch, types in caps["domain_types"].items() if "kvm" in types)
    return {
        "uri": conn.getURI(),
        "libvirt_version": version_string(conn.getLibVersion()),
        "hypervisor_type": conn.getType(),
        "hypervisor_version": hypervisor_version,
        "cpu_model": model,
        "cpu_mhz": mhz,
        "cpu_count": cpus,
        "numa_nodes": numa_nodes,
        "memory_mb": memory_mb,
        "host_arch": caps["host_arch"],
        "domain_types": caps["domain_types"],
        "os_types": caps["os_types"],
        "kvm_domain_archs": kvm_domain_archs,
        "kvm_device": kvm,
        "kvm_usable": bool(kvm_domain_archs) and kvm["usable"],
        "networks": networks,
        "defined_networks": [n["name"] for n in networks if n["persistent"]],
        "active_networks": [n["name"] for n in networks if n["active"]],
    }
