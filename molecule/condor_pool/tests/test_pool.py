"""A real HTCondor pool: workers join the central manager with IDTOKENS and run a user's job."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import aerie_testinfra
import testinfra
from aerie_jobs import wait_for

testinfra_hosts = aerie_testinfra.hosts("central_managers")

SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
WORKERS = [h.removeprefix("podman://") for h in aerie_testinfra.hosts("worker_nodes")]
TOKEN = "/etc/condor/tokens.d/aerie-pool"
FRAGMENTS = ["05-aerie-pool.conf", "10-aerie-execute.conf", "20-aerie-cgroups.conf", "30-aerie-chroots.conf",
             "40-aerie-job-environment.conf", "50-aerie-hold-policy.conf", "80-aerie-node-health.conf",
             "90-aerie-extra.conf"]


def node(name):
    return testinfra.get_host(f"podman://{name}")


def slots(host) -> list[str]:
    return host.check_output("condor_status -af Name").split()


def start_playbook(*args, limit=None) -> subprocess.Popen:
    """The scenario's converge.yml, started in the background (stdout and stderr piped)."""
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.cfg"))
    env.update(ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"))
    argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / "converge.yml"), *args]
    if limit:
        argv += ["--limit", limit]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def playbook(*args, limit=None) -> subprocess.CompletedProcess:
    return finish(start_playbook(*args, limit=limit))


def test_every_workers_partitionable_slot_is_in_the_collector(host):
    listed = wait_for(lambda: sorted(s.split("@", 1)[1] for s in slots(host)) == sorted(WORKERS) and slots(host))
    assert sorted(listed) == [f"slot1@{w}" for w in sorted(WORKERS)]
    kinds = host.check_output("condor_status -af PartitionableSlot").split()
    assert kinds == ["true"] * len(WORKERS)


def test_an_ordinary_users_job_runs_on_a_worker_and_exits_0(host):
    job = ("cd ~alice && rm -f pool.* && printf '#!/bin/sh\\necho job ran on $(hostname)\\n' > pool.sh && "
           "chmod +x pool.sh && printf 'executable = pool.sh\\noutput = pool.out\\nerror = pool.err\\n"
           "log = pool.log\\nrequest_memory = 64\\nqueue\\n' > pool.sub && condor_submit pool.sub && "
           "condor_wait -wait 180 pool.log")
    host.run_expect([0], "su - alice -c %s", job)
    out = host.check_output("cat ~alice/pool.out")
    assert out.split()[:3] == ["job", "ran", "on"] and out.split()[3] in WORKERS
    cluster = host.check_output("su - alice -c 'condor_history -limit 1 -af ClusterId ExitCode JobStatus Owner'")
    _cluster, exit_code, status, owner = cluster.split()
    assert (exit_code, status, owner) == ("0", "4", "alice")


def test_workers_authenticate_to_the_collector_and_schedd_with_idtokens(host):
    schedd = host.check_output("condor_status -schedd -af MyAddress")
    for name in WORKERS:
        worker = node(name)
        ping = worker.check_output("condor_ping -pool %s -type collector -verbose ADVERTISE_STARTD",
                                   host.backend.get_hostname())
        assert "Authenticated using:         IDTOKENS" in ping and "Authorized:                  TRUE" in ping
        assert "Remote Mapping:              condor@pool-cm" in ping
        ping = worker.check_output("condor_ping -addr %s -verbose DAEMON", schedd)
        assert "Authenticated using:         IDTOKENS" in ping and "Authorized:                  TRUE" in ping


def test_tokens_are_private_and_the_signing_key_stays_on_the_central_manager(host):
    key = host.file("/etc/condor/passwords.d/POOL")
    assert key.is_file and key.user == "root" and key.mode == 0o600
    for name in WORKERS:
        worker = node(name)
        token = worker.file(TOKEN)
        assert token.is_file and token.user == "root" and token.mode == 0o600
        assert worker.file("/etc/condor/passwords.d").listdir() == []
        claims = worker.check_output("condor_token_list")
        assert '"sub":"condor@pool-cm"' in claims and '"iss":"pool-cm"' in claims


