"""The nfs file-transfer plugin: URL parsing, ClassAds, result ads and every refusal.

The plugin is a standalone script (roles/condor_vm/files/aerie-vm-nfs-plugin);
these tests import it as a module for its pure functions and run it as
HTCondor does (a subprocess) for the protocol. classad2 (HTCondor's own
ClassAd engine) checks what the plugin writes and what it reads.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import SimpleNamespace

import classad2
import pytest

PLUGIN = Path(__file__).resolve().parent.parent / "roles" / "condor_vm" / "files" / "aerie-vm-nfs-plugin"


def load_plugin():
    loader = SourceFileLoader("aerie_vm_nfs_plugin", str(PLUGIN))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    sys.modules[loader.name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


plugin = load_plugin()


def run_plugin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the plugin the way the starter does: a separate process."""
    return subprocess.run(
        [sys.executable, str(PLUGIN), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **env},
        timeout=60,
        check=False,
    )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def site(tmp_path: Path) -> SimpleNamespace:
    """An allowed template root, an execute dir with one job sandbox, a config file."""
    templates = tmp_path / "nfs" / "templates"
    templates.mkdir(parents=True)
    execute = tmp_path / "execute"
    sandbox = execute / "dir_4242"
    sandbox.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    raw = templates / "sl6.img"
    with raw.open("wb") as handle:  # sparse raw image with a recognisable first sector
        handle.write(b"\xeb\x63\x90aerie-template".ljust(512, b"\0"))
        handle.truncate(64 << 20)
    secret = outside / "secret.img"
    secret.write_bytes(b"\0" * 4096)
    config = tmp_path / "vm-nfs-plugin.conf"
    config.write_text(f"[vm-nfs-plugin]\nallowed_roots = {templates}\nexecute_dir = {execute}\n")
    env = {plugin.CONFIG_ENV: str(config), plugin.SANDBOX_ENV: str(sandbox)}
    return SimpleNamespace(
        root=templates,
        execute=execute,
        sandbox=sandbox,
        outside=outside,
        raw=raw,
        secret=secret,
        config=config,
        env=env,
    )


def write_infile(path: Path, requests: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"[ Url = {plugin.quote(u)}; LocalFileName = {plugin.quote(f)} ]\n" for u, f in requests))
    return path


def read_results(path: Path) -> list[classad2.ClassAd]:
    return list(classad2.parseAds(path.read_text(), classad2.ParserType.New))


def multi(site: SimpleNamespace, tmp_path: Path, requests: list[tuple[str, str]], *extra: str):
    infile = write_infile(tmp_path / "in.ads", requests)
    outfile = tmp_path / "out.ads"
    outfile.write_text("")
    done = run_plugin("-infile", str(infile), "-outfile", str(outfile), *extra, env=site.env)
    return done, read_results(outfile)


# ------------------------------------------------------------------ -classad


def test_classad_query_announces_nfs_and_protocol_2():
    done = run_plugin("-classad", env={})
    assert done.returncode == 0, done.stderr
    ad = classad2.parseOne(done.stdout, classad2.ParserType.Old)
    assert ad["SupportedMethods"] == "nfs"
    assert ad["PluginType"] == "FileTransfer"
    assert ad["MultipleFileSupport"] is True
    assert ad["ProtocolVersion"] == 2
    assert ad["PluginVersion"] == plugin.PLUGIN_VERSION


@pytest.mark.parametrize("args", [[], ["-infile", "x"], ["-bogus"], ["-infile", "a", "-outfile"], ["one"]])
def test_usage_errors_exit_2(args):
    done = run_plugin(*args, env={})
    assert done.returncode == 2
    assert "usage" in done.stderr or "unexpected argument" in done.stderr


