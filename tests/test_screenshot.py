"""benchmarks.screenshot: a real headless Chromium renders a page at 1280 x 800 (skipped where none is installed)."""
from __future__ import annotations

import pytest

from benchmarks.screenshot import find_browser, layout, main, screenshot

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


def test_layout_gives_the_boxes_the_browser_laid_out(tmp_path):
    (tmp_path / "img").mkdir()
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><head><style>body{margin:0}</style></head><body>"
                    "<div id='top' style='height:100px'></div><div style='height:2900px'></div>"
                    "<p class='far' style='margin:0;height:50px'>x</p></body></html>")
    boxes = layout(str(page), {"top": "#top", "far": "p.far", "none": "table"})
    assert boxes["top"] == (0, 0, 1280, 100) and boxes["far"] == (0, 3000, 1280, 3050) and boxes["none"] is None
    assert "nngraph-layout" not in page.read_text()  # measured on a copy
