"""Run every ``benchmarks/bench_*.py`` (or those named on the command line) and print their tables.

Usage: ``python -m benchmarks [convert encoder ...]``
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(i.name for i in pkgutil.iter_modules([str(here)]) if i.name.startswith("bench_"))
    wanted = [f"bench_{a}" if not a.startswith("bench_") else a for a in argv]
    for name in wanted or names:
        if name not in names:
            print(f"no benchmark {name!r}; choices: {names}")
            return 2
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"\n## {name}\n", flush=True)
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
