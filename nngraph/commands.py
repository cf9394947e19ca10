"""What every ``nngraph`` command shares: ``--threads`` and ``--debug``, and errors printed as one line.

Below :mod:`nngraph.cli` and the commands it dispatches to (``python -m nngraph.zoo``, the task packages), which all
import it; :mod:`nngraph.cli` re-exports its names.
"""
from __future__ import annotations

import argparse
import os
import sys

from nngraph.errors import NNGraphError
from nngraph.threads import THREADS_ENV
from nngraph.threads import set_threads as _set_threads

__all__ = ["DEBUG_ENV", "CommandError", "add_common_args", "debugging", "one_line", "run_command", "set_threads"]


class CommandError(Exception):
    """A bad argument or file: printed as one line, exit status 2."""


#: Set (to anything but ``0`` / empty) to show the traceback of every error, as ``--debug`` does.
DEBUG_ENV = "NNGRAPH_DEBUG"


def threads(text: str) -> int | None:
    """The value of ``--threads``: a whole number, or ``auto`` (``None``: :func:`nngraph.threads.pick_threads`
    decides)."""
    return None if text.strip().lower() == "auto" else int(text)


def add_common_args(p: argparse.ArgumentParser) -> None:
    """``--threads N`` and ``--debug``, the flags every ``nngraph`` command takes."""
    p.add_argument("--threads", type=threads, default="auto", metavar="N",
                   help=f"threads for torch (torch.set_num_threads) and OpenMP / BLAS; auto: ${THREADS_ENV} if set, "
                        "else 1 (the models are small, and on a machine whose other cores are busy more threads stall "
                        "at their barriers: a 7 s run took 119 s); 0 keeps the libraries' defaults (nngraph.threads)")
    p.add_argument("--debug", action="store_true",
                   help=f"show the Python traceback of an error instead of its one line (or set {DEBUG_ENV}=1)")


def set_threads(threads: int | None) -> int:
    """:func:`nngraph.threads.set_threads` for a command: ``threads`` (``--threads``), else ``$NNGRAPH_THREADS``,
    else 1; ``0`` keeps the libraries' defaults. Returns the count torch uses.

    Raises:
        CommandError: for a negative count.
    """
    try:
        return _set_threads(threads)
    except ValueError as err:
        raise CommandError(str(err)) from None


def debugging(args: argparse.Namespace | None = None) -> bool:
    """Whether errors show their traceback: ``--debug``, or :data:`DEBUG_ENV` set."""
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_command(parser: argparse.ArgumentParser, argv, body) -> int:
    """Parse ``argv``, use ``--threads``, and return ``body(args)``; an :class:`~nngraph.NNGraphError` or
    :class:`CommandError` is one line on standard error and exit status 1 (``--debug``: the traceback)."""
    args = parser.parse_args(argv)
    try:
        set_threads(getattr(args, "threads", None))
        return body(args)
    except (NNGraphError, CommandError) as err:
        if debugging(args):
            raise
        print(f"{parser.prog}: error: {one_line(err)}", file=sys.stderr)
        return 1


def one_line(err: BaseException) -> str:
    """An error's message on one line (a ``KeyError``'s without its quotes)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__
