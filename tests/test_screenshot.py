"""benchmarks.screenshot: a real headless Chromium renders a page at 1280 x 800 (skipped where none is installed)."""
from __future__ import annotations

import pytest

from benchmarks.screenshot import find_browser, main, screenshot

pytestmark = pytest.mark.skipif(find_browser() is None, reason="no headless Chromium (apt-get install "
                                                               "chromium-headless-shell)")


def test_the_first_screen_is_what_the_page_lays_out(tmp_path):
    """A page whose top 100 px are red and whose block 3000 px down is blue: the screenshot is 1280 x 800, red at
    the top and never blue (the browser laid the page out, and only its first screen was taken)."""
    from matplotlib.image import imread

    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><body style='margin:0;background:#fff'>"
                    "<div style='height:100px;background:#f00'></div>"
                    "<div style='height:2900px'></div><div style='height:200px;background:#00f'></div></body></html>")
    png = screenshot(str(page), str(tmp_path / "shot.png"))
    pixels = imread(png)  # (800, 1280, 3 or 4) floats in [0, 1]
    assert pixels.shape[:2] == (800, 1280)
    assert pixels[50, 640, :3].tolist() == [1.0, 0.0, 0.0]  # red
    assert pixels[400, 640, :3].tolist() == [1.0, 1.0, 1.0]  # white below it
    blue = (pixels[..., 2] > 0.9) & (pixels[..., 0] < 0.1)
    assert not blue.any()


def test_a_missing_page_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nothere.html"), "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothere.html: no such file" in err
