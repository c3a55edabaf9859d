"""The harness works: systemd boots, the role converged, testinfra sees it."""

import json

import aerie_testinfra

testinfra_hosts = aerie_testinfra.hosts("worker_nodes")


def test_systemd_is_pid_1_and_the_system_is_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    # "running" (not "degraded"): the image masks units that fail in containers.
    assert host.run("systemctl is-system-running").stdout.strip() == "running"


def test_testinfra_uses_the_podman_backend(host):
    assert host.backend.NAME == "podman"


def test_role_result_is_visible(host):
    fact = host.file("/etc/ansible/facts.d/aerie.fact")
    assert fact.mode == 0o644
    data = json.loads(fact.content_string)
    assert data == {"groups": ["worker_nodes"], "managed_by": "aerie", "site": "harness"}


def test_sshd_has_per_container_host_keys(host):
    # Keys are generated at first boot, never baked into the shared image.
    assert host.file("/etc/ssh/ssh_host_ed25519_key").exists
    assert host.service("ssh").is_running
