#!/usr/bin/env python3
"""Set up a virtual environment and run the demo or the tests: ``python3 run.py demo|test [args]``.

Needs only python3. Creates ``.venv`` on first use, installs ``torch==2.13.0`` (the CPU build; a
looser pin would pull a multi-GB CUDA build) and then this package with its test extra.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
TORCH = "torch==2.13.0"
STAMP = VENV / ".nngraph-installed"


def sh(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def ensure_env() -> None:
    if not PYTHON.exists():
        sh(sys.executable, "-m", "venv", str(VENV))
    wanted = (ROOT / "pyproject.toml").read_text()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    sh(str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(str(PYTHON), "-m", "pip", "install", "--quiet", TORCH)
    sh(str(PYTHON), "-m", "pip", "install", "--quiet", "-e", ".[test]")
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "bench", "python"):
        print(__doc__)
        print("commands: demo | test [pytest args] | bench | python [args]")
        return 2
    ensure_env()
    command, rest = argv[0], argv[1:]
    if command == "demo":
        return subprocess.call([str(PYTHON), "-m", "tasks.demo", *rest], cwd=ROOT)
    if command == "test":
        return subprocess.call([str(PYTHON), "-m", "pytest", "-q", *rest], cwd=ROOT)
    if command == "bench":
        return subprocess.call([str(PYTHON), "-m", "benchmarks", *rest], cwd=ROOT)
    return subprocess.call([str(PYTHON), *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
