"""The ``nngraph`` command.

    nngraph zoo inr --out zoos/inr --small        # model zoos (delegates to python -m nngraph.zoo)
    nngraph task inr_classification --zoo zoos/inr --epochs 30
    nngraph task accuracy_prediction --zoo zoos/clf
    nngraph task inr_editing --zoo zoos/inr
    nngraph demo [--full]                         # small zoos, every task briefly, one results table

Everything after the subcommand (and the task name) is passed on; ``--help`` works at every level.
"""
from __future__ import annotations

import importlib
import sys

__all__ = ["main"]

TASKS = ("inr_classification", "accuracy_prediction", "inr_editing")
_USAGE = __doc__.split("\n\n")[1].rstrip()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: nngraph {zoo,task,demo} ...\n\n" + _USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "zoo":
        from nngraph.zoo.__main__ import main as zoo_main

        return zoo_main(rest)
    if command == "task":
        if not rest or rest[0] not in TASKS:
            got = rest[0] if rest else None
            print(f"Could not resolve task {got!r} among choices {list(TASKS)}", file=sys.stderr)
            return 2
        return importlib.import_module(f"tasks.{rest[0]}").main(rest[1:])
    if command == "demo":
        return importlib.import_module("tasks.demo").main(rest)
    print(f"Could not resolve command {command!r} among choices ['zoo', 'task', 'demo']", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
