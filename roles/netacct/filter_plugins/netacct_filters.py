"""Filters the netacct role uses to reject bad input before any change.

The agent (files/aerie-netacct) checks its config the same way on the node;
this is the controller's check, run before anything is installed.
"""

import ipaddress


def netacct_network_problems(values):
    """One message per entry of values that is not a network (CIDR, no host bits set)."""
    if not isinstance(values, (list, tuple)):
        return [f"must be a list of networks, got {values!r}"]
    problems = []
    for value in values:
        try:
            ipaddress.ip_network(str(value).strip(), strict=True)
        except ValueError as exc:
            problems.append(f"{value!r}: {exc}")
    return problems


class FilterModule:
    def filters(self):
        return {"netacct_network_problems": netacct_network_problems}
