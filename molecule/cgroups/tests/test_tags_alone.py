"""Each tag of the cgroups role alone changes nothing on the converged node (issue 13).

No change, no failure, the unit drop-ins, fstab and mount units
byte-identical, the cgroup mounts and the base cgroup's limits as they were.
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra

SCENARIO = Path(__file__).resolve().parent.parent
FILES = ["/etc/systemd/system/condor.service.d", "/etc/systemd/system/*.mount", "/etc/fstab",
         "/etc/systemd/system/aerie-condor-base-cgroup.service", "/etc/default/grub.d"]
WATCH = ["findmnt -rn -t cgroup,cgroup2 -o TARGET,FSTYPE,OPTIONS | sort",
         "cat /sys/fs/cgroup/cpu/htcondor/cpu.shares /sys/fs/cgroup/memory/htcondor/memory.limit_in_bytes"]


def test_each_tag_alone_changes_nothing():
    tags = aerie_testinfra.role_tags("cgroups")
    assert tags == ["cgroups_config"]
    problems = aerie_testinfra.tags_alone(SCENARIO / "converge.yml", tags, FILES, watch=WATCH)
    assert not problems, "\n".join(problems)
