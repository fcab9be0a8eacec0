"""report.html opens in headless Chromium (Debian's `chromium`) without console errors, and
renders: a screenshot is taken and checked for the site colors of the inline SVGs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli.main import app as cli
from planner.report.svg import PALETTE
from tests import CAMERA
from tests.conftest import require_system

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(autouse=True)
def _chromium_installed():
    require_system("headless Chromium", CHROMIUM is not None,
                   "`make system` as root or `apt-get install chromium` installs Debian's chromium")


def open_in_chromium(page: Path, shot: Path, tmp: Path, height: int = 2400) -> list[str]:
    """Screenshot the page; return the console lines Chromium logged while loading it."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={tmp / 'chromium-profile'}", f"--screenshot={shot}", f"--window-size=1280,{height}",
         "--enable-logging=stderr", "--v=0", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file(), proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_console_errors_are_detected(tmp_path):
    # the check below would be empty if Chromium logged nothing: a page with an error must show up
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFn();</script></body></html>")
    lines = open_in_chromium(bad, tmp_path / "bad.png", tmp_path, height=300)
    assert any("undefinedFn" in line for line in lines), lines


def test_report_html_opens_without_console_errors_and_renders(tmp_path):
    from PIL import Image

    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["solve", str(CAMERA), "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["pareto", str(CAMERA), "-o", str(out)])  # the report then inlines the front
    assert r.exit_code == 0, r.output
    shot = tmp_path / "report.png"
    console = open_in_chromium(out / "report.html", shot, tmp_path)
    assert console == [], console
    keep = os.environ.get("PLANNER_SCREENSHOT_DIR")  # to look at it: PLANNER_SCREENSHOT_DIR=/tmp pytest ...
    if keep:
        shutil.copy(shot, Path(keep) / "report-smart-camera.png")
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2400)
    colors = {c for _, c in img.getcolors(maxcolors=1 << 20)}
    # the ensemble graph and the latency bars paint models in their sites' colors
    for hex_color in PALETTE[:2]:
        rgb = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
        assert rgb in colors, hex_color
    assert len(colors) > 50  # text, tables and charts, not a blank page
