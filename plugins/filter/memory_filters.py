"""One memory budget on a node that is an HTCondor VM-universe node and a nova-compute node (issue 18).

The host's memory M is split into three disjoint parts:

- R, the host itself (OS, daemons, qemu overhead): openstack_compute_reserved_host_memory_mb;
- V, HTCondor's VM_MEMORY: condor_vm_memory_mb, set explicitly on such a node;
- the rest, nova's: nova.conf's reserved_host_memory_mb is R + V, and nova
  plans (M - R - V) x ram_allocation_ratio for its instances.

roles/openstack_compute and roles/condor_vm both check the layout with
shared_memory_problems, from the same inventory values, before they write
their configuration; nova_reserved_host_memory_mb is what openstack_compute
writes. Used as aerie.grid.<filter> (this file lives in plugins/filter).
"""

from fractions import Fraction

# The inventory variables the messages name (roles/condor_vm mirrors the first
# and the last as condor_vm_nova_reserved_mb and condor_vm_nova_ram_allocation_ratio).
RESERVED = "openstack_compute_reserved_host_memory_mb"
VM_MEMORY = "condor_vm_memory_mb"
RATIO = "openstack_compute_ram_allocation_ratio"


def _unset(value):
    """None, or what a template renders None as."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


def _number(value, name, problems, kind=int):
    """value as kind (None when unset); a message and None when it is not a number."""
    if _unset(value):
        return None
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        return int(value) if kind is int else Fraction(str(value).strip())
    except (TypeError, ValueError):
        problems.append(f"{name} must be a number, got {value!r}")
        return None


def _num(value):
    """A number as text: whole numbers without a fraction, others to at most two decimals."""
    return str(int(value)) if value == int(value) else f"{float(value):.2f}".rstrip("0")


def shared_memory_problems(memtotal_mb, reserved_mb, vm_memory_mb, ram_allocation_ratio=1.0):
    """One message per way the layout M = R + V + nova's share does not hold; empty when it fits.

    memtotal_mb is M (ansible_facts.memtotal_mb), reserved_mb R, vm_memory_mb V
    (None: not set) and ram_allocation_ratio nova's ratio. Refused: V unset, a
    ratio at or below 0, a negative R, V at or below 0, nothing left for nova
    (M - R - V <= 0), and R + V + (M - R - V) x ratio > M.
    """
    problems = []
    m = _number(memtotal_mb, "the host's memory (ansible_facts.memtotal_mb)", problems)
    r = _number(reserved_mb, RESERVED, problems)
    v = _number(vm_memory_mb, VM_MEMORY, problems)
    ratio = _number(ram_allocation_ratio, RATIO, problems, kind=Fraction)
    if _unset(memtotal_mb):
        problems.append("the host's memory (ansible_facts.memtotal_mb) is unknown: gather hardware facts")
    if _unset(reserved_mb):
        problems.append(f"{RESERVED} is not set")
    elif r is not None and r < 0:
        problems.append(f"{RESERVED} must not be negative, got {r}")
    if _unset(vm_memory_mb):
        problems.append(f"{VM_MEMORY} is not set: set it in the inventory (MiB; HTCondor's VM_MEMORY, "
                        f"the part of the memory HTCondor owns here)")
    elif v is not None and v <= 0:
        problems.append(f"{VM_MEMORY} must be above 0, got {v}")
    if _unset(ram_allocation_ratio):
        problems.append(f"{RATIO} is not set")
    elif ratio is not None and ratio <= 0:
        problems.append(f"{RATIO} must be above 0, got {_num(ratio)}")
    if problems:
        return problems
    nova = m - r - v
    names = f"M host memory, R {RESERVED}, V {VM_MEMORY}, ratio {RATIO}"
    if nova <= 0:
        return [f"nothing left for nova: M - R - V = {m} - {r} - {v} = {nova} MiB ({names}); "
                f"lower {VM_MEMORY} or {RESERVED}"]
    plan = nova * ratio
    total = r + v + plan
    if total > m:
        return [f"memory over-committed: R + V + nova's plan (M - R - V) x ratio = "
                f"{r} + {v} + ({m} - {r} - {v}) x {_num(ratio)} = {r} + {v} + {_num(plan)} = {_num(total)} MiB "
                f"> M = {m} MiB ({names}); set {RATIO} to 1.0 or less"]
    return []


def nova_reserved_host_memory_mb(reserved_mb, vm_memory_mb=None):
    """nova's reserved_host_memory_mb: R, plus HTCondor's V on a node that runs both (V set)."""
    if _unset(vm_memory_mb):
        return int(reserved_mb)
    return int(reserved_mb) + int(vm_memory_mb)


class FilterModule:
    def filters(self):
        return {
            "shared_memory_problems": shared_memory_problems,
            "nova_reserved_host_memory_mb": nova_reserved_host_memory_mb,
        }
