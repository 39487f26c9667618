"""The HTML report opened in headless Chromium (Debian's package): every chart renders."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from driftway.app.report import write_report
from driftway.settings import Settings
from tests.unit.app.test_report import V1, V2, fill_monitoring_tables, own_database

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHARTS = ("quality", "throughput", "latency", "features")
WINDOW = (1280, 2600)


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def report_file(embedded_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = own_database(embedded_settings)
    fill_monitoring_tables(settings)
    out = tmp_path_factory.mktemp("report") / "report.html"
    write_report(settings, out)
    return out


def headless(chromium: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Chromium headless once; the page's scripts get 5 s of virtual time to draw."""
    command = [str(chromium), "--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_every_chart_renders_as_svg(chromium: Path, report_file: Path, tmp_path: Path) -> None:
    dom = headless(chromium, tmp_path / "profile", "--dump-dom", report_file.as_uri()).stdout
    for chart in CHARTS:
        tag = re.search(rf'<div[^>]*\bid="chart-{chart}"[^>]*>', dom)
        assert tag is not None, chart
        assert "js-plotly-plot" in tag.group(0), f"plotly did not draw {chart}"
    assert dom.count('class="main-svg"') >= len(CHARTS)
    legend = set(re.findall(r'class="legendtext"[^>]*>([^<]*)<', dom))
    assert {"p50", "p95", "p99", "concept drift", "data drift", "prediction drift",
            "deployment: promote", "served accuracy", V1[:12], V2[:12]} <= legend
    ticks = set(re.findall(r'class="ytick"[^>]*>.*?>([^<]*)</text>', dom))
    assert {"amount", "country=NO", "prediction: score", "deployment"} <= ticks
    assert "time (UTC)" in dom


def test_a_screenshot_shows_more_than_a_blank_page(
        chromium: Path, report_file: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    headless(chromium, tmp_path / "profile", f"--window-size={WINDOW[0]},{WINDOW[1]}",
             f"--screenshot={shot}", report_file.as_uri())
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == WINDOW  # IHDR width, height
    assert len(png) > 50_000, f"only {len(png)} bytes: a nearly blank page"
    # A page of one colour filters to a handful of byte values; charts give many.
    pixels = zlib.decompress(b"".join(_chunks(png, b"IDAT")))
    assert len(set(pixels)) > 100


def _chunks(png: bytes, kind: bytes) -> list[bytes]:
    found, at = [], 8
    while at < len(png):
        length, name = struct.unpack(">I4s", png[at:at + 8])
        if name == kind:
            found.append(png[at + 8:at + 8 + length])
        at += 12 + length
    return found
