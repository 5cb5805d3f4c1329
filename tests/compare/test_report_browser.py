"""Render the report in headless Chromium: a screenshot that is not blank, and a DOM with the table and images."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def _chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run(
        [str(CHROMIUM), *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_report_renders_in_chromium(compared, tmp_path):
    url = (compared.compare_dir / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20  # text, tables and plots, not a blank page
    assert (pixels < 128).mean() > 0.01  # enough dark ink to be content

    dom = _chromium(tmp_path, "--dump-dom", url).stdout
    assert '<table class="summary">' in dom
    for s in compared.summaries:
        assert f"<td>{s.strategy}</td>" in dom
    embedded = (compared.compare_dir / "report.html").read_text().count('<img src="data:image/png;base64,')
    assert dom.count('<img src="data:image/png;base64,') == embedded >= 2  # curves and confusion at least
