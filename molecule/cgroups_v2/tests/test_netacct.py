"""Per-job network accounting on the real pool (issue 21): what each job moved, in its ad and history.

Two web servers on this VM stand for the site and the outside world, each in
a network namespace of its own (netacct_origin.py): the site's at 10.77.0.2
(in site_networks, molecule.yml) and an external one at 203.0.113.2. Real
jobs, submitted by an ordinary user, download from both and upload to the
site; the kernel counts (the netacct role's nftables table), the root agent
records, the JOB_EXIT hook publishes, and condor_history is what is read.

Then the ways accounting can fail, each with a real job: the agent stopped,
the agent frozen (slower than the hook waits), and the firewall flushed
while the job runs. Every job still finishes with exit code 0, without the
attributes (unknown, never 0).

Runs after test_jobs.py (alphabetical): the pool is up after the reboot
test_cgroups_v2.py ends with, and the agent came back at boot.
"""

import base64
import json
import shlex
from pathlib import Path

import aerie_testinfra
import pytest
from aerie_jobs import USER, ensure_user, submit, wait_for

testinfra_hosts = aerie_testinfra.ssh_hosts("worker_nodes")

MB = 1_000_000
SITE, EXTERNAL = "10.77.0.2", "203.0.113.2"
HOME = f"/home/{USER}/netacct"
ATTRS = ["ChirpNetworkOutgoingInternal", "ChirpNetworkOutgoingExternal",
         "ChirpNetworkIncomingInternal", "ChirpNetworkIncomingExternal"]
UNIT = "aerie-netacct.service"

# The job: waits for its partners (--barrier DIR:N) or for a file (--gate F)
# if asked, then downloads from the site and the outside and uploads to the site.
JOB = f"""#!/usr/bin/python3
import os, sys, time, urllib.request as u
down_site, down_ext, up_site = (int(x) for x in sys.argv[1:4])
opts = dict(zip(sys.argv[4::2], sys.argv[5::2]))
deadline = time.time() + 300
if "--barrier" in opts:
    d, n = opts["--barrier"].rsplit(":", 1)
    open(os.path.join(d, str(os.getpid())), "w").close()
    while len(os.listdir(d)) < int(n) and time.time() < deadline:
        time.sleep(0.2)
while "--gate" in opts and not os.path.exists(opts["--gate"]) and time.time() < deadline:
    time.sleep(0.2)
got = len(u.urlopen("http://{SITE}:8000/%d" % down_site).read())
got += len(u.urlopen("http://{EXTERNAL}:8000/%d" % down_ext).read())
sent = int(u.urlopen(u.Request("http://{SITE}:8000/up", data=b"u" * up_site, method="PUT")).read())
print(got, sent)
"""

# Each origin: a veth pair from the VM into its namespace, the server inside.
ORIGINS = f"""
set -e
for spec in site:{SITE} ext:{EXTERNAL}; do
  name=${{spec%%:*}}; addr=${{spec#*:}}; net=${{addr%.*}}
  ip netns add na-$name 2>/dev/null || true
  ip link show na-$name >/dev/null 2>&1 || ip link add na-$name type veth peer name eth0 netns na-$name
  ip addr replace $net.1/24 dev na-$name
  ip link set na-$name up
  ip -n na-$name addr replace $addr/24 dev eth0
  ip -n na-$name link set eth0 up
  ip -n na-$name link set lo up
  systemctl is-active -q na-origin-$name ||
    systemd-run -q --unit na-origin-$name ip netns exec na-$name python3 /root/netacct_origin.py $addr 8000
done
"""


@pytest.fixture(scope="module")
def origins(host):
    """The two origins serve; the pool runs; the agent runs."""
    code = base64.b64encode((Path(__file__).parent / "netacct_origin.py").read_bytes()).decode()
    host.check_output(f"echo {code} | base64 -d > /root/netacct_origin.py")
    host.check_output(f"bash -c {shlex.quote(ORIGINS)}")
    probe = "python3 -c 'import urllib.request as u; print(len(u.urlopen(\"http://%s:8000/1000\").read()))'"
    assert wait_for(lambda: host.run(probe % SITE).stdout.strip() == "1000"
                    and host.run(probe % EXTERNAL).stdout.strip() == "1000", timeout=60, step=2)
    assert wait_for(lambda: host.run("condor_status -startd -af Name").stdout.strip(), timeout=300, step=5)
    assert host.service(UNIT).is_running
    ensure_user(host)
    yield
    host.run("systemctl stop na-origin-site na-origin-ext")


def run_jobs(host, specs, timeout=420):
    """Submit each (name, args) as its own job; wait until all left the queue; return {name: cluster}."""
    clusters = {name: submit(host, f"{HOME}/{name}", JOB, lines=f"request_memory = 64\narguments = {args}")
                for name, args in specs}

    def done():
        return all(host.run(f"condor_q {c} -af JobStatus").stdout.strip() == ""
                   for c in clusters.values())

    assert wait_for(done, timeout=timeout, step=5), host.run("condor_q -af ClusterId JobStatus HoldReason").stdout
    return clusters


