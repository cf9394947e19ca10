"""Results rows, the printed table, a JSON of results, and the plots (matplotlib Agg, PNG)."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nngraph.errors import NNGraphError  # noqa: E402
from nngraph.io import atomic_write  # noqa: E402
from nngraph.train import distributed  # noqa: E402

__all__ = ["row", "format_table", "save_results", "save_run", "run_main", "plot_curves", "plot_scatter",
           "plot_edit_grid"]


def row(task: str, method: str, metric: str, value: float, seconds: float | None = None, **extra) -> dict[str, Any]:
    """One line of the results table."""
    return {"task": task, "method": method, "metric": metric, "value": float(value),
            "seconds": None if seconds is None else round(float(seconds), 1), **extra}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table: task, method, metric, value, training seconds, and any notes."""
    header = ["task", "method", "metric", "value", "seconds", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [_fmt(r.get(h)) if h != "seconds" else ("" if r.get(h) is None else f"{r[h]:.0f}") for h in header]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main_process_only(fn: Callable) -> Callable:
    """Under torchrun only rank 0 writes files; the other ranks return ``None``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if distributed.is_main() else None

    return wrapper


@main_process_only
def save_results(rows: Sequence[dict[str, Any]], path: str) -> None:
    """The results rows as JSON, written atomically."""
    atomic_write(path, (json.dumps(list(rows), indent=2) + "\n").encode())


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@main_process_only
def plot_curves(histories: dict[str, list[dict]], keys: Sequence[str], path: str, title: str = "") -> str:
    """Training curves: one panel per metric in ``keys``, one line per run."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, hist in histories.items():
            pts = [(h["epoch"], h[key]) for h in hist if h.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), label=name, marker=".")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


@main_process_only
def plot_scatter(true: np.ndarray, pred: np.ndarray, groups: Sequence[str], path: str, title: str = "") -> str:
    """Predicted vs true values, coloured by group (architecture family)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    groups = np.asarray(groups)
    for g in sorted(set(groups.tolist())):
        m = groups == g
        ax.scatter(np.asarray(true)[m], np.asarray(pred)[m], s=14, label=g, alpha=0.75)
    lo = float(min(np.min(true), np.min(pred)))
    hi = float(max(np.max(true), np.max(pred)))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("true test accuracy")
    ax.set_ylabel("predicted")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


@main_process_only
def plot_edit_grid(columns: dict[str, np.ndarray], path: str, max_rows: int = 6) -> str:
    """A grid of images: one column per entry of ``columns`` (each ``(M, H, W)``), one row per example."""
    names = list(columns)
    n = min(max_rows, len(next(iter(columns.values()))))
    fig, axes = plt.subplots(n, len(names), figsize=(1.6 * len(names), 1.6 * n), squeeze=False)
    for j, name in enumerate(names):
        for i in range(n):
            ax = axes[i][j]
            ax.imshow(np.clip(columns[name][i], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
    return _save(fig, path)


def save_run(rows: Sequence[dict[str, Any]], histories: dict[str, list[dict]], curve_keys: Sequence[str],
             out: str, title: str) -> None:
    """A task's outputs in ``out``: ``curves.png`` (when anything was trained) and ``results.json``."""
    if histories:
        plot_curves(histories, curve_keys, os.path.join(out, "curves.png"), title)
    save_results(rows, os.path.join(out, "results.json"))


def csv_list(text: str) -> list[str]:
    """``"a,b,,c"`` -> ``["a", "b", "c"]`` (the type of ``--methods``)."""
    return [t for t in text.split(",") if t]


def add_training_args(p, *, zoo_help: str, out: str, methods, epochs: int, baseline_epochs: int, batch_size: int,
                      lr: float, weight_decay: float, patience: int) -> None:
    """The flags every task shares (zoo, output, methods, the encoder's size and training), with the
    task's own defaults, so that the three parsers cannot drift apart."""
    p.add_argument("--zoo", required=True, help=zoo_help)
    p.add_argument("--out", default=out, help="directory of the runs, plots and results.json")
    p.add_argument("--methods", type=csv_list, default=list(methods), help=f"comma-separated subset of {list(methods)}")
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs of the encoder")
    p.add_argument("--baseline-epochs", type=int, default=baseline_epochs, help="training epochs of the MLP baselines")
    p.add_argument("--hidden-dim", type=int, default=32, help="width of the encoder's node and edge embeddings")
    p.add_argument("--num-layers", type=int, default=3, help="message-passing layers of the encoder")
    p.add_argument("--batch-size", type=int, default=batch_size, help="graphs per training batch")
    p.add_argument("--lr", type=float, default=lr, help="learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=weight_decay, help="weight decay (AdamW)")
    p.add_argument("--patience", type=int, default=patience,
                   help="stop after this many epochs without a better validation score")


class MethodError(NNGraphError, ValueError):
    """``--methods`` names a method the task does not have."""


def check_methods(methods, choices) -> None:
    """Raise :class:`MethodError` (one line from :func:`run_main`, no traceback) for unknown methods."""
    unknown = set(methods) - set(choices)
    if unknown:
        raise MethodError(f"Could not resolve methods {sorted(unknown)} among choices {list(choices)}")


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
