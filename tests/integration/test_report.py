"""`snakemake --report` on the demo run, rendered in headless Chromium: every figure and the table are in
the page, the app draws its menu of categories, and a screenshot is not blank."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.workflow import REPO, snakemake

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install -y chromium; .ci/run does it in CI)"
)


def chromium(*args, profile: Path) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


@pytest.fixture(scope="module")
def report(demo_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    snakemake("--configfile", str(REPO / "config/demo.yaml"), "--report", str(path), workdir=demo_run)
    return path


PAIR_FIGURES = ("change_vs_base", "accuracy", "training_loss")
FIGURES = [f"tiny-qwen2/{d}/{name}.png" for d in ("arc", "gsm8k") for name in PAIR_FIGURES]
FIGURES += ["change_by_distance/arc.png", "change_by_distance/gsm8k.png", "change_grid/tiny-qwen2.png"]


def test_report_embeds_every_figure_and_the_table(demo_run, report):
    html = report.read_text()
    assert "<script" in html and 'src="http' not in html  # self-contained: nothing fetched
    embedded = {base64.b64decode(data) for data in re.findall(r"data:image/png;[^,\"]*base64,([A-Za-z0-9+/=]+)", html)}
    for figure in FIGURES:
        assert (demo_run / "results/demo/figures" / figure).read_bytes() in embedded, f"{figure} not in the report"
    assert "cells.csv" in html
    # Captions are rendered with the run's config: the headline metric and the bootstrap settings.
    assert "exact_match,flexible-extract" in html and "1000" in html


def test_report_renders_in_headless_chromium(report, tmp_path):
    url = report.as_uri()
    dom = chromium("--dump-dom", url, profile=tmp_path / "profile-dom").stdout
    # What the JS app drew, scripts (which hold the raw data) left out: the menu of our categories.
    drawn = re.sub(r"<script.*?</script>", "", dom, flags=re.S)
    for category in ("arc", "gsm8k", "All datasets", "Tables"):
        assert category in drawn, f"category {category!r} not rendered"
    assert len(re.findall(r"data:image/png;[^,\"]*base64,", dom)) >= len(FIGURES)

    screenshot = tmp_path / "screenshot.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1280,900", url, profile=tmp_path / "profile-shot")
    import matplotlib.image

    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (900, 1280)
    assert pixels.std() > 0.05, "the rendered report is blank"
