"""Tasks built on nngraph's public API, one package per task: INR classification, accuracy prediction, INR
editing, model embeddings, merging, the learned optimizer, generation; the demo, the shipped checkpoints, what the
tasks share (``common``) and the diagnostics the task pages quote (``diagnostics``).

Run one with ``python -m tasks.<name> --help`` from a checkout, or ``nngraph task <name> ...``. Installed,
this folder is the package ``nngraph_tasks`` (``pyproject.toml`` maps it), registered in the entry-point
group ``nngraph.tasks``: the ``nngraph`` command finds the tasks there and imports nothing of them until
one runs. ``python -m tasks.demo`` builds small zoos, trains every task briefly and prints one results table.
"""
from __future__ import annotations

import importlib
from typing import Callable

#: The tasks, by the name ``nngraph task NAME`` runs; each is the package of that name here, with
#: ``build_parser()``, ``run(args) -> rows`` and ``main(argv, prog)``. The one list: the CLI and the
#: demo read it.
TASKS = ("inr_classification", "accuracy_prediction", "inr_editing")
#: Commands of this package besides the tasks (``nngraph demo``, ``nngraph embed``, ``nngraph search``), each
#: with ``main(argv, prog)`` in the module :data:`MODULES` names.
COMMANDS = ("demo", "embed", "search")
#: the module (under this package) of every task and command
MODULES = {**{name: name for name in TASKS}, "demo": "demo", "embed": "embeddings.embed",
           "search": "embeddings.search"}

__all__ = ["TASKS", "COMMANDS", "MODULES", "load", "reexport"]


def load(name: str) -> Callable[..., int]:
    """``main(argv, prog)`` of task or command ``name`` (imported now)."""
    if name not in MODULES:
        raise KeyError(f"Could not resolve task {name!r} among choices {list(TASKS)}")
    return importlib.import_module(f"{__name__}.{MODULES[name]}").main


def reexport(package: str, module: str, names: list[str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: each of ``names`` is read from ``package.module`` on first use.

    A task package re-exports its entry points this way instead of importing them when it loads, so that
    ``python -m tasks.<package>.<other>`` runs ``<other>`` without the package having imported it first (which
    runpy warns about and runs a second copy of).
    """
    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
