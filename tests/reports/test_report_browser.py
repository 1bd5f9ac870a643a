"""The report in a real headless Chromium: it renders and its figures are visible.

Needs the Debian package ``chromium`` (``apt-get install -y chromium``); skipped, with
that reason, where /usr/bin/chromium is absent. The screenshot is kept at
tests/reports/artifacts/report_screenshot.png for a person to look at.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from run_fixtures import tiny_runs, write_edge_circuit

from nodeprune.reports import build_report

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1400,3000",
]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="headless browser test needs /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def _screenshot(page: Path, out: Path, profile: Path) -> np.ndarray:
    result = _chromium(page, profile, f"--screenshot={out}")
    assert out.is_file(), f"chromium wrote no screenshot: {result.stderr[-2000:]}"
    return np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)


def _colourful(pixels: np.ndarray) -> int:
    """Pixels whose channels differ a lot: plot colours, not text, rules or background."""
    return int(((pixels.max(-1) - pixels.min(-1)) > 80).sum())


def test_report_renders_with_visible_figures(tmp_path, tokenizer):
    run = tmp_path / "run"
    folders = tiny_runs(tmp_path / "tiny_runs", tokenizer)
    shutil.copytree(folders[0], run)
    write_edge_circuit(run)  # the edge phase's graph is one of the figures
    page = build_report(run, [folders[1]])
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report_screenshot.png"
    pixels = _screenshot(page, shot, tmp_path / "profile")
    print(f"\nscreenshot of the report: {shot}")
    assert pixels.shape[:2] == (3000, 1400)
    assert pixels.std() > 20, "the page rendered blank"

    # The DOM Chromium built holds every figure as a decodable PNG data URI.
    dom = _chromium(page, tmp_path / "profile", "--dump-dom").stdout
    assert "<h2>Overview</h2>" in dom and "</html>" in dom
    assert "<h2>Edge circuit</h2>" in dom
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', dom)
    assert len(images) == len(list((run / "figures").glob("*.png")))
    for data in images:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG") and len(png) > 5000

    # The same page with its images blanked: the colour on screen came from the figures.
    blank = run / "no_images.html"
    blank.write_text(re.sub(r"data:image/png;base64,[^\"]+", "data:,", page.read_text()))
    without = _screenshot(blank, tmp_path / "blank.png", tmp_path / "profile2")
    assert _colourful(pixels) > 20 * max(_colourful(without), 1000), (
        _colourful(pixels),
        _colourful(without),
    )