def test_security_is_htcondors_recommended_never_host_based(host):
    for name in [host.backend.get_hostname(), *WORKERS]:
        n = node(name)
        assert n.check_output("condor_config_val SECURITY_MODEL") == "24.0"
        assert n.check_output("condor_config_val SEC_DEFAULT_AUTHENTICATION_METHODS") == "FS, IDTOKENS"
        assert n.check_output("condor_config_val SEC_DEFAULT_AUTHENTICATION").upper() == "REQUIRED"
        rendered = n.check_output("cat /etc/condor/config.d/*aerie*")
        assert "HOST_BASED" not in rendered.upper()


def test_a_fragment_htcondor_rejects_fails_with_its_message_and_changes_nothing():
    worker = node(WORKERS[0])
    before = {f: worker.file(f"/etc/condor/config.d/{f}").content for f in FRAGMENTS}
    run = playbook("-e", json.dumps({"condor_worker_extra_knobs": {"use POLICY": "NO_SUCH_POLICY"}}), limit=WORKERS[0])
    assert run.returncode != 0
    assert "does not recognise NO_SUCH_POLICY" in " ".join((run.stdout + run.stderr).split())
    recap = " ".join(run.stdout.split("PLAY RECAP")[-1].split())
    assert f"{WORKERS[0]} : ok=" in recap and "changed=0" in recap and "failed=1" in recap
    assert {f: worker.file(f"/etc/condor/config.d/{f}").content for f in FRAGMENTS} == before


def test_a_declared_version_that_is_not_the_installed_one_fails_first():
    worker = node(WORKERS[0])
    before = {f: worker.file(f"/etc/condor/config.d/{f}").content for f in FRAGMENTS}
    run = playbook("--check", "-e", "htcondor_version=24.0", limit=WORKERS[0])
    text = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert "htcondor_version is 24.0 but this node runs HTCondor 25.0.13 (condor_version)" in text
    assert {f: worker.file(f"/etc/condor/config.d/{f}").content for f in FRAGMENTS} == before


def test_a_worker_without_its_token_is_refused_and_the_check_reports_it(host):
    name = WORKERS[-1]
    worker = node(name)
    worker.run_expect([0], "rm -f %s && systemctl restart condor", TOKEN)
    gone = wait_for(lambda: all(not s.endswith("@" + name) for s in slots(host)), timeout=90)
    assert gone, f"{name} still advertised without a token"
    refused = wait_for(lambda: "IDTOKENS" not in worker.check_output(
        "condor_ping -pool %s -type collector ADVERTISE_STARTD -verbose 2>&1 || true", host.backend.get_hostname()))
    assert refused
    check = playbook("--check", "--diff", limit=name)
    # The check names the missing token as a change and fails the node: the
    # collector no longer lists its slots.
    recap = " ".join(check.stdout.split("PLAY RECAP")[-1].split())
    assert "Ensure this host holds its token" in check.stdout
    assert f"{name} : ok=" in recap and "failed=1" in recap
    assert "does not list this node's slots" in " ".join((check.stdout + check.stderr).split())
    # A converge repairs it: a new token, and the slot is back. The run is
    # verbose with --diff, and neither the new token nor the signing key shows.
    run = playbook("-v", "--diff", limit=f"{name},{host.backend.get_hostname()}")
    assert run.returncode == 0, run.stdout[-3000:]
    assert wait_for(lambda: any(s.endswith("@" + name) for s in slots(host)))
    token = worker.check_output("cat %s", TOKEN)
    key = host.check_output("base64 -w0 /etc/condor/passwords.d/POOL")
    for secret in (token, token.rsplit(".", 1)[-1], key):
        assert secret and secret not in run.stdout + run.stderr
