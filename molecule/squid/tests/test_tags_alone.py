"""Each tag of the squid and squid_client roles alone changes nothing (issue 13).

No change, no failure, squid.conf and the client's files byte-identical,
squid neither restarted nor reloaded (same PID and start time).
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra

SCENARIO = Path(__file__).resolve().parent.parent
FILES = ["/etc/squid", "/etc/profile.d/aerie-squid.sh", "/etc/profile.d/aerie-squid.csh", "/usr/local/bin/aerie-fetch"]
SQUID = "systemctl show -p MainPID -p ExecMainStartTimestampMonotonic -p ExecReloadStartTimestampMonotonic squid"


def test_each_tag_alone_changes_nothing():
    tags = aerie_testinfra.role_tags("squid", "squid_client")
    assert {"squid_install", "squid_config", "squid_service", "squid_client_config"} <= set(tags)
    problems = aerie_testinfra.tags_alone(SCENARIO / "converge.yml", tags, FILES, watch=[SQUID])
    assert not problems, "\n".join(problems)