def history(host, cluster):
    """The job's ExitCode, GlobalJobId and network attributes as condor_history has them (absent: no key)."""
    attrs = ",".join(["ExitCode", "GlobalJobId", *ATTRS])
    out = host.check_output(f"condor_history {cluster} -limit 1 -json -attributes {attrs}")
    return json.loads(out)[0]


def record(host, job_id):
    """The node's own record of the job (the agent's, root's)."""
    out = host.run(f"aerie-netacct show {shlex.quote(job_id)}")
    return json.loads(out.stdout) if out.rc == 0 else None


def near(counted, moved, tolerance=0.02):
    return abs(counted - moved) <= tolerance * moved


def test_two_concurrent_jobs_get_their_own_bytes_split_internal_and_external(host, origins):
    # In the user's home: each job has a /tmp of its own.
    barrier = f"{HOME}/barrier-{host.check_output('date +%s%N')}"
    host.check_output(f"su {USER} -c 'mkdir -p {barrier}'")
    moved = {"a": (5 * MB, 3 * MB, 1 * MB), "b": (2 * MB, 4 * MB, MB // 2)}
    clusters = run_jobs(host, [(n, f"{s} {e} {u} --barrier {barrier}:2") for n, (s, e, u) in moved.items()])
    for name, (site, external, upload) in moved.items():
        ad = history(host, clusters[name])
        assert ad.get("ExitCode") == 0, ad
        assert all(isinstance(ad.get(a), int) for a in ATTRS), ad
        # Payload plus HTTP and TCP/IP headers; the kernel counts whole packets.
        assert near(ad["ChirpNetworkIncomingInternal"], site), (name, ad)
        assert near(ad["ChirpNetworkIncomingExternal"], external), (name, ad)
        assert near(ad["ChirpNetworkOutgoingInternal"], upload), (name, ad)
        # Out to the outside: only the request and the acknowledgements of 3-4 MB.
        assert 0 < ad["ChirpNetworkOutgoingExternal"] < 0.02 * external, (name, ad)
        # The node's own record is the same count (the one to trust: a job may set Chirp* itself).
        mine = record(host, ad["GlobalJobId"])
        assert mine and mine["complete"], mine
        assert {f"ChirpNetwork{k}": v for k, v in mine["bytes"].items()} == {a: ad[a] for a in ATTRS}


def absent_but_finished(host, cluster):
    ad = history(host, cluster)
    assert ad.get("ExitCode") == 0, ad
    assert not any(a in ad for a in ATTRS), ad
    return ad


# Stopped: no record at all. Frozen (slower than the hook waits): the hook waits its 10 s for a
# final record that does not come, then lets the job go.
@pytest.mark.parametrize(("down", "up"), [("stop", "start"), ("kill -s SIGSTOP", "kill -s SIGCONT")],
                         ids=["stopped", "frozen"])
def test_with_the_agent_stopped_or_too_slow_jobs_finish_without_the_attributes(host, origins, down, up):
    host.check_output(f"systemctl {down} {UNIT}")
    try:
        clusters = run_jobs(host, [("down", f"{MB} {MB} {MB}")])
        absent_but_finished(host, clusters["down"])
    finally:
        host.check_output(f"systemctl {up} {UNIT}")


def test_a_flush_while_a_job_runs_leaves_it_unknown_and_the_next_job_is_counted_again(host, origins):
    gate = f"{HOME}/gate"
    host.run(f"rm -f {gate}")
    lines = f"request_memory = 64\narguments = {MB} {MB} {MB} --gate {gate}"
    cluster = submit(host, f"{HOME}/flushed", JOB, lines=lines)
    # Running, and the agent has its cgroup: then the firewall is reloaded the way
    # Debian's nftables.service does it (flush ruleset).
    assert wait_for(lambda: host.run(f"condor_q {cluster} -af JobStatus").stdout.strip() == "2", timeout=300, step=3)
    assert wait_for(lambda: host.run(
        "grep -l '\"ended\": null' /var/lib/aerie-netacct/jobs/*.json").stdout.strip(), timeout=60, step=1)
    host.check_output("nft flush ruleset")
    # The agent puts the table back (on its next pass) before the job moves its bytes.
    assert wait_for(lambda: host.run("nft list table inet aerie_netacct").rc == 0, timeout=60, step=1)
    host.check_output(f"su {USER} -c 'touch {gate}'")
    assert wait_for(lambda: host.run(f"condor_q {cluster} -af JobStatus").stdout.strip() == "", timeout=300, step=5)
    ad = absent_but_finished(host, cluster)
    mine = record(host, ad["GlobalJobId"])
    assert mine is not None and mine["complete"] is False, mine

    clusters = run_jobs(host, [("after", f"{2 * MB} {MB} {MB}")])
    ad = history(host, clusters["after"])
    assert ad.get("ExitCode") == 0 and near(ad.get("ChirpNetworkIncomingInternal", 0), 2 * MB), ad
