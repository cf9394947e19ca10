"""Run every ``benchmarks/bench_*.py`` (or those named on the command line) and print their tables.

Usage: ``python -m benchmarks [NAME [FLAGS ...]] ...``, e.g. ``python -m benchmarks encoder --no-resnet
--threads 1 convert --models vit``: the flags after a benchmark's name are passed on to it
(``python -m benchmarks NAME --help`` lists them). ``python -m benchmarks.reliability`` is the
fault-injection table (not run by default: it takes minutes).
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def benchmark_names() -> list[str]:
    here = Path(__file__).parent
    return sorted(i.name for i in pkgutil.iter_modules([str(here)]) if i.name.startswith("bench_"))


def parse(argv: list[str], names: list[str]) -> list[tuple[str, list[str]]]:
    """``[(module name, its flags), ...]`` from the command line; every benchmark when none is named.

    Raises:
        ValueError: for an unknown benchmark name or flags before the first name.
    """
    groups: list[tuple[str, list[str]]] = []
    for arg in argv:
        name = arg if arg.startswith("bench_") else f"bench_{arg}"
        if not arg.startswith("-") and name in names:
            groups.append((name, []))
        elif groups and (arg.startswith("-") or groups[-1][1]):
            groups[-1][1].append(arg)  # a flag, or a value after one
        elif arg.startswith("-"):
            raise ValueError(f"flag {arg!r} before a benchmark name; usage: python -m benchmarks [NAME [FLAGS ...]] ...")
        else:
            raise ValueError(f"no benchmark {name!r}; choices: {names}")
    return groups or [(n, []) for n in names]


def main(argv: list[str]) -> int:
    names = benchmark_names()
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip() + f"\n\nbenchmarks: {[n.removeprefix('bench_') for n in names]}")
        return 0
    try:
        groups = parse(argv, names)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    for name, flags in groups:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"\n## {name}\n", flush=True)
        module.main(flags)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
