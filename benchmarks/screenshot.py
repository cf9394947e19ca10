"""A page as a browser shows it: a PNG of an HTML file's first screen, taken by a real headless Chromium, and where
the browser laid out the elements a test asks about (:func:`layout`).

Usage: ``python -m benchmarks.screenshot runs/demo/index.html -o demo.png [--size 1280,800]``. The browser is the
first of :data:`BROWSERS` on ``PATH`` (Debian: ``apt-get install chromium-headless-shell``; pip's ``playwright``
cannot fetch its own browser without the internet).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

__all__ = ["BROWSERS", "find_browser", "layout", "screenshot"]

#: Chromium builds that take ``--headless --screenshot``, in the order they are looked for.
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The path of the first of :data:`BROWSERS` on ``PATH``, or ``None``."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _browser(browser: str | None) -> list[str]:
    """The command that starts ``browser`` (default: :func:`find_browser`) headless."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no headless browser on PATH (looked for {', '.join(BROWSERS)}); on Debian: "
                                "apt-get install chromium-headless-shell")
    command = [browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--no-sandbox")  # Chromium refuses to run as root inside its sandbox
    return command


#: Run on the page's load event: the bounding box of the first element matching each selector, as JSON in a <pre>.
_MEASURE = """<script>window.addEventListener("load", function () {
  var found = {}, asked = %s;
  Object.keys(asked).forEach(function (name) {
    var e = document.querySelector(asked[name]);
    if (e) { var r = e.getBoundingClientRect(); found[name] = [r.left, r.top, r.right, r.bottom]; }
  });
  var pre = document.createElement("pre"); pre.id = "nngraph-layout"; pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
});</script>"""


def layout(html: str, selectors: dict[str, str], width: int = 1280, height: int = 800,
           browser: str | None = None) -> dict[str, tuple[float, float, float, float] | None]:
    """Where a headless Chromium at ``width x height`` puts the first element of each CSS selector of ``html``:
    ``{name: (left, top, right, bottom)}`` in pixels from the top left of the page (``None`` if none matches). A
    box whose ``top`` is below ``height`` is not on the first screen.

    The page is read from a copy with a measuring script and a ``<base>`` pointing at the original's folder (its
    images load as they would); the original is not changed.
    """
    if not os.path.isfile(html):
        raise FileNotFoundError(f"{html}: no such file")
    with open(html, encoding="utf-8") as f:
        page = f.read()
    base = '<base href="file://' + os.path.dirname(os.path.abspath(html)) + '/">'
    page = re.sub(r"<head[^>]*>", lambda m: m.group(0) + base, page, count=1) if "<head" in page else base + page
    script = _MEASURE % json.dumps(selectors)
    page = page.replace("</body>", script + "</body>") if "</body>" in page else page + script
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "page.html")
        with open(copy, "w", encoding="utf-8") as f:
            f.write(page)
        done = subprocess.run(_browser(browser) + [f"--window-size={width},{height}", "--dump-dom",
                                                   "file://" + copy], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="nngraph-layout">([^<]*)</pre>', done.stdout)
    if found is None:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the browser did not lay out {html} (exit {done.returncode}: {last})")
    boxes = json.loads(found.group(1).replace("&quot;", '"'))
    return {name: tuple(boxes[name]) if name in boxes else None for name in selectors}


def screenshot(html: str, png: str, width: int = 1280, height: int = 800, browser: str | None = None) -> str:
    """Open ``html`` (a file) in a headless Chromium at ``width x height`` and write what it shows first to ``png``.

    Raises:
        FileNotFoundError: if ``html`` does not exist or no browser is installed.
        RuntimeError: if the browser wrote no picture (its last line of output says why).
    """
    if not os.path.isfile(html):
        raise FileNotFoundError(f"{html}: no such file")
    command = _browser(browser)
    png = os.path.abspath(png)
    if os.path.exists(png):
        os.unlink(png)
    command += [f"--window-size={width},{height}", f"--screenshot={png}", "file://" + os.path.abspath(html)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if not os.path.isfile(png):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{os.path.basename(command[0])} wrote no screenshot of {html} "
                           f"(exit {done.returncode}: {last})")
    return png


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.screenshot", description=__doc__.split("\n\n")[0])
    p.add_argument("html", help="the page, e.g. runs/demo/index.html")
    p.add_argument("-o", "--output", required=True, help="the PNG to write")
    p.add_argument("--size", default="1280,800", help="width,height of the browser window in pixels")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split(","))
    try:
        print(screenshot(args.html, args.output, width, height))
    except (FileNotFoundError, RuntimeError) as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
