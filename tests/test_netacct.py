"""The netacct role's agent and JOB_EXIT hook (roles/netacct/files).

First the agent against the real kernel on this machine: its own network
namespace (nftables tables are per namespace, so the machine's ruleset is
never touched), real cgroup v2 directories standing in for HTCondor's job
cgroups, real downloads from a server in a second namespace, and the hook
run as HTCondor runs it with a stand-in condor_chirp that records what it
was asked to set. The end-to-end test with HTCondor itself is
molecule/cgroups_v2/tests/test_netacct.py.

Then the pure parts: config checks, the table text, reading nft's JSON,
counters that start over, which record the hook picks.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aerie_testutil import REPO, ansible_playbook, load_script

agent = load_script("roles/netacct/files/aerie-netacct")
hook = load_script("roles/netacct/files/aerie-netacct-job-exit")
AGENT = REPO / "roles/netacct/files/aerie-netacct"
HOOK = REPO / "roles/netacct/files/aerie-netacct-job-exit"
UNIFIED = Path("/sys/fs/cgroup/unified")
MB = 1_000_000


def _kernel_lab_missing():
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables, cgroups)"
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            return f"needs {tool} (scripts/bootstrap installs it)"
    if not (UNIFIED / "cgroup.procs").exists() and not Path("/sys/fs/cgroup/cgroup.procs").exists():
        return "needs a cgroup v2 hierarchy"
    return None


@pytest.fixture
def lab(tmp_path):
    """Two namespaces joined by a veth pair: 'acct' (where the agent's table lives and jobs run) and
    'srv' (a web server on a site address and an external one); a cgroup parent for job cgroups."""
    missing = _kernel_lab_missing()
    if missing:
        pytest.fail(missing)
    tag = f"na{os.getpid() % 100000}"
    acct, srv = f"{tag}a", f"{tag}s"
    root = UNIFIED if (UNIFIED / "cgroup.procs").exists() else Path("/sys/fs/cgroup")
    parent = root / f"aerie-test-{tag}" / "htcondor"

    def sh(*argv):
        subprocess.run(argv, check=True, capture_output=True)

    sh("ip", "netns", "add", acct)
    sh("ip", "netns", "add", srv)
    server = None
    try:
        sh("ip", "link", "add", f"{tag}x", "netns", acct, "type", "veth", "peer", "name", f"{tag}y", "netns", srv)
        for ns, dev, addrs in ((acct, f"{tag}x", ("10.99.0.1/24", "198.51.100.1/24")),
                               (srv, f"{tag}y", ("10.99.0.2/24", "198.51.100.2/24"))):
            for addr in addrs:
                sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", srv, sys.executable,
             str(REPO / "molecule/cgroups_v2/tests/netacct_origin.py"), "0.0.0.0", "8000"])
        parent.mkdir(parents=True)
        nft = tmp_path / "nft"
        nft.write_text(f'#!/bin/sh\nexec ip netns exec {acct} nft "$@"\n')
        nft.chmod(0o755)
        config = tmp_path / "netacct.json"
        config.write_text(json.dumps({
            "site_networks": ["10.99.0.0/24"], "cgroup_root": str(root),
            "job_parent": str(parent.relative_to(root)), "state_dir": str(tmp_path / "state"),
            "poll_seconds": 1, "nft": str(nft), "hook_wait_seconds": 5,
            "condor_chirp": str(tmp_path / "chirp"),
        }))
        yield {"acct": acct, "parent": parent, "config": config, "tmp": tmp_path, "nft": nft}
    finally:
        if server:
            server.kill()
        for ns in (acct, srv):
            subprocess.run(["ip", "netns", "del", ns], check=False)
        for d in sorted(parent.parent.glob("**/"), key=lambda p: -len(p.parts)):
            d.rmdir()


def job(lab, name, site, external):
    """A 'job': a process in its own cgroup below the parent that downloads from both addresses, then
    the cgroup removed (as HTCondor does before the JOB_EXIT hook)."""
    cgroup = lab["parent"] / name
    cgroup.mkdir()
    code = ("import urllib.request as u;"
            f"u.urlopen('http://10.99.0.2:8000/{site}').read();"
            f"u.urlopen('http://198.51.100.2:8000/{external}').read()")
    script = f'echo $$ > {cgroup}/cgroup.procs && exec ip netns exec {lab["acct"]} {sys.executable} -c "{code}"'
    subprocess.run(["sh", "-c", script], check=True, timeout=60)
    cgroup.rmdir()
    return cgroup


def wait(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def final_records(state):
    records = [json.loads(p.read_text()) for p in (state / "jobs").glob("*.json")]
    return {Path(r["cgroup"]).name: r for r in records if r["ended"] is not None}


def test_the_agent_counts_each_cgroup_in_the_kernel_and_the_hook_publishes_it(lab, monkeypatch, capsys):
    proc = subprocess.Popen([sys.executable, str(AGENT), "run", "--config", str(lab["config"])],
                            stderr=subprocess.PIPE, text=True)
    try:
        state = lab["tmp"] / "state"
        assert wait(lambda: (state / "table.json").exists()), "the agent made no table"
        # A job that may have started before the table counts as incomplete, and /proc's boot time
        # is whole seconds: the jobs start a second after the table.
        time.sleep(1.2)
        # A job much shorter than the 1 s pass: inotify wakes the agent at its mkdir and rmdir.
        # Named as HTCondor names them: <EXECUTE>_<slot name>, slashes made underscores (EXECUTE /x).
        job(lab, "_x_slot1_1.slice", 3 * MB, 2 * MB)
        job(lab, "_x_slot1_2.slice", MB, 4 * MB)
        records = wait(lambda: len(final_records(state)) == 2 and final_records(state))
        assert records, final_records(state)
        one, two = records["_x_slot1_1.slice"], records["_x_slot1_2.slice"]
        assert one["complete"] and two["complete"]
        assert abs(one["bytes"]["IncomingInternal"] - 3 * MB) < 0.02 * 3 * MB, one
        assert abs(one["bytes"]["IncomingExternal"] - 2 * MB) < 0.02 * 2 * MB, one
        assert abs(two["bytes"]["IncomingInternal"] - MB) < 0.02 * MB, two
        assert abs(two["bytes"]["IncomingExternal"] - 4 * MB) < 0.02 * 4 * MB, two

        # The hook, as the starter runs it: the machine ad names the slot, the job ad comes on stdin
        # (on a node the hook reads /etc/aerie/netacct.json; here the test's config).
        calls = lab["tmp"] / "chirp.calls"
        chirp = lab["tmp"] / "chirp"
        chirp.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
        chirp.chmod(0o755)
        machine_ad = lab["tmp"] / ".machine.ad"
        machine_ad.write_text('Name = "slot1_2"\n')
        monkeypatch.setenv("_CONDOR_EXECUTE", "/x")
        monkeypatch.setenv("_CONDOR_MACHINE_AD", str(machine_ad))
        assert hook.main(io.StringIO('GlobalJobId = "ap#7.0#1"\n'), str(lab["config"])) == 0
        sets = dict(line.split()[1:3] for line in calls.read_text().splitlines())
        assert sets == {f"ChirpNetwork{k}": str(v) for k, v in two["bytes"].items()}, capsys.readouterr().err

        # `nft flush ruleset` while a job runs: the agent makes the table again, the job is incomplete.
        running = lab["parent"] / "_x_slot1_3.slice"
        running.mkdir()
        sleeper = subprocess.Popen(["sh", "-c", f"echo $$ > {running}/cgroup.procs && exec sleep 30"])
        assert wait(lambda: any(json.loads(p.read_text())["cgroup"].endswith("_x_slot1_3.slice")
                                for p in (state / "jobs").glob("*.json")))
        subprocess.run([str(lab["nft"]), "flush", "ruleset"], check=True)
        assert wait(lambda: subprocess.run([str(lab["nft"]), "list", "table", "inet", "aerie_netacct"],
                                           capture_output=True).returncode == 0)
        sleeper.kill()
        sleeper.wait()
        running.rmdir()
        records = wait(lambda: "_x_slot1_3.slice" in final_records(state) and final_records(state))
        assert records["_x_slot1_3.slice"]["complete"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- the pure parts ---------------------------------------------------------------------------------


def test_a_bad_config_names_what_is_wrong():
    with pytest.raises(agent.ConfigError, match=r"'10\.0\.0\.1/8'.*host bits set"):
        agent.parse_config({"site_networks": ["10.0.0.1/8"]})
    with pytest.raises(agent.ConfigError, match="unknown keys site_network"):
        agent.parse_config({"site_network": ["10.0.0.0/8"]})
    with pytest.raises(agent.ConfigError, match="site_networks is empty"):
        agent.parse_config({"site_networks": []})
    with pytest.raises(agent.ConfigError, match="poll_seconds must be a positive number"):
        agent.parse_config({"site_networks": ["10.0.0.0/8"], "poll_seconds": 0})


def test_the_table_counts_at_one_level_below_the_job_parent_and_never_drops():
    config = agent.parse_config({"site_networks": ["10.0.0.0/8", "2001:db8::/32"], "job_parent": "/a.slice/b/"})
    text = agent.render_table(config)
    assert config["job_parent"] == "a.slice/b"
    assert "socket cgroupv2 level 3" in text and "level 2" not in text
    assert "elements = { 10.0.0.0/8 }" in text and "elements = { 2001:db8::/32 }" in text
    assert "drop" not in text and text.count("policy accept") == 2
    swap = agent.render_site_swap(config)
    assert "flush set inet aerie_netacct site4" in swap
    assert "add element inet aerie_netacct site6 { 2001:db8::/32 }" in swap


def _listing(config, rules=4, comment=True, elements=()):
    items = [{"table": {"family": "inet", "name": "aerie_netacct", "handle": 7}}]
    for chain in ("output", "input"):
        for i in range(rules):
            rule = {"family": "inet", "table": "aerie_netacct", "chain": chain, "handle": i}
            if i == 0 and comment:
                rule["comment"] = agent.comment(config)
            items.append({"rule": rule})
    items.append({"set": {"name": "in_site", "elem": [
        {"elem": {"val": val, "counter": {"packets": 1, "bytes": count}}} for val, count in elements]}})
    return items


def test_reading_the_table_finds_damage_and_both_spellings_of_a_cgroup():
    config = agent.parse_config({"site_networks": ["10.0.0.0/8"]})
    listing = _listing(config, elements=[("/system.slice/htcondor/x", 5), ("4242", 9)])
    handle, healthy, counters = agent.table_state(config, listing)
    assert (handle, healthy) == (7, True)
    assert counters["in_site"] == {"system.slice/htcondor/x": 5, "4242": 9}
    assert agent.table_state(config, _listing(config, rules=0))[1] is False  # nft flush table
    assert agent.table_state(config, _listing(config, comment=False))[1] is False  # not ours, or an old schema
    assert agent.table_state(config, None) == (None, False, {name: {} for name in agent.BUCKETS})


def test_a_counter_that_starts_over_is_added_not_lost(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"site_networks": ["10.0.0.0/8"], "state_dir": str(tmp_path)}))
    a = agent.Agent(str(config), log=lambda m: None)
    record = {"cgroup_id": 11, "table": 7, "complete": True,
              "bytes": dict.fromkeys(agent.BUCKETS.values(), 0), "raw": dict.fromkeys(agent.BUCKETS.values(), 0)}
    empty = {name: {} for name in agent.BUCKETS}
    a.account(record, 7, {**empty, "in_site": {"11": 1000}}, {})
    a.account(record, 7, {**empty, "in_site": {"11": 1500}}, {})
    # The element expired while the job was silent and started again at 200.
    a.account(record, 7, {**empty, "in_site": {"11": 200}}, {})
    assert record["bytes"]["IncomingInternal"] == 1700 and record["complete"]
    # Counted under its path while the cgroup lives.
    a.account(record, 7, {**empty, "in_site": {"p/q": 300}}, {"p/q": 11})
    assert record["bytes"]["IncomingInternal"] == 1800
    # The table was made again: what it counts is no longer the whole job.
    a.account(record, 8, empty, {})
    assert record["complete"] is False


def test_the_hook_takes_only_this_jobs_final_record(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    old = {"first_seen": 100.0, "ended": 150.0, "complete": True}
    (jobs / "old.json").write_text(json.dumps(old))
    clock = iter(range(1000))
    # The slot's latest record is an earlier job's (the agent missed this one): no record, not that one.
    assert hook.wait_for_record([str(jobs / "old.json")], 2, not_before=160.0,
                                sleep=lambda s: None, clock=lambda: next(clock)) is None
    new = {"first_seen": 170.0, "ended": 180.0, "complete": True}
    (jobs / "new.json").write_text(json.dumps(new))
    assert hook.wait_for_record([str(jobs / "old.json"), str(jobs / "new.json")], 2, not_before=160.0,
                                sleep=lambda s: None, clock=lambda: next(clock)) == new


def test_the_hook_finds_the_cgroup_htcondor_named_after_the_slot(tmp_path):
    ad = tmp_path / ".machine.ad"
    ad.write_text('Cpus = 1\nName = "slot1_1@node.example.org"\n')
    env = {"_CONDOR_EXECUTE": "/var/lib/condor/execute", "_CONDOR_MACHINE_AD": str(ad)}
    assert hook.cgroup_leaf(env) == "_var_lib_condor_execute_slot1_1@node.example.org"
    (tmp_path / "by-cgroup").mkdir()
    for name in ("_var_lib_condor_execute_slot1_1@node.example.org.slice",
                 "_var_lib_condor_execute_slot1_10@node.example.org.slice"):
        (tmp_path / "by-cgroup" / name).write_text("{}")
    # A job label (by-job/, read from the job's own environment) is never followed: a job could forge it.
    (tmp_path / "by-job").mkdir()
    (tmp_path / "by-job" / "ap#1.0#1").write_text("{}")
    found = hook.candidates(str(tmp_path), hook.cgroup_leaf(env))
    assert [Path(p).name for p in found] == ["_var_lib_condor_execute_slot1_1@node.example.org.slice"]


def test_the_hook_exits_0_on_any_failure(tmp_path, capsys):
    assert hook.main(io.StringIO("garbage"), str(tmp_path / "missing.json")) == 0
    assert "aerie-netacct-job-exit" in capsys.readouterr().err


# --- the role refuses before any change ---------------------------------------------------------------


def _role(tmp_path, extra):
    """The netacct role on this machine in check mode (nothing can change), with EXTRA as extra vars."""
    play = tmp_path / "play.yml"
    play.write_text("- hosts: localhost\n  connection: local\n  gather_facts: true\n  roles: [netacct]\n")
    # The test's own Python is the target's (this machine's python3 may be a pyenv shim).
    (tmp_path / "vars.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra}))
    return ansible_playbook("-i", "localhost,", "--check", "-e", f"@{tmp_path / 'vars.json'}", str(play))


def _failure(run):
    failed = [line for line in run.stdout.splitlines() if line.startswith(("fatal:", "failed:"))]
    assert failed and run.returncode != 0, run.stdout[-3000:]
    assert "changed=0" in run.stdout, run.stdout[-3000:]
    return "\n".join(failed)


@pytest.mark.parametrize(("extra", "named"), [
    ({"netacct_enabled": True, "site_networks": ["10.0.0.1/8"]}, "'10.0.0.1/8': 10.0.0.1/8 has host bits set"),
    ({"netacct_enabled": True}, "site_networks must list the site's networks"),
    ({"netacct_enabled": True, "site_networks": "10.0.0.0/8"}, "site_networks"),
    ({"netacct_enable": True, "site_networks": ["10.0.0.0/8"]}, "netacct_enabled"),
    ({"netacct_enabled": True, "site_networks": ["10.0.0.0/8"], "netacct_poll_seconds": 0}, "netacct_poll_seconds"),
])
def test_bad_input_fails_before_any_change_naming_the_variable(tmp_path, extra, named):
    assert named in _failure(_role(tmp_path, extra))


def test_a_node_without_pure_cgroup_v2_is_refused_before_any_change(tmp_path):
    # This machine is hybrid (cgroup v1 controllers, v2 at /sys/fs/cgroup/unified), as every
    # container here: the role names what it needs and changes nothing.
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.fail("this test needs a v1 or hybrid host; this one is pure v2")
    failure = _failure(_role(tmp_path, {"netacct_enabled": True, "site_networks": ["10.0.0.0/8"]}))
    assert "needs pure cgroup v2" in failure and "Nothing was changed" in failure
