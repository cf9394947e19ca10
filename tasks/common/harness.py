"""What every task entry point shares: the flags, the method check, the run directories, ``main``.

A task module has ``build_parser(prog)`` (an ``argparse`` parser built on :func:`task_parser`),
``run(args) -> rows`` (started with :func:`start_run`) and ``main(argv, prog) = run_main(run, build_parser,
argv, prog)``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Callable, Sequence

from nngraph.errors import NNGraphError
from nngraph.train import distributed

from .report import format_table
from .splits import open_zoo

__all__ = ["csv_list", "task_parser", "add_training_args", "add_optional_args", "add_run_args", "MethodError", "check_methods", "start_run", "run_dir",
           "run_main"]


def csv_list(text: str) -> list[str]:
    """``"a,b,,c"`` -> ``["a", "b", "c"]`` (the type of ``--methods``)."""
    return [t for t in text.split(",") if t]


def task_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A task's parser: ``prog`` in usage lines, the first line of the module docstring ``doc`` as its
    description, every flag's default shown in ``--help``."""
    return argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_training_args(p, *, zoo_help: str, out: str, methods, epochs: int, baseline_epochs: int, batch_size: int,
                      lr: float, weight_decay: float, patience: int, num_layers: int = 3,
                      choices: Sequence[str] | None = None) -> None:
    """The flags every task shares (zoo, output, methods, the encoder's size and training), with the
    task's own defaults, so that the three parsers cannot drift apart. :func:`add_run_args` adds the
    last ones (seed, device, progress). ``methods`` run by default; ``choices`` (default: ``methods``) are
    all that ``--methods`` accepts."""
    p.add_argument("--zoo", required=True, help=zoo_help)
    p.add_argument("--out", default=out, help="directory of the runs, plots and results.json")
    p.add_argument("--methods", type=csv_list, default=list(methods),
                   help=f"comma-separated subset of {list(choices or methods)}")
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs of the encoder")
    p.add_argument("--baseline-epochs", type=int, default=baseline_epochs, help="training epochs of the MLP baselines")
    p.add_argument("--hidden-dim", type=int, default=32, help="width of the encoder's node and edge embeddings")
    p.add_argument("--num-layers", type=int, default=num_layers, help="message-passing layers of the encoder")
    p.add_argument("--batch-size", type=int, default=batch_size, help="graphs per training batch")
    p.add_argument("--lr", type=float, default=lr, help="learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=weight_decay, help="weight decay (AdamW)")
    p.add_argument("--patience", type=int, default=patience,
                   help="stop after this many epochs without a better validation score")


def add_optional_args(p, *names: str, what: str = "models") -> None:
    """Flags more than one task has, by name: ``max_train``, ``dropout``, ``positional_dim``, ``gbm_iters``."""
    flags = {
        "max_train": lambda: p.add_argument("--max-train", type=int, default=None,
                                            help=f"use at most this many training {what}"),
        "dropout": lambda: p.add_argument("--dropout", type=float, default=0.0,
                                          help="dropout of the encoder's node and edge updates"),
        "positional_dim": lambda: p.add_argument("--positional-dim", type=int, default=8,
                                                 help="random positional features of the broken-equivariance variant"),
        "gbm_iters": lambda: p.add_argument("--gbm-iters", type=int, default=200,
                                            help="boosting iterations of the weight-statistics baseline"),
    }
    for name in names:
        if name not in flags:
            raise ValueError(f"Could not resolve flag {name!r} among choices {sorted(flags)}")
        flags[name]()


def add_run_args(p) -> None:
    """The flags that end every task's parser: seed, device, progress bars, threads."""
    p.add_argument("--seed", type=int, default=0, help="seed of the models, the data order and the probes")
    p.add_argument("--device", default="cpu", help="torch device to train on")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="threads for torch and OpenMP / BLAS (nngraph.cli.set_threads). One by default: on a machine "
                        "whose other cores are busy more threads stall at their barriers; 0 keeps the libraries' "
                        "defaults")


class MethodError(NNGraphError, ValueError):
    """``--methods`` names a method the task does not have."""


def check_methods(methods, choices) -> None:
    """Raise :class:`MethodError` (one line from :func:`run_main`, no traceback) for unknown methods."""
    unknown = set(methods) - set(choices)
    if unknown:
        raise MethodError(f"Could not resolve methods {sorted(unknown)} among choices {list(choices)}")


def start_run(args: argparse.Namespace, methods: Sequence[str], zoo_kind: str, title: str) -> bool:
    """The checks and set-up before a task converts or creates anything: ``args.methods`` among
    ``methods``, ``args.zoo`` a zoo of ``zoo_kind``, ``args.out`` created. Returns whether to show
    progress bars."""
    check_methods(args.methods, methods)
    open_zoo(args.zoo, zoo_kind, title)
    os.makedirs(args.out, exist_ok=True)
    return not args.no_progress


def run_dir(root: str, name: str) -> str:
    """The directory of one training run inside a task's output directory."""
    return os.path.join(root, "runs", name)


def run_main(run: Callable, build_parser: Callable, argv=None, prog: str | None = None) -> int:
    """Entry point of a task module: parse flags, run, print the results table.

    ``prog`` names the command in usage and error lines (``nngraph task NAME`` when reached through
    ``nngraph``). A bad zoo or file (an :class:`~nngraph.NNGraphError`) ends the task with one line on
    standard error and exit status 1, no traceback.

    Under torchrun every rank runs the task and only rank 0 prints: the other ranks' standard output (the
    per-method progress lines the tasks print, the table) goes to ``os.devnull`` while ``run`` runs. Their
    standard error (warnings, tracebacks; tqdm bars are rank 0's only anyway) is left alone.
    """
    parser = build_parser(prog) if prog else build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None) is not None:
        from nngraph.cli import CommandError, set_threads

        try:
            set_threads(args.threads)
        except CommandError as err:
            parser.error(str(err))
    main = distributed.is_main()  # RANK from the environment: the process group does not exist yet
    with contextlib.ExitStack() as stack:
        if not main:
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        try:
            rows = run(args)
        except NNGraphError as err:
            print(f"{parser.prog}: error: {err}", file=sys.stderr)
            return 1
    if main:
        print(format_table(rows))
    return 0