# ---------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nfs:/srv/vm/sl6.qcow2:vmimage.img", ("/srv/vm/sl6.qcow2", "vmimage.img")),
        ("nfs:///srv/vm/sl6.qcow2:vmimage.img", ("/srv/vm/sl6.qcow2", "vmimage.img")),
        ("nfs:///srv/vm/sl6.qcow2", ("/srv/vm/sl6.qcow2", None)),
        ("nfs:/srv/vm/sl6.qcow2", ("/srv/vm/sl6.qcow2", None)),
        ("NFS:///srv/vm/a b.img:disk one.img", ("/srv/vm/a b.img", "disk one.img")),
    ],
)
def test_url_forms(url, expected):
    assert plugin.parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.org/sl6.img", "unsupported URL scheme"),
        ("file:///srv/vm/sl6.img", "unsupported URL scheme"),
        ("/srv/vm/sl6.img", "unsupported URL scheme"),
        ("nfs://fileserver/srv/vm/sl6.img", "names a host"),
        ("nfs:srv/vm/sl6.img:x.img", "not an absolute path"),
        ("nfs:/srv/vm/sl6.img:../../etc/cron.d/evil", "not a plain file name"),
        ("nfs:/srv/vm/sl6.img:..", "not a plain file name"),
        ("nfs:/srv/vm/sl6.img:sub/x.img", "not a plain file name"),
        ("nfs:/srv/vm/sl6.img:", "empty instance file name"),
        ("nfs:/srv/vm/sl6.img:a\nb", "control characters"),
        ("", "empty URL"),
    ],
)
def test_url_refusals(url, reason):
    with pytest.raises(plugin.Refused, match=reason):
        plugin.parse_url(url)


def test_create_command_names_backing_format_and_never_opens_the_backing_file():
    cmd = plugin.qemu_img_create_command("/srv/t.img", "raw", "/x/.i.part", 64 << 20)
    assert cmd[cmd.index("-b") + 1] == "/srv/t.img"
    assert cmd[cmd.index("-F") + 1] == "raw"
    assert cmd[cmd.index("-f") + 1] == "qcow2"
    # -u: qemu-img does not open the template by path again; the size comes from the checked descriptor.
    assert "-u" in cmd
    assert cmd[-2:] == ["/x/.i.part", str(64 << 20)]


# ----------------------------------------------------------------- ClassAds

INFILE = r"""
[ LocalFileName = "/var/lib/condor/execute/dir_1/sl6.img:vmimage.img"; Url = "nfs:///srv/vm/sl6.img:vmimage.img" ]
[
  // HTCondor may add attributes this plugin does not know
  Url = "nfs:///srv/vm/with \"quotes\" and \\ and \101.img";
  LocalFileName = "/var/lib/condor/execute/dir_1/b.img";
  /* an expression, a list and a nested ad */
  Size = 3 * (1024 + 1);
  Hints = { "a", 2, [ x = 1; y = { } ], 1.5e3 };
  'Quoted Name' = true;
  Missing = undefined;
  Cmp = Size == 3 && Size =!= undefined && Size >= 1
]
"""


def test_infile_parsing_agrees_with_htcondor_classad_engine():
    ours = plugin.parse_ads(INFILE)
    theirs = list(classad2.parseAds(INFILE, classad2.ParserType.New))
    assert len(ours) == len(theirs) == 2
    for mine, ref in zip(ours, theirs):  # noqa: B905  (lengths asserted above; strict= is 3.10+, this runs on 3.9 too)
        for key in ("Url", "LocalFileName"):
            assert mine.get(key) == ref.get(key)
    assert ours[1]["Url"] == 'nfs:///srv/vm/with "quotes" and \\ and A.img'
    assert ours[1]["Hints"][:2] == ["a", 2]
    assert ours[1]["Quoted Name"] is True


@pytest.mark.parametrize(
    "text",
    [
        '[ Url = "nfs:///a.img"; LocalFileName = "/x ]',  # unterminated string
        '[ Url = "nfs:///a.img"; LocalFileName = "/x" ',  # missing ]
        'Url = "nfs:///a.img"',  # old format is not what HTCondor writes here
        '[ Url = ; LocalFileName = "/x" ]',  # missing value
        '[ Url = "a" LocalFileName = "/x" ]',  # missing ;
        '[ Size = (1 + 2; Url = "a" ]',  # unbalanced
        "garbage",
    ],
)
def test_malformed_infiles_are_rejected(text):
    with pytest.raises(plugin.MalformedAd):
        plugin.parse_ads(text)


