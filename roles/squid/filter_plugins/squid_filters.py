"""Filters the squid role uses to reject bad input before any change.

Ansible-core has no IP address test without ansible.utils (and netaddr);
the standard library's ipaddress module is enough here.
"""

import ipaddress


def squid_network_problems(values):
    """One message per entry of values that squid must not get as a client network."""
    problems = []
    for value in values or []:
        text = str(value).strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            problems.append(f"{value!r}: {exc}")
            continue
        if network.prefixlen == 0:
            problems.append(f"{value!r}: admits every address (an open proxy)")
    return problems


def squid_port_problems(values):
    """One message per entry of values that is not a port or a low-high port range."""
    problems = []
    for value in values or []:
        parts = str(value).strip().split("-")
        ok = 1 <= len(parts) <= 2 and all(p.isdigit() and 1 <= int(p) <= 65535 for p in parts)
        if ok and len(parts) == 2 and int(parts[0]) > int(parts[1]):
            ok = False
        if not ok:
            problems.append(f"{value!r}: not a port (1-65535) or a low-high range")
    return problems


class FilterModule:
    def filters(self):
        return {
            "squid_network_problems": squid_network_problems,
            "squid_port_problems": squid_port_problems,
        }
