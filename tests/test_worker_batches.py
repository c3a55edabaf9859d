"""The worker play's batch keywords, run by Ansible itself: a site rolls a
change through its workers batch by batch, and a failing batch stops the
play before the next one is touched. The play under test carries
playbooks/worker_nodes.yml's own serial and max_fail_percentage values
(molecule/condor_pool proves the same on real workers)."""

import json

import pytest
import yaml
from aerie_testutil import REPO, ansible_playbook

WORKER_PLAY = yaml.safe_load((REPO / "playbooks/worker_nodes.yml").read_text())[0]
HOSTS = [f"wn{i}" for i in range(1, 9)]


def run(tmp_path, failing: list[str], *extra: str) -> dict[str, list[str]]:
    """Run a play with the worker play's batch keywords over 8 local hosts; the batch of each host it reached."""
    inventory = {"all": {"children": {"worker_nodes": {"hosts": {
        h: {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        for h in HOSTS}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    play = {k: WORKER_PLAY[k] for k in ("hosts", "serial", "max_fail_percentage")}
    play |= {"name": "Batches", "gather_facts": False, "tasks": [
        {"name": "Record the batch", "ansible.builtin.debug": {"msg": "{{ ansible_play_batch | join(',') }}"}},
        {"name": "A change that fails where it is told to",
         "ansible.builtin.fail": {"msg": "broken"}, "when": f"inventory_hostname in {json.dumps(failing)}"},
    ]}
    (tmp_path / "play.yml").write_text(yaml.safe_dump([play]))
    done = ansible_playbook("-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml"), *extra,
                            env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"})
    out = json.loads(done.stdout)
    batches = {}
    for p in out["plays"]:
        for task in p["tasks"]:
            for host, result in task["hosts"].items():
                if task["task"]["name"] == "Record the batch" and not result.get("skipped"):
                    batches[host] = result["msg"].split(",")
    return batches


def test_by_default_a_quarter_of_the_workers_at_a_time(tmp_path):
    batches = run(tmp_path, [])
    assert sorted(batches) == HOSTS
    assert {len(b) for b in batches.values()} == {2}


def test_a_failure_in_the_first_batch_stops_the_roll_out(tmp_path):
    batches = run(tmp_path, ["wn1"])
    assert sorted(batches) == ["wn1", "wn2"]  # wn1 failed; wn3..wn8 were never touched


@pytest.mark.parametrize(("size", "failures", "reached"), [("4", "10", 4), ("4", "30", 8)])
def test_the_site_sizes_batches_and_tolerated_failures(tmp_path, size, failures, reached):
    # One failure in a batch of 4 is 25%: over a 10% limit the roll-out stops, under 30% it goes on.
    batches = run(tmp_path, ["wn1"], "-e", f"aerie_worker_batch={size}",
                  "-e", f"aerie_worker_max_fail_percentage={failures}")
    assert len(batches) == reached
