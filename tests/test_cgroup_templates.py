"""The cgroups role's templates, rendered by Ansible on the controller.

Apart from tests/test_cgroup.py because templates render on the controller:
that file's tests also run on a node's Python 3.9 (tests/node_python.txt),
where the controller's Ansible does not import.
"""

from pathlib import Path

from ansible_collections.aerie.grid.plugins.module_utils import aerie_cgroup as cg
from test_cgroup import VM_ROOT_CONTROLLERS, load


def render_role_template(template: str, facts: dict, **overrides) -> str:
    """A template of the cgroups role rendered by Ansible with the role's defaults and vars."""
    import yaml
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    def trusted(value):  # the role's own variables are templates Ansible trusts
        if isinstance(value, dict):
            return {key: trusted(item) for key, item in value.items()}
        return trust_as_template(value) if isinstance(value, str) else value

    role = Path(__file__).resolve().parent.parent / "roles" / "cgroups"
    variables = {}
    for name in ("defaults/main.yml", "vars/main.yml"):
        variables.update(trusted(yaml.safe_load((role / name).read_text())))
    variables.update(ansible_managed="Ansible managed", cgroups_facts=facts, ansible_facts={"memtotal_mb": 4096},
                     __cgroups_hierarchies=["blkio", "cpu", "cpuacct", "freezer", "memory", "pids"], **overrides)
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template((role / "templates" / template).read_text()))


def v2_facts():
    mounts, table = load("v2-debian12")
    return cg.detect(mounts, table, VM_ROOT_CONTROLLERS)


def test_v2_drop_in_wants_the_base_cgroup_unit_and_limits_no_daemon():
    text = render_role_template("condor-cgroups.conf.j2", v2_facts(), cgroups_base_memory_limit_mb=512,
                                cgroups_base_cpu_weight=50)
    assert "[Unit]\n" in text
    assert "Wants=aerie-condor-base-cgroup.service\nAfter=aerie-condor-base-cgroup.service\n" in text
    assert "Delegate=yes\n" in text
    # The limits are the jobs' (the base cgroup beside the unit), not HTCondor's daemons'.
    assert "MemoryMax" not in text and "CPUWeight" not in text and "ExecStartPre" not in text


def test_v2_base_cgroup_unit_keeps_the_controllers_and_recreates_the_limits():
    text = render_role_template("condor-base-cgroup.service.j2", v2_facts(), cgroups_base_memory_limit_mb=512,
                                cgroups_base_cpu_weight=50)
    lines = text.splitlines()
    assert "Delegate=cpu io memory pids" in lines
    assert "RemainAfterExit=yes" in lines
    assert "Before=condor.service" in lines
    assert [line for line in lines if line.startswith("ExecStart=")] == [
        "ExecStart=/bin/mkdir -p /sys/fs/cgroup/system.slice/htcondor",
        "ExecStart=/bin/sh -c 'echo 536870912 > /sys/fs/cgroup/system.slice/htcondor/memory.max'",
        "ExecStart=/bin/sh -c 'echo 50 > /sys/fs/cgroup/system.slice/htcondor/cpu.weight'",
    ]
    assert "WantedBy=multi-user.target" in lines


def test_v2_base_cgroup_without_limits_gets_the_kernel_defaults_back():
    text = render_role_template("condor-base-cgroup.service.j2", v2_facts())
    assert "echo max > /sys/fs/cgroup/system.slice/htcondor/memory.max" in text
    assert "echo 100 > /sys/fs/cgroup/system.slice/htcondor/cpu.weight" in text


def test_v1_drop_in_still_recreates_the_base_cgroup_in_every_hierarchy():
    facts = cg.detect(*load("hybrid-host"))
    text = render_role_template("condor-cgroups.conf.j2", facts, cgroups_base_memory_limit_mb=512,
                                cgroups_base_cpu_weight=50)
    assert "[Unit]" not in text
    assert ("ExecStartPre=/bin/mkdir -p /sys/fs/cgroup/blkio/htcondor /sys/fs/cgroup/cpu/htcondor "
            "/sys/fs/cgroup/cpuacct/htcondor /sys/fs/cgroup/freezer/htcondor /sys/fs/cgroup/memory/htcondor "
            "/sys/fs/cgroup/pids/htcondor\n") in text
    assert "ExecStartPre=/bin/sh -c 'echo 536870912 > /sys/fs/cgroup/memory/htcondor/memory.limit_in_bytes'" in text
    assert "ExecStartPre=/bin/sh -c 'echo 512 > /sys/fs/cgroup/cpu/htcondor/cpu.shares'" in text
