"""condor_config_fragment: HTCondor's real parser decides, the old fragment survives a rejection.

The parser is the htcondor2 bindings of this venv in a child process, exactly
as on a node without HTCondor; the module itself runs through `ansible`
against localhost (no root needed: everything lives under tmp_path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from aerie_testutil import CONTROLLER_BIN
from ansible_collections.aerie.grid.plugins.module_utils import aerie_condor

REPO = Path(__file__).resolve().parent.parent


def run(argv, env):
    proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def node(tmp_path):
    """A root config owning LOCAL_CONFIG_DIR, as the role writes it where HTCondor is not installed."""
    etc = tmp_path / "etc"
    (etc / "config.d").mkdir(parents=True)
    (etc / "condor_config").write_text(f"LOCAL_CONFIG_DIR = {etc / 'config.d'}\n")
    (etc / "config.d" / "10-execute.conf").write_text("use ROLE : Execute\nCONDOR_HOST = cm.example.org\n")
    work = tmp_path / "work"
    work.mkdir()
    return etc, work


def check(etc, work, name, content, names=("DAEMON_LIST",), validator="htcondor2", program=sys.executable):
    # A fresh work directory per run, like the module's temporary one.
    return aerie_condor.validate(run, validator, program, str(etc / "condor_config"), str(etc / "config.d"),
                                 name, content, tempfile.mkdtemp(dir=work), list(names))


def test_accepted_configuration_returns_expanded_values(node):
    etc, work = node
    params = check(etc, work, "20-scratch.conf", 'MOUNT_UNDER_SCRATCH = "/tmp,/var/tmp"\n',
                   ["DAEMON_LIST", "MOUNT_UNDER_SCRATCH", "CONDOR_HOST", "NO_SUCH_KNOB"])
    assert params == {"DAEMON_LIST": "MASTER STARTD", "MOUNT_UNDER_SCRATCH": '"/tmp,/var/tmp"',
                      "CONDOR_HOST": "cm.example.org", "NO_SUCH_KNOB": None}
    # Validation never touches the real directory.
    assert sorted(os.listdir(etc / "config.d")) == ["10-execute.conf"]


def test_unknown_policy_is_rejected_with_the_parsers_message_naming_the_real_file(node):
    etc, work = node
    with pytest.raises(aerie_condor.Rejected) as err:
        check(etc, work, "90-extra.conf", "use POLICY : NO_SUCH_POLICY\n")
    message = str(err.value)
    assert "does not recognise NO_SUCH_POLICY" in message
    assert f"Configuration Error Line 1 while reading config source {etc / 'config.d' / '90-extra.conf'}" in message
    assert str(work) not in message


def test_candidate_replaces_the_fragment_of_the_same_name(node):
    etc, work = node
    (etc / "config.d" / "90-extra.conf").write_text("use POLICY : NO_SUCH_POLICY\n")
    # The fix for a broken fragment is accepted...
    assert check(etc, work, "90-extra.conf", "use POLICY : ALWAYS_RUN_JOBS\n", ["PREEMPT"]) == {"PREEMPT": "False"}
    # ...but a new fragment beside a broken one is not: the daemons would read both.
    with pytest.raises(aerie_condor.Rejected, match="NO_SUCH_POLICY"):
        check(etc, work, "50-ok.conf", "FOO = 1\n")


def test_later_fragments_win_so_validation_sees_the_whole_directory(node):
    etc, work = node
    (etc / "config.d" / "99-site.conf").write_text("MOUNT_UNDER_SCRATCH = /tmp\n")
    params = check(etc, work, "20-scratch.conf", 'MOUNT_UNDER_SCRATCH = "/var/tmp"\n', ["MOUNT_UNDER_SCRATCH"])
    assert params == {"MOUNT_UNDER_SCRATCH": "/tmp"}


def test_removal_validates_the_configuration_without_the_fragment(node):
    etc, work = node
    assert check(etc, work, "10-execute.conf", None, ["DAEMON_LIST"]) == {"DAEMON_LIST": "MASTER"}


def test_other_config_dirs_keep_their_place(tmp_path, node):
    etc, work = node
    vendor = tmp_path / "usr-share-condor"
    vendor.mkdir()
    (vendor / "00-vendor.conf").write_text("VENDOR_KNOB = packaged\nCONDOR_HOST = vendor.example\n")
    (etc / "condor_config").write_text(f"LOCAL_CONFIG_DIR = {vendor}, {etc / 'config.d'}\n")
    params = check(etc, work, "20-x.conf", "X = 1\n", ["VENDOR_KNOB", "CONDOR_HOST"])
    assert params == {"VENDOR_KNOB": "packaged", "CONDOR_HOST": "cm.example.org"}


def test_a_directory_htcondor_never_reads_is_refused(node, tmp_path):
    etc, work = node
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(aerie_condor.ValidationError, match="is not in LOCAL_CONFIG_DIR"):
        aerie_condor.validate(run, "htcondor2", sys.executable, str(etc / "condor_config"), str(elsewhere),
                              "x.conf", "X = 1\n", str(work), [])


def test_missing_root_config_is_an_error_not_a_silent_default(node):
    etc, work = node
    (etc / "condor_config").unlink()
    with pytest.raises(aerie_condor.ValidationError, match="does not exist"):
        check(etc, work, "20-x.conf", "X = 1\n")


def test_broken_root_config_is_rejected(node):
    etc, work = node
    (etc / "condor_config").write_text(f"LOCAL_CONFIG_DIR = {etc / 'config.d'}\nthis is not a knob\n")
    with pytest.raises(aerie_condor.Rejected, match=r'Config source Error ".*/etc/condor_config", Line 2'):
        check(etc, work, "20-x.conf", "X = 1\n")


# condor_config_val is not installable here; a stand-in with its command line
# (`-dump`, `NAME`) answers through the same real parser, so the route that
# runs on HTCondor nodes is exercised end to end (env, exit codes, values).
FAKE_CCV = """#!{python}
import sys
import htcondor2
if sys.argv[1] == "-dump":
    print("# dump")
    sys.exit(0)