@pytest.mark.parametrize(
    "value",
    ["plain", 'with "quotes"', "back\\slash", "new\nline\ttab\rcr", "bell\x07 del\x7f", "ünïcödé ✓", ""],
)
def test_result_ads_round_trip_through_classad2(value):
    ad = plugin.result_ad("nfs:///a.img", "/s/a.img", 10.7, 12.2, error=value)
    text = plugin.format_ad(ad)
    (parsed,) = classad2.parseAds(text, classad2.ParserType.New)
    assert parsed["TransferError"] == value
    assert parsed["TransferSuccess"] is False
    assert parsed["TransferStartTime"] == 10
    assert parsed["TransferEndTime"] == 12
    assert plugin.parse_ads(text)[0]["TransferError"] == value


def test_successful_result_ad_has_no_error():
    ad = plugin.result_ad("nfs:///a.img", "/s/a.img", 1, 2, total_bytes=196616)
    (parsed,) = classad2.parseAds(plugin.format_ad(ad), classad2.ParserType.New)
    assert parsed["TransferSuccess"] is True
    assert "TransferError" not in parsed
    assert parsed["TransferTotalBytes"] == 196616
    assert parsed["TransferProtocol"] == "nfs"
    assert parsed["TransferType"] == "download"


# ------------------------------------------------------------ configuration


def test_config_lists_roots_and_optional_settings(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("[vm-nfs-plugin]\nallowed_roots = /srv/a:/srv/b\n  /nfs/c\nallowed_formats = qcow2\n")
    cfg = plugin.load_config(str(conf))
    assert cfg.allowed_roots == ("/srv/a", "/srv/b", "/nfs/c")
    assert cfg.allowed_formats == ("qcow2",)
    assert cfg.execute_dir is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "is missing"),
        ("allowed_roots = /srv\n", "unreadable"),
        ("[other]\nallowed_roots = /srv\n", "no \\[vm-nfs-plugin\\] section"),
        ("[vm-nfs-plugin]\nallowed_roots = srv/vm\n", "not an absolute path"),
        ("[vm-nfs-plugin]\nallowed_roots = /srv\nqemu_img_timeout_seconds = soon\n", "not a number"),
    ],
)
def test_unusable_config_is_refused(tmp_path, text, reason):
    conf = tmp_path / "c.conf"
    if text is not None:
        conf.write_text(text)
    with pytest.raises(plugin.Refused, match=reason):
        plugin.load_config(str(conf))


# ----------------------------------------------------- refusals, per request


def refusal(site, tmp_path, url, dest=None, *extra):
    dest = dest if dest is not None else str(site.sandbox / "vmimage.img")
    before = sorted(p.name for p in site.sandbox.iterdir())
    done, results = multi(site, tmp_path, [(url, dest)], *extra)
    assert done.returncode == 1, done.stderr
    (ad,) = results
    assert ad["TransferSuccess"] is False
    assert ad["TransferUrl"] == url
    assert sorted(p.name for p in site.sandbox.iterdir()) == before, "a refused request left files behind"
    assert ad["TransferError"] in done.stderr
    return ad["TransferError"]


def test_refuses_path_traversal_in_the_name(site, tmp_path):
    error = refusal(site, tmp_path, f"nfs:{site.raw}:../../outside/pwned.img")
    assert "not a plain file name" in error
    assert not (site.outside / "pwned.img").exists()


def test_refuses_a_symlink_escaping_the_allowed_roots(site, tmp_path):
    link = site.root / "innocent.img"
    link.symlink_to(site.secret)
    error = refusal(site, tmp_path, f"nfs://{link}:vmimage.img")
    assert "outside the allowed roots" in error
    assert str(site.secret) in error


def test_refuses_dot_dot_out_of_the_allowed_roots(site, tmp_path):
    error = refusal(site, tmp_path, f"nfs:{site.root}/../../outside/secret.img:vmimage.img")
    assert "outside the allowed roots" in error


def test_refuses_a_missing_template(site, tmp_path):
    assert "does not exist" in refusal(site, tmp_path, f"nfs://{site.root}/nope.img:vmimage.img")


def test_refuses_a_directory_as_template(site, tmp_path):
    (site.root / "dir.img").mkdir()
    assert "not a regular file" in refusal(site, tmp_path, f"nfs://{site.root}/dir.img:vmimage.img")


