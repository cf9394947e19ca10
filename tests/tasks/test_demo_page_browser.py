"""The demo's page in a real headless browser (benchmarks.screenshot; skipped without one): at 1280 x 800 its first
screen holds the headline table and the top of the first picture, and the long table comes after the pictures."""
from __future__ import annotations

import os

import pytest

from benchmarks.screenshot import find_browser, layout, screenshot
from tasks.demo import page as demo_page
from tests.tasks.test_demo_page import fake_results

pytestmark = pytest.mark.skipif(find_browser() is None, reason="no headless Chromium (apt-get install "
                                                               "chromium-headless-shell)")


def test_the_first_screen_shows_the_headline_and_a_picture(tmp_path):
    workdir = str(tmp_path / "demo")
    rows, figures = fake_results(workdir)
    path = demo_page.write_index(os.path.join(workdir, "index.html"), "nngraph demo", "what the rows are", rows,
                                 figures, seconds=187.0)
    boxes = layout(path, {"sentence": "p.headline", "headline": "table.headline", "picture": "figure img",
                          "long table": "details"}, 1280, 800)
    assert boxes["sentence"][1] < boxes["headline"][1]
    assert boxes["headline"][3] <= 800, boxes  # every headline row on the first screen
    assert boxes["picture"][1] < 800, boxes  # and the top of the first picture
    assert boxes["long table"][1] > boxes["picture"][3], boxes  # the long table after the pictures
    png = screenshot(path, str(tmp_path / "first_screen.png"))
    assert os.path.getsize(png) > 10_000  # a rendered screen, not a blank one (a blank 1280x800 PNG is ~5 kB)