value = htcondor2.param.get(sys.argv[1])
if value is None:
    print("Not defined: " + sys.argv[1], file=sys.stderr)
    sys.exit(1)
print(value)
"""


def test_condor_config_val_route(node, tmp_path):
    etc, work = node
    ccv = tmp_path / "condor_config_val"
    ccv.write_text(FAKE_CCV.format(python=sys.executable))
    ccv.chmod(0o755)
    params = check(etc, work, "20-x.conf", "X = 1\n", ["X", "DAEMON_LIST", "NOPE"],
                   validator="condor_config_val", program=str(ccv))
    assert params == {"X": "1", "DAEMON_LIST": "MASTER STARTD", "NOPE": None}
    with pytest.raises(aerie_condor.Rejected, match="NO_SUCH_POLICY"):
        check(etc, work, "20-x.conf", "use POLICY : NO_SUCH_POLICY\n",
              validator="condor_config_val", program=str(ccv))


# The module itself, through Ansible on localhost.


def ansible_module(tmp_path: Path, args: dict, *flags: str) -> dict:
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }
    proc = subprocess.run(
        [str(CONTROLLER_BIN / "ansible"), "localhost", "-c", "local",
         "-m", "aerie.grid.condor_config_fragment", "-e", f"ansible_python_interpreter={sys.executable}",
         "-a", json.dumps(args), *flags],
        env=env, capture_output=True, text=True, check=False,
    )
    out = json.loads(proc.stdout)
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_module_check_diff_write_and_rejection(node, tmp_path):
    etc, _ = node
    fragment = etc / "config.d" / "20-scratch.conf"
    args = {"path": str(fragment), "content": 'MOUNT_UNDER_SCRATCH = "/tmp"\n',
            "root_config": str(etc / "condor_config"), "validator": "htcondor2", "query": ["MOUNT_UNDER_SCRATCH"]}

    res = ansible_module(tmp_path, args, "--check", "--diff")
    assert res["changed"] and res["validated"] and not fragment.exists()
    assert res["diff"]["after"] == 'MOUNT_UNDER_SCRATCH = "/tmp"\n'

    res = ansible_module(tmp_path, args)
    assert res["changed"] and res["params"] == {"MOUNT_UNDER_SCRATCH": '"/tmp"'}
    assert fragment.read_text() == 'MOUNT_UNDER_SCRATCH = "/tmp"\n'
    assert oct(fragment.stat().st_mode & 0o7777) == "0o644"
    assert not ansible_module(tmp_path, args)["changed"]

    before = fragment.read_bytes()
    res = ansible_module(tmp_path, {**args, "content": "use POLICY : NO_SUCH_POLICY\n"})
    assert res["failed"] and not res["changed"] and "does not recognise NO_SUCH_POLICY" in res["msg"]
    assert str(fragment) in res["msg"]
    assert fragment.read_bytes() == before
    assert sorted(os.listdir(fragment.parent)) == ["10-execute.conf", "20-scratch.conf"]


def test_module_in_check_mode_on_a_fresh_node_reports_without_failing(tmp_path):
    fragment = tmp_path / "config.d" / "20-x.conf"
    args = {"path": str(fragment), "content": "X = 1\n", "root_config": str(tmp_path / "condor_config"),
            "validator": "htcondor2", "python": str(tmp_path / "venv" / "bin" / "python")}
    res = ansible_module(tmp_path, args, "--check")
    assert res["changed"] and not res["validated"] and not res.get("failed")
    assert "not validated in check mode" in " ".join(res["warnings"])
    res = ansible_module(tmp_path, args)
    assert res["failed"] and "does not exist" in res["msg"]
