"""The nfs plugin against the real qemu-img and qemu-io (Debian package qemu-utils).

Templates are small sparse files; each test stages instances through the
plugin exactly as HTCondor would run it and inspects them with qemu's tools.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from test_vm_plugin import multi, plugin, read_results, run_plugin, sha256, site  # noqa: F401  (site is a fixture)

MiB = 1 << 20


def qemu(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done


def info(path: Path) -> dict:
    return json.loads(qemu("qemu-img", "info", "--output=json", "-U", str(path)).stdout)


@pytest.fixture
def qcow2_template(site):  # noqa: F811
    """A qcow2 template holding 1 MiB of 0x5a at offset 0."""
    path = site.root / "el9.qcow2"
    qemu("qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M")
    qemu("qemu-io", "-f", "qcow2", "-c", "write -q -P 0x5a 0 1M", str(path))
    return path


def assert_overlay(instance: Path, template: Path, fmt: str) -> None:
    got = info(instance)
    assert got["format"] == "qcow2"
    assert got["backing-filename"] == str(template.resolve())
    assert got["backing-filename-format"] == fmt
    assert got["virtual-size"] == info(template)["virtual-size"]
    # A copy-on-write overlay, not a copy: a few hundred KiB whatever the template size.
    assert instance.stat().st_size < 1 * MiB


def no_leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".part")]


def test_legacy_mode_original_url_form_on_a_sparse_raw_template(site):  # noqa: F811
    url = f"nfs:{site.raw}:vmimage.img"
    # HTCondor names the destination after the URL's last path component.
    dest = site.sandbox / f"{site.raw.name}:vmimage.img"
    done = run_plugin(url, str(dest), env=site.env)
    assert done.returncode == 0, done.stderr
    instance = site.sandbox / "vmimage.img"
    assert_overlay(instance, site.raw, "raw")
    assert not dest.exists()
    assert no_leftovers(site.sandbox) == []


def test_legacy_mode_triple_slash_form_names_the_instance_after_dest(site, qcow2_template):  # noqa: F811
    dest = site.sandbox / "disk.qcow2"
    done = run_plugin(f"nfs://{qcow2_template}", str(dest), env=site.env)
    assert done.returncode == 0, done.stderr
    assert_overlay(dest, qcow2_template, "qcow2")


def test_multi_file_mode_stages_raw_and_qcow2_templates(site, qcow2_template, tmp_path):  # noqa: F811
    requests = [
        (f"nfs://{site.raw}:vmimage.img", str(site.sandbox / f"{site.raw.name}:vmimage.img")),
        (f"nfs://{qcow2_template}", str(site.sandbox / "el9.qcow2")),
    ]
    done, results = multi(site, tmp_path, requests)
    assert done.returncode == 0, done.stderr
    assert [ad["TransferSuccess"] for ad in results] == [True, True]
    first, _second = results
    assert first["TransferFileName"] == str(site.sandbox / "vmimage.img")
    assert first["TransferUrl"] == requests[0][0]
    assert first["TransferTotalBytes"] == (site.sandbox / "vmimage.img").stat().st_size
    assert first["TransferStartTime"] <= first["TransferEndTime"]
    assert_overlay(site.sandbox / "vmimage.img", site.raw, "raw")
    assert_overlay(site.sandbox / "el9.qcow2", qcow2_template, "qcow2")
    assert no_leftovers(site.sandbox) == []


def test_writing_into_instances_leaves_templates_unchanged(site, qcow2_template, tmp_path):  # noqa: F811
    raw_sum, qcow2_sum = sha256(site.raw), sha256(qcow2_template)
    raw_mtime, qcow2_mtime = site.raw.stat().st_mtime_ns, qcow2_template.stat().st_mtime_ns
    requests = [
        (f"nfs:{site.raw}:a.img", str(site.sandbox / "ignored-a")),
        (f"nfs:{qcow2_template}:b.img", str(site.sandbox / "ignored-b")),
    ]
    done, _ = multi(site, tmp_path, requests)
    assert done.returncode == 0, done.stderr
    for name in ("a.img", "b.img"):
        instance = str(site.sandbox / name)
        qemu("qemu-io", "-f", "qcow2", "-c", "write -q -P 0xab 0 2M", instance)
        qemu("qemu-io", "-f", "qcow2", "-c", "read -q -P 0xab 0 2M", instance)
    # The guest sees the template's data where it did not write.
    qemu("qemu-io", "-f", "qcow2", "-c", "read -q -P 0 2M 1M", str(site.sandbox / "a.img"))
    qemu("qemu-io", "-f", "qcow2", "-c", "read -q -P 0x5a 0 1M", str(qcow2_template))
    assert sha256(site.raw) == raw_sum
    assert sha256(qcow2_template) == qcow2_sum
    assert site.raw.stat().st_mtime_ns == raw_mtime
    assert qcow2_template.stat().st_mtime_ns == qcow2_mtime


def test_backing_file_is_the_resolved_template(site):  # noqa: F811
    (site.root / "current.img").symlink_to(site.raw.name)
    done = run_plugin(f"nfs://{site.root}/current.img:vm.img", str(site.sandbox / "x"), env=site.env)
    assert done.returncode == 0, done.stderr
    # Flipping the symlink later must not swap the disk under a running job.
    assert info(site.sandbox / "vm.img")["backing-filename"] == str(site.raw.resolve())


def test_restaging_replaces_an_existing_instance(site):  # noqa: F811
    instance = site.sandbox / "vm.img"
    instance.write_bytes(b"stale data")
    done = run_plugin(f"nfs://{site.raw}", str(instance), env=site.env)
    assert done.returncode == 0, done.stderr
    assert_overlay(instance, site.raw, "raw")


def test_refuses_a_template_with_its_own_backing_file(site, tmp_path):  # noqa: F811
    chained = site.root / "chained.qcow2"
    qemu("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(site.secret), "-F", "raw", str(chained))
    done, (ad,) = multi(site, tmp_path, [(f"nfs://{chained}:vm.img", str(site.sandbox / "x"))])
    assert done.returncode == 1
    assert "refers to other files" in ad["TransferError"] and str(site.secret) in ad["TransferError"]
    assert list(site.sandbox.iterdir()) == []


def test_refuses_a_format_not_allowed(site, tmp_path):  # noqa: F811
    vmdk = site.root / "win.vmdk"
    qemu("qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "16M")
    done, (ad,) = multi(site, tmp_path, [(f"nfs://{vmdk}:vm.img", str(site.sandbox / "x"))])
    assert done.returncode == 1
    assert "is vmdk, not one of qcow2, raw" in ad["TransferError"]
    assert list(site.sandbox.iterdir()) == []


def test_one_failure_fails_the_call_but_not_the_other_files(site, tmp_path):  # noqa: F811
    requests = [
        (f"nfs://{site.raw}:good.img", str(site.sandbox / "g")),
        (f"nfs://{site.root}/missing.img:bad.img", str(site.sandbox / "b")),
    ]
    done, (good, bad) = multi(site, tmp_path, requests)
    assert done.returncode == 1
    assert good["TransferSuccess"] is True
    assert bad["TransferSuccess"] is False
    assert "does not exist" in bad["TransferError"]
    assert sorted(os.listdir(site.sandbox)) == ["good.img"]


def test_qemu_img_missing_is_reported(site, tmp_path):  # noqa: F811
    site.config.write_text(f"[vm-nfs-plugin]\nallowed_roots = {site.root}\nqemu_img = {tmp_path}/no-such-qemu-img\n")
    done, (ad,) = multi(site, tmp_path, [(f"nfs://{site.raw}:vm.img", str(site.sandbox / "x"))])
    assert done.returncode == 1
    assert "qemu-img not found" in ad["TransferError"]


# -- a hostile job owner (the URL is theirs) ----------------------------------
def test_refuses_a_qcow2_template_with_an_external_data_file_outside_the_roots(site, tmp_path):  # noqa: F811
    """qcow2's data-file: the image's clusters live in another file, which the instance would read."""
    site.secret.write_bytes(b"SECRET" * (1 << 16))
    hostile = site.root / "hostile.qcow2"
    qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={site.secret},data_file_raw=on",
         str(hostile), str(site.secret.stat().st_size))
    assert info(hostile)["format-specific"]["data"]["data-file"] == str(site.secret)
    done, (ad,) = multi(site, tmp_path, [(f"nfs://{hostile}:vm.img", str(site.sandbox / "x"))])
    assert done.returncode == 1
    assert ad["TransferSuccess"] is False
    assert f"external data file {site.secret}" in ad["TransferError"]
    assert list(site.sandbox.iterdir()) == []


def test_a_template_swapped_for_a_symlink_while_jobs_stage_it_is_never_staged_from_the_target(site, tmp_path):  # noqa: F811
    """The check and what qemu-img reads are one open file: a swap makes a refusal, never the outside target.

    swap.qcow2 in the root flips between a hard link to a 32 MiB template and a
    symlink to a 48 MiB image outside the roots; an instance made from the
    outside image would have its size.
    """
    inside = site.root / "inside.qcow2"
    qemu("qemu-img", "create", "-q", "-f", "qcow2", str(inside), "32M")
    outside = site.outside / "outside.qcow2"
    qemu("qemu-img", "create", "-q", "-f", "qcow2", str(outside), "48M")
    swap, tmp = site.root / "swap.qcow2", site.root / ".swap.tmp"
    os.link(inside, swap)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            for make in (lambda: os.symlink(outside, tmp), lambda: os.link(inside, tmp)):
                make()
                os.replace(tmp, swap)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        outcomes = []
        for i in range(40):
            done, (ad,) = multi(site, tmp_path, [(f"nfs://{swap}:vm{i}.img", str(site.sandbox / "x"))])
            outcomes.append(ad)
            assert "Traceback" not in done.stderr
    finally:
        stop.set()
        flipper.join()
    for i, ad in enumerate(outcomes):
        if ad["TransferSuccess"]:
            staged = info(site.sandbox / f"vm{i}.img")
            assert staged["virtual-size"] == 32 << 20, "staged from the image outside the roots"
            assert staged["backing-filename"] == str(swap)
        else:
            assert any(reason in ad["TransferError"] for reason in
                       ("outside the allowed roots", "changed while it was checked")), ad["TransferError"]


@pytest.mark.parametrize(("url", "local", "reason"), [
    (r"nfs:///srv/vm\000/../etc/shadow:vm.img", "x", "URL contains a NUL byte"),
    (r"nfs:///srv/vm/t.img:vm\000.img", "x", "URL contains a NUL byte"),
    ("nfs://{raw}", r"x\000y", "destination path contains a NUL byte"),
])
def test_a_nul_byte_gets_a_result_ad_with_the_reason_not_a_traceback(site, tmp_path, url, local, reason):  # noqa: F811
    # Written as ClassAd octal escapes, which HTCondor's ads carry and the plugin decodes to NUL.
    infile = tmp_path / "in.ads"
    dest = str(site.sandbox) + "/" + local
    infile.write_text(f'[ Url = "{url.format(raw=site.raw)}"; LocalFileName = "{dest}" ]\n')
    outfile = tmp_path / "out.ads"
    outfile.write_text("")
    done = run_plugin("-infile", str(infile), "-outfile", str(outfile), env=site.env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (ad,) = read_results(outfile)
    assert ad["TransferSuccess"] is False
    assert reason in ad["TransferError"]
    assert list(site.sandbox.iterdir()) == []
