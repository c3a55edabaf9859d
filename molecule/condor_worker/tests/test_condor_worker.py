"""The execute node's HTCondor configuration, as HTCondor's own parser reads it on the node."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import aerie_testinfra
import testinfra

testinfra_hosts = aerie_testinfra.hosts("worker_nodes")

SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
VALIDATOR = "/opt/aerie/condor-validator/bin/python"
FRAGMENTS = [
    "05-aerie-pool.conf",  # the htcondor role's, a dependency
    "10-aerie-execute.conf",
    "20-aerie-cgroups.conf",
    "30-aerie-chroots.conf",
    "40-aerie-job-environment.conf",
    "50-aerie-hold-policy.conf",
    "80-aerie-node-health.conf",
    "90-aerie-extra.conf",
]
# What the node's daemons would read, text as in the config (no typed conversion).
PROBE = """
import json, sys, htcondor2
out = {}
for name in sys.argv[1:]:
    htcondor2.param["AERIE_PROBE_TEXT"] = "$(" + name + ")"
    out[name] = htcondor2.param.get("AERIE_PROBE_TEXT")
print(json.dumps(out))
"""


def params(host, *names):
    cmd = host.run_expect([0], "%s -c %s" + " %s" * len(names), VALIDATOR, PROBE, *names)
    return json.loads(cmd.stdout)


def is_htc24(host):
    return host.backend.get_hostname().endswith("htc24")


def test_fragments_are_present_with_banners(host):
    for name in FRAGMENTS:
        f = host.file(f"/etc/condor/config.d/{name}")
        assert f.is_file and f.user == "root" and f.mode == 0o644
        assert "Ansible managed" in f.content_string.splitlines()[1]
    root = host.file("/etc/condor/condor_config").content_string
    assert "Ansible managed" in root and "LOCAL_CONFIG_DIR = /etc/condor/config.d" in root


def test_configuration_loads_and_matches_the_variables(host):
    p = params(host, "DAEMON_LIST", "CONDOR_HOST", "MOUNT_UNDER_SCRATCH", "BASE_CGROUP",
               "CGROUP_MEMORY_LIMIT_POLICY", "SLOT_TYPE_1_PARTITIONABLE", "STARTER_JOB_ENVIRONMENT", "SITE_NAME")
    assert "STARTD" in p["DAEMON_LIST"].split()
    assert p["CONDOR_HOST"] == "cm.example.org"
    assert p["MOUNT_UNDER_SCRATCH"] == '"/tmp,/var/tmp,/scratch/cache"'
    assert p["BASE_CGROUP"] == "htcondor"
    assert p["CGROUP_MEMORY_LIMIT_POLICY"] == "custom"
    assert p["SLOT_TYPE_1_PARTITIONABLE"] == "True"
    assert "OSG_SQUID_LOCATION=squid.example.org:3128" in p["STARTER_JOB_ENVIRONMENT"]
    assert "http_proxy=http://squid.example.org:3128" in p["STARTER_JOB_ENVIRONMENT"]
    assert p["SITE_NAME"] == "molecule"


def test_http_inputs_go_through_the_squid_plugin(host):
    # The last plugin to claim a scheme wins: aerie's, after HTCondor's curl_plugin.
    plugins = [x.strip() for x in params(host, "FILETRANSFER_PLUGINS")["FILETRANSFER_PLUGINS"].split(",")]
    assert plugins[-1] == "/usr/libexec/aerie/http-plugin", plugins
    plugin = host.file(plugins[-1])
    assert plugin.user == "root" and plugin.mode == 0o755
    assert 'SupportedMethods = "http"' in host.check_output(f"{plugins[-1]} -classad")


def test_named_chroot_only_before_htcondor_25_5(host):
    p = params(host, "NAMED_CHROOT", "SINGULARITY_IMAGE_EXPR")
    if is_htc24(host):
        assert p["NAMED_CHROOT"] == "EL7=/chroot/el7, SL5=/chroot/sl5"
        assert p["SINGULARITY_IMAGE_EXPR"] != p["NAMED_CHROOT"]
    else:
        assert p["NAMED_CHROOT"] is None
        assert '"SL5", "/chroot/sl5"' in p["SINGULARITY_IMAGE_EXPR"]


def playbook(host, *args) -> dict:
    """Run the scenario's converge (config tasks) against one instance; Ansible's JSON report."""
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.cfg"))
    env.update(ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "--tags", "condor_worker_config", str(SCENARIO / "converge.yml"), *args],
        env=env, capture_output=True, text=True, check=False,
    )
    return json.loads(run.stdout)


def snapshot(host):
    return {f.path: f.content for f in (host.file(f"/etc/condor/config.d/{n}") for n in FRAGMENTS)}


def test_a_broken_knob_fails_with_the_parsers_message_and_changes_nothing():
    # One instance is enough, and the run is the slowest test here.
    host = testinfra.get_host(next(h for h in testinfra_hosts if h.endswith("htc24")))
    before = snapshot(host)
    report = playbook(host, "-e", json.dumps({"condor_worker_extra_knobs": {"use POLICY": "NO_SUCH_POLICY"}}))
    name = host.backend.get_hostname()
    assert report["stats"][name]["failures"] == 1
    assert report["stats"][name]["changed"] == 0
    failed = [r for task in report["plays"][0]["tasks"] for r in task["hosts"][name].get("results", [])
              if r.get("failed")]
    assert [r["item"] for r in failed] == ["90-aerie-extra.conf"]
    message = failed[0]["msg"]
    assert "Error: use POLICY: does not recognise NO_SUCH_POLICY" in message
    assert "while reading config source /etc/condor/config.d/90-aerie-extra.conf" in message
    assert snapshot(host) == before
    assert host.run("ls /etc/condor/config.d").stdout.split() == sorted(FRAGMENTS)
