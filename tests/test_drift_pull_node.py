"""The node side of pull mode (issue 19): its own inventory, its local repository, ansible-pull's checkout.

Real Ansible renders the role's inventory template for one node of a small
site inventory; real git and ansible-pull check the published release out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aerie_testutil import CONTROLLER_BIN, REPO, ansible_playbook, load_script

pull = load_script("scripts/drift-pull")

SITE = {
    "all": {
        "vars": {"htcondor_central_manager": "{{ groups['central_managers'] | first }}",
                 "aerie_node_site_name": "example"},
        "children": {
            "central_managers": {"hosts": {"cm1": {
                "ansible_host": "10.0.0.2",
                "openstack_compute_rabbit_password": "cm-secret"}}},
            "squid_servers": {"hosts": {"squid1": {
                "ansible_host": "10.0.0.5", "squid_port": 3129,
                "squid_cache_mem_mb": 512}}},
            "worker_nodes": {"hosts": {
                "wn1": {"ansible_host": "10.0.1.1", "ansible_user": "admin",
                        "ansible_become_password": "wn1-sudo",
                        "openstack_compute_rabbit_password": "wn1-secret",
                        "condor_worker_hold_runtime_cap_seconds": 600,
                        "not_a_role_variable": "kept out"},
                "wn2": {"ansible_host": "10.0.1.2",
                        "openstack_compute_rabbit_password": "wn2-secret"}}},
        },
    }
}

PLAY = """
- hosts: wn1
  gather_facts: false
  vars_files:
    - {repo}/roles/drift_check/defaults/main.yml
    - {repo}/roles/drift_check/vars/main.yml
  vars:
    role_path: {repo}/roles/drift_check
  tasks:
    - ansible.builtin.template:
        src: {repo}/roles/drift_check/templates/pull-inventory.yml.j2
        dest: "{{{{ out }}}}"
        mode: "0600"
      delegate_to: localhost
"""


def render(tmp_path: Path, inventory: dict) -> Path:
    (tmp_path / "site.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAY.format(repo=REPO))
    out = tmp_path / "wn1-inventory.yml"
    res = ansible_playbook("-i", str(tmp_path / "site.yml"), str(tmp_path / "play.yml"), "-e", f"out={out}")
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def host_vars(inventory: Path, host: str) -> dict:
    res = subprocess.run([str(CONTROLLER_BIN / "ansible-inventory"), "-i", str(inventory), "--host", host],
                         capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")})
    return json.loads(res.stdout)


def test_a_nodes_inventory_holds_its_own_role_variables_rendered_and_no_other_hosts_secret(tmp_path):
    out = render(tmp_path, SITE)
    text = out.read_text()
    for secret in ("cm-secret", "wn2-secret", "wn1-sudo", "kept out"):
        assert secret not in text
    assert "wn2" not in text  # a worker is not a shared group: its other members are left out
    mine = host_vars(out, "wn1")
    assert mine["ansible_connection"] == "local"
    # Rendered where the site's inventory templated it from groups.
    assert mine["htcondor_central_manager"] == "cm1"
    assert mine["condor_worker_hold_runtime_cap_seconds"] == 600
    assert mine["openstack_compute_rabbit_password"] == "wn1-secret"  # its own, in a 0600 file
    assert "ansible_user" not in mine and "ansible_host" not in mine
    # What role defaults read from other hosts: the squid's address and port, nothing else.
    assert host_vars(out, "squid1") == {"ansible_host": "10.0.0.5", "squid_port": 3129}
    assert host_vars(out, "cm1") == {"ansible_host": "10.0.0.2"}
    groups = yaml.safe_load(text)["all"]["children"]
    assert list(groups["worker_nodes"]["hosts"]) == ["wn1"]
    assert list(groups["central_managers"]["hosts"]) == ["cm1"]


def test_rendering_a_nodes_inventory_again_from_itself_gives_the_same_file(tmp_path):
    (tmp_path / "a").mkdir()
    first = render(tmp_path / "a", SITE)
    again_dir = tmp_path / "b"
    again_dir.mkdir()
    (again_dir / "site.yml").write_text(first.read_text())
    (again_dir / "play.yml").write_text(PLAY.format(repo=REPO))
    out = again_dir / "again.yml"
    res = ansible_playbook("-i", str(again_dir / "site.yml"), str(again_dir / "play.yml"), "-e", f"out={out}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert out.read_text() == first.read_text()


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "release"
    (root / "scripts").mkdir(parents=True)
    (root / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    (root / "scripts" / "tool").write_text("#!/bin/sh\n")
    (root / "scripts" / "tool").chmod(0o755)
    (root / "collections" / "ansible_collections" / "aerie").mkdir(parents=True)
    (root / "collections" / "ansible_collections" / "aerie" / "grid").symlink_to("../../..")
    (root / "REVISION").write_text("abc123\n")
    return root


def test_publish_commits_the_release_once_and_ansible_pull_checks_it_out_whole(release, tmp_path, capsys):
    repo = tmp_path / "aerie.git"
    before = sorted(p.name for p in release.rglob("*"))
    assert pull.publish(release, repo) == 0
    assert capsys.readouterr().out.strip() == "published abc123"
    assert pull.publish(release, repo) == 0
    assert capsys.readouterr().out.strip() == "unchanged"
    assert sorted(p.name for p in release.rglob("*")) == before  # the release itself is never written

    (release / "REVISION").write_text("def456\n")
    assert pull.publish(release, repo) == 0
    assert capsys.readouterr().out.strip() == "published def456"

    # ansible-pull's own checkout step (the git module), as the node's timer runs it.
    checkout = tmp_path / "checkout"
    res = subprocess.run([str(CONTROLLER_BIN / "ansible-pull"), "--url", f"file://{repo}", "--checkout", "main",
                          "--directory", str(checkout), "--full", "-i", "localhost,", "site.yml",
                          # This machine's pyenv shims name interpreters that are not installed.
                          "-e", f"ansible_python_interpreter={sys.executable}"],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert (checkout / "REVISION").read_text() == "def456\n"
    assert os.access(checkout / "scripts" / "tool", os.X_OK)
    assert os.readlink(checkout / "collections" / "ansible_collections" / "aerie" / "grid") == "../../.."


def test_the_delivery_uses_the_nodes_key_and_known_host_alone(tmp_path):
    args = pull.main.__globals__["argparse"].Namespace(
        key=tmp_path / "id", known_hosts=tmp_path / "kh", to="aerie-drift@mgmt")
    cmd = pull.deliver_command(args)
    assert cmd[0] == "ssh" and cmd[-1] == "aerie-drift@mgmt"
    for option in ("IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=yes",
                   f"UserKnownHostsFile={tmp_path / 'kh'}"):
        assert option in cmd
