"""Each tag of the chroot role alone changes nothing on the converged node (issue 13).

test_chroot.py leaves the node at version 2 of both trees; a full converge
at those versions settles it, then each tag alone must change nothing: the
fstab and fact file byte-identical, the same links, trees and mounts.
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra

SCENARIO = Path(__file__).resolve().parent.parent
VERSIONS = ["-e", "aerie_test_deb_version=2", "-e", "aerie_test_el_version=2"]
FILES = ["/etc/fstab", "/etc/ansible/facts.d/chroot.fact"]
WATCH = ["ls -l --time-style=+ /chroot | sort", "findmnt -rn -o TARGET | grep '^/chroot' | sort"]


def test_each_tag_alone_changes_nothing():
    converge = aerie_testinfra.run_playbook(SCENARIO / "converge.yml", *VERSIONS)
    assert converge["_returncode"] == 0, converge["_stderr"][-3000:]
    tags = aerie_testinfra.role_tags("chroot")
    assert tags == ["chroot_install", "chroot_config"]
    problems = aerie_testinfra.tags_alone(SCENARIO / "converge.yml", tags, FILES, watch=WATCH, extra_args=VERSIONS)
    assert not problems, "\n".join(problems)
