"""What the site playbook, run from the installed collection, left on the node."""

import json

import aerie_testinfra

testinfra_hosts = aerie_testinfra.hosts("worker_nodes")


def test_aerie_node_recorded_the_sites_own_declaration(host):
    data = json.loads(host.file("/etc/ansible/facts.d/aerie.fact").content_string)
    assert data == {"groups": ["worker_nodes"], "managed_by": "aerie", "site": "dropin-site"}


def test_squid_client_published_the_sites_proxy(host):
    assert "squid01.example.org:3128" in host.file("/etc/profile.d/aerie-squid.sh").content_string
    assert host.file("/usr/local/bin/aerie-fetch").mode == 0o755
