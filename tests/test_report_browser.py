"""The HTML report in headless Chromium: every chart image decodes, and the page is not blank.

A copy of the report gets a script that writes, on the load event, how many images there are
and how many decoded (`complete && naturalWidth > 0`); `--dump-dom` prints the DOM after it
ran. A screenshot of the page must have real contrast, not one flat colour.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from test_report_capacity import write_sweep_run

from capacity.report.build import build_report

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify({total: images.length, decoded: decoded.length});
  document.body.appendChild(out);
});
</script>"""


def chromium_binary() -> str:
    found = next((p for name in CHROMIUM_NAMES if (p := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI must run this test: .ci/test-setup.sh)")
        pytest.skip("chromium is not installed")
    return found


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with nothing that reaches the network or needs a display."""
    base = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = write_sweep_run(tmp_path_factory.mktemp("browser"), [2, 4, 8, 12, 16, 20, 24, 32])
    build_report(run_dir)
    return run_dir / "report.html"


def test_every_image_loads(report: Path, tmp_path: Path) -> None:
    binary = chromium_binary()
    html = report.read_text(encoding="utf-8")
    expected = html.count("<img ")
    assert expected >= 8
    page = tmp_path / "checked.html"
    page.write_text(html.replace("</body>", CHECK_SCRIPT + "\n</body>"), encoding="utf-8")
    proc = chromium(
        binary, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="image-check">([^<]*)</pre>', proc.stdout)
    assert found, "the check script did not run: " + proc.stdout[-500:]
    result = json.loads(found.group(1))
    assert result == {"total": expected, "decoded": expected}


def test_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    binary = chromium_binary()
    shot = tmp_path / "report.png"
    proc = chromium(
        binary,
        tmp_path / "profile",
        "--hide-scrollbars",
        "--window-size=1200,2400",
        f"--screenshot={shot}",
        report.as_uri(),
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = np.asarray(mpimg.imread(shot), dtype=float)[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    grey = pixels.mean(axis=2)
    assert grey.std() > 0.05  # a blank or single-colour page has ~0
    dark = float((grey < 0.5).mean())
    assert 0.005 < dark < 0.5  # text and chart lines, on a light page
    # Charts are drawn: many distinct colours, not only text on white.
    rgb = (pixels * 255).astype(np.uint32).reshape(-1, 3)
    colours = np.unique((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2])
    assert colours.size > 200
