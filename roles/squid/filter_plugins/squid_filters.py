"""Filters the squid role uses to reject bad input before any change.

Ansible-core has no IP address test without ansible.utils (and netaddr);
the standard library's ipaddress module is enough here.
"""

import ipaddress
import re

# cache.log's prefix: "2026/11/30 19:59:56| " or, from a worker, "... kid1| ".
_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: kid\d+)?\| ?")
# squid's verdicts: "ERROR: ...", "FATAL: Bungled FILE line N: ...", "FILE(N): unrecognized: 'x'".
_VERDICT = re.compile(r"\b(?:FATAL|ERROR|unrecognized)\b")


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


def squid_parse_errors(output, config_name=None, source="/dev/stdin"):
    """squid -k parse's own error lines out of its output (about 45 "Processing:" lines), prefixes dropped.

    config_name replaces source (the file squid read) in them, so that a line
    number points into the rendered squid.conf rather than at /dev/stdin.
    Without an error line, the last line squid printed stands in.
    """
    lines = [_LOG_PREFIX.sub("", line).strip() for line in str(output or "").splitlines()]
    lines = [line for line in lines if line]
    verdicts = (line for line in lines if _VERDICT.search(line) and not line.startswith("Processing:"))
    errors = list(dict.fromkeys(verdicts))
    if not errors:
        errors = lines[-1:] or ["squid -k parse failed and printed nothing"]
    if config_name:
        errors = [line.replace(source, config_name) for line in errors]
    return errors


class FilterModule:
    def filters(self):
        return {
            "squid_network_problems": squid_network_problems,
            "squid_port_problems": squid_port_problems,
            "squid_parse_errors": squid_parse_errors,
        }