def test_refuses_the_root_itself(site, tmp_path):
    assert "outside the allowed roots" in refusal(site, tmp_path, f"nfs://{site.root}:vmimage.img")


def test_refuses_another_scheme(site, tmp_path):
    assert "unsupported URL scheme" in refusal(site, tmp_path, "https://example.org/sl6.img")


def test_refuses_a_destination_outside_the_sandbox(site, tmp_path):
    error = refusal(site, tmp_path, f"nfs://{site.raw}", str(site.outside / "vmimage.img"))
    assert "outside the job sandbox" in error
    assert not (site.outside / "vmimage.img").exists()


def test_refuses_a_destination_outside_the_execute_dir(site, tmp_path):
    env = dict(site.env)
    del env[plugin.SANDBOX_ENV]  # only execute_dir from the config guards now
    site.env = env
    error = refusal(site, tmp_path, f"nfs://{site.raw}", str(site.outside / "vmimage.img"))
    assert "not inside a job sandbox" in error


def test_never_replaces_or_writes_next_to_the_template(site, tmp_path):
    conf = site.config
    conf.write_text(f"[vm-nfs-plugin]\nallowed_roots = {site.root}\n")
    site.env = {plugin.CONFIG_ENV: str(conf)}  # no sandbox known at all
    digest = sha256(site.raw)
    error = refusal(site, tmp_path, f"nfs://{site.raw}", str(site.raw))
    assert "inside the template root" in error
    assert sha256(site.raw) == digest


def test_refuses_every_request_without_configuration(site, tmp_path):
    site.config.unlink()
    assert "no template roots are allowed" in refusal(site, tmp_path, f"nfs://{site.raw}:vmimage.img")


def test_refuses_uploads_per_file(site, tmp_path):
    (site.sandbox / "result.img").write_bytes(b"x")
    requests = [(f"nfs://{site.raw}", str(site.sandbox / "result.img"))] * 2
    done, results = multi(site, tmp_path, requests, "-upload")
    assert done.returncode == 1
    assert len(results) == 2
    for ad in results:
        assert ad["TransferSuccess"] is False
        assert ad["TransferType"] == "upload"
        assert "uploads are not supported" in ad["TransferError"]


def test_request_without_url_fails_alone(site, tmp_path):
    infile = tmp_path / "in.ads"
    infile.write_text(f'[ LocalFileName = "{site.sandbox}/a.img" ]\n')
    outfile = tmp_path / "out.ads"
    done = run_plugin("-infile", str(infile), "-outfile", str(outfile), env=site.env)
    assert done.returncode == 1
    (ad,) = read_results(outfile)
    assert "lacks a string Url" in ad["TransferError"]


def test_malformed_infile_exits_2_and_leaves_no_stale_results(site, tmp_path):
    infile = tmp_path / "in.ads"
    infile.write_text('[ Url = "nfs:///x.img"; LocalFileName = ')
    outfile = tmp_path / "out.ads"
    outfile.write_text('[ TransferSuccess = true; TransferUrl = "stale" ]\n')
    done = run_plugin("-infile", str(infile), "-outfile", str(outfile), env=site.env)
    assert done.returncode == 2
    assert "cannot read requests" in done.stderr
    assert outfile.read_text() == ""


def test_outfile_holding_data_is_replaced_by_exactly_one_ad_per_request(site, tmp_path):
    infile = write_infile(
        tmp_path / "in.ads",
        [("https://a.example/x", str(site.sandbox / "x")), ("ftp://b.example/y", str(site.sandbox / "y"))],
    )
    outfile = tmp_path / "out.ads"
    stale = '[ TransferSuccess = true; TransferUrl = "STALE-RESULT"; TransferFileName = "STALE-RESULT" ]\n' * 50
    outfile.write_text(stale)
    done = run_plugin("-infile", str(infile), "-outfile", str(outfile), env=site.env)
    assert done.returncode == 1
    results = read_results(outfile)
    assert [ad["TransferUrl"] for ad in results] == ["https://a.example/x", "ftp://b.example/y"]
    assert "STALE-RESULT" not in outfile.read_text()
