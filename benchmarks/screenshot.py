"""A page as a browser shows it: a PNG of an HTML file's first screen, taken by a real headless Chromium.

Usage: ``python -m benchmarks.screenshot runs/demo/index.html -o demo.png [--size 1280,800]``. The browser is the
first of :data:`BROWSERS` on ``PATH`` (Debian: ``apt-get install chromium-headless-shell``; pip's ``playwright``
cannot fetch its own browser without the internet).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

__all__ = ["BROWSERS", "find_browser", "screenshot"]

#: Chromium builds that take ``--headless --screenshot``, in the order they are looked for.
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The path of the first of :data:`BROWSERS` on ``PATH``, or ``None``."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def screenshot(html: str, png: str, width: int = 1280, height: int = 800, browser: str | None = None) -> str:
    """Open ``html`` (a file) in a headless Chromium at ``width x height`` and write what it shows first to ``png``.

    Raises:
        FileNotFoundError: if ``html`` does not exist or no browser is installed.
        RuntimeError: if the browser wrote no picture (its last line of output says why).
    """
    if not os.path.isfile(html):
        raise FileNotFoundError(f"{html}: no such file")
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no headless browser on PATH (looked for {', '.join(BROWSERS)}); on Debian: "
                                "apt-get install chromium-headless-shell")
    png = os.path.abspath(png)
    if os.path.exists(png):
        os.unlink(png)
    command = [browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--window-size={width},{height}", f"--screenshot={png}", "file://" + os.path.abspath(html)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root inside its sandbox
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if not os.path.isfile(png):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{os.path.basename(browser)} wrote no screenshot of {html} "
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
