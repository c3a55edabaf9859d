"""The HTML drift report renders in a real browser (Debian's headless Chromium)."""

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

from aerie_testutil import load_script

drift = load_script("scripts/drift-check")
FIXTURES = Path(__file__).parent / "fixtures" / "drift"
CHROMIUM = shutil.which("chromium")
# Flags for a closed network: no background fetches, no sandbox as root.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,900"]


def png_pixels(path: Path, rows: int = 300) -> tuple[int, int, set[bytes]]:
    """(width, height, distinct RGB(A) pixel values of the first `rows` rows) of an 8-bit PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            channels = {2: 3, 6: 4}[colour]
            assert depth == 8
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    prev = bytearray(stride - 1)
    colours = set()
    for row in range(min(height, rows)):  # unfilter the top of the page, where the counts are
        line = raw[row * stride:(row + 1) * stride]
        ftype, cur = line[0], bytearray(line[1:])
        for i in range(len(cur)):
            a = cur[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ftype == 1:
                cur[i] = (cur[i] + a) & 255
            elif ftype == 2:
                cur[i] = (cur[i] + b) & 255
            elif ftype == 3:
                cur[i] = (cur[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(bytes(cur[i:i + channels]) for i in range(0, len(cur), channels))
        prev = cur
    return width, height, colours


def test_report_opens_in_chromium_with_title_and_counts(tmp_path):
    assert CHROMIUM, "Debian's chromium is installed by scripts/bootstrap"
    report = drift.build_report(drift.read_events(FIXTURES / "tampered.events.jsonl"),
                                {"finished": "2026-11-21T13:42:49+00:00"})
    page = tmp_path / "report.html"
    page.write_text(drift.render_html(report))
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]

    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "<title>aerie drift report 2026-11-21T13:42:49+00:00</title>" in dom
    for count in ("hosts: 5", "ok: 1", "drifted: 3", "failed: 0", "unreachable: 1", "stale: 0"):
        assert count in dom
    # Findings first, the unreachable host before the drift; clean hosts only counted, folded away.
    assert dom.index('id="findings"') < dom.index("Gathering Facts") < dom.index("aerie_node") < dom.index('id="hosts"')
    assert '<details id="ok-hosts"><summary>1 host ok</summary><p>lab-squid1</p></details>' in dom
    assert "No previous report: this is the first run." in dom

    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    width, height, colours = png_pixels(shot)
    assert (width, height) == (1200, 900)
    # Text was painted at the top of the page (a blank page has one colour).
    assert len(colours) > 10


def test_the_one_failed_host_of_122_is_on_the_first_screen(tmp_path):
    names = [f"worker{i:03d}" for i in range(1, 123)]
    events = [{"event": "start", "hosts": names},
              {"event": "result", "host": "worker062", "play": "p", "role": "condor_worker",
               "task": "Ensure the HTCondor configuration", "status": "failed", "diff": "", "msg": "parse error"},
              {"event": "stats", "hosts": {n: {"ok": 90, "changed": 0, "failures": int(n == "worker062"),
                                               "unreachable": 0, "skipped": 3} for n in names}}]
    page = tmp_path / "report.html"
    page.write_text(drift.render_html(drift.build_report(events, {"finished": "T"})))
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, "--user-data-dir=" + str(tmp_path / "profile"), f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    _width, _height, colours = png_pixels(shot, rows=600)
    # The failed finding's background (#fde2e2), painted within the first 600 pixels.
    assert colours & {bytes((253, 226, 226)), bytes((253, 226, 226, 255))}
