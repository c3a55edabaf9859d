"""EL's package paths against real dnf and rpm (molecule.yml says how the node presents itself as EL 9).

converge installed HTCondor the default way (epel-release from extras, crb
enabled) and built a chroot tree with dnf; these tests check where every
package came from, then drive the paths a site meets: EPEL or CRB missing,
an EPEL mirror, a pinned version, and bad input.
"""

from __future__ import annotations

from pathlib import Path

import aerie_testinfra
import pytest
import testinfra

SCENARIO = Path(__file__).resolve().parent.parent
NODE = testinfra.get_host("podman://el9-node")
MIRROR = "http://127.0.0.1:8080"
# The config step needs a real HTCondor (molecule.yml).
SKIP = ("--skip-tags", "htcondor_config")


def origins(*packages: str) -> dict[str, str]:
    """Installed package -> the repository dnf installed it from."""
    out = NODE.check_output("dnf -q -C repoquery --installed --qf '%%{name} %%{from_repo}'" + " %s" * len(packages),
                            *packages)
    return dict(line.split() for line in out.splitlines())


def run(*extra: str) -> dict:
    return aerie_testinfra.run_playbook(SCENARIO / "converge.yml", *SKIP, *extra)


def failure(report: dict) -> str:
    """The message of the task that failed."""
    return " ".join(str(result.get("msg", "")) for play in report.get("plays", []) for task in play["tasks"]
                    for result in task["hosts"].values() if result.get("failed"))


def installed(package: str) -> bool:
    return NODE.run("rpm -q %s", package).rc == 0


def start_without_htcondor():
    """The node before its first HTCondor install: no condor, apptainer, squashfuse, EPEL; crb off."""
    NODE.check_output("dnf -q -y remove condor apptainer squashfuse epel-release")
    NODE.check_output("dnf -q config-manager --set-disabled crb")
    NODE.check_output("rm -f /etc/yum.repos.d/epel.repo")


def test_htcondor_comes_from_its_repository_with_apptainer_from_epel_and_squashfuse_from_crb():
    assert origins("condor", "apptainer", "squashfuse", "epel-release") == {
        "condor": "htcondor", "apptainer": "epel", "squashfuse": "crb", "epel-release": "extras"}
    # HTCondor's key was trusted by rpm_key, EPEL's came with epel-release; every repository checks signatures.
    keys = NODE.check_output("rpm -qi gpg-pubkey")
    assert "aerie htcondor test key" in keys and "aerie epel test key" in keys
    repos = NODE.check_output("cat /etc/yum.repos.d/htcondor.repo /etc/yum.repos.d/epel.repo")
    assert repos.count("gpgcheck = 1") + repos.count("gpgcheck=1") == 2


def test_the_chroot_tools_come_from_the_el_repositories_and_dnf_builds_the_tree():
    assert origins("dnf", "rpm", "coreutils", "util-linux") == dict.fromkeys(
        ["dnf", "rpm", "coreutils", "util-linux"], "baseos")
    assert NODE.file("/chroot/legacy").linked_to == "/chroot/legacy-v1"
    # (Debian's rpm keeps its own database elsewhere: name the tree's.)
    assert NODE.check_output("rpm --root /chroot/legacy-v1 --dbpath /var/lib/rpm -q aerie-legacy-base") == \
        "aerie-legacy-base-1.0-1.x86_64"
    assert NODE.run("chroot /chroot/legacy /bin/sh -c 'cat /etc/redhat-release'").stdout.strip() == \
        "Aerie Legacy release 1.0"


def test_without_epel_the_install_fails_naming_it_and_installs_nothing():
    start_without_htcondor()
    report = run("-e", '{"htcondor_el_epel": false}')
    assert report["_returncode"] != 0
    message = failure(report)
    assert "apptainer" in message and "htcondor_el_epel is false" in message, message
    assert not installed("condor") and not installed("apptainer")


def test_without_crb_the_install_fails_naming_squashfuse():
    NODE.check_output("dnf -q config-manager --set-disabled crb")
    report = run("-e", "htcondor_el_crb_repo=")
    assert report["_returncode"] != 0
    message = failure(report)
    assert "squashfuse" in message and 'htcondor_el_crb_repo is ""' in message, message
    assert not installed("condor")


def test_an_epel_mirror_installs_htcondor_and_a_second_run_changes_nothing():
    start_without_htcondor()
    mirror = ("-e", f"htcondor_el_epel_url={MIRROR}/epel",
              "-e", f"htcondor_el_epel_key_url={MIRROR}/RPM-GPG-KEY-aerie-epel")
    first = run(*mirror)
    assert first["_returncode"] == 0, first["_stderr"][-2000:] + failure(first)
    assert origins("condor", "apptainer", "squashfuse") == {"condor": "htcondor", "apptainer": "epel",
                                                            "squashfuse": "crb"}
    assert not installed("epel-release")
    assert f"baseurl = {MIRROR}/epel" in NODE.file("/etc/yum.repos.d/epel.repo").content_string
    second = run(*mirror)
    assert second["_returncode"] == 0 and second["stats"]["el9-node"]["changed"] == 0, failure(second)


def test_a_pinned_version_is_installed_through_dnf():
    # 25.0.14 is what the repository offers; the site pins the release before it.
    assert NODE.check_output("rpm -q --qf '%{VERSION}-%{RELEASE}' condor") == "25.0.14-1.el9"
    report = run("-e", "htcondor_package_version=25.0.13-1.el9")
    assert report["_returncode"] == 0, failure(report)
    assert NODE.check_output("rpm -q --qf '%{VERSION}-%{RELEASE}' condor") == "25.0.13-1.el9"
    assert "25.0.13" in NODE.check_output("condor_version")


@pytest.mark.parametrize("extra, named", [
    (("-e", f"htcondor_el_epel_url={MIRROR}/epel"), "htcondor_el_epel_key_url"),
    (("-e", "htcondor_el_epel=maybe"), "htcondor_el_epel"),
])
def test_bad_el_input_fails_before_any_change_naming_the_variable(extra, named):
    before = NODE.check_output("rpm -qa | sort; cat /etc/yum.repos.d/*.repo")
    report = run(*extra)
    assert report["_returncode"] != 0 and named in failure(report), failure(report)
    assert NODE.check_output("rpm -qa | sort; cat /etc/yum.repos.d/*.repo") == before
