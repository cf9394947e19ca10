"""Results rows, the printed table, a JSON of results, and the plots (PNG; matplotlib is imported when one is
drawn, see :func:`nngraph.plotting.pyplot`)."""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, Sequence

import numpy as np

from nngraph.io import atomic_write
from nngraph.plotting import pyplot
from nngraph.train import distributed

__all__ = ["row", "format_table", "save_results", "save_run", "plot_curves", "plot_scatter", "plot_edit_grid",
           "plot_maps"]


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
    pyplot().close(fig)
    return path


@main_process_only
def plot_curves(histories: dict[str, list[dict]], keys: Sequence[str], path: str, title: str = "") -> str:
    """Training curves: one panel per metric in ``keys``, one line per run."""
    fig, axes = pyplot().subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), squeeze=False)
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
    fig, ax = pyplot().subplots(figsize=(4.5, 4.5))
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
    fig, axes = pyplot().subplots(n, len(names), figsize=(1.6 * len(names), 1.6 * n), squeeze=False)
    for j, name in enumerate(names):
        for i in range(n):
            ax = axes[i][j]
            ax.imshow(np.clip(columns[name][i], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
    return _save(fig, path)


@main_process_only
def plot_maps(maps: dict[str, np.ndarray], labels: Sequence, path: str, title: str = "") -> str:
    """2-D maps of one set of models side by side (one panel per entry of ``maps``, each ``(M, 2)``), every point
    coloured by its label (a digit, a family)."""
    names = list(maps)
    fig, axes = pyplot().subplots(1, len(names), figsize=(4.6 * len(names), 4.4), squeeze=False)
    labels = np.asarray([str(v) for v in labels])
    classes = sorted(set(labels.tolist()))
    cmap = pyplot().get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, name in zip(axes[0], names):
        for c, value in enumerate(classes):
            m = labels == value
            ax.scatter(maps[name][m, 0], maps[name][m, 1], s=10, color=cmap(c % cmap.N), label=value, alpha=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    return _save(fig, path)


def save_run(rows: Sequence[dict[str, Any]], histories: dict[str, list[dict]], curve_keys: Sequence[str],
             out: str, title: str, seed: int | None = None) -> None:
    """A task's outputs in ``out``: ``curves.png`` (when anything was trained) and ``results.json``. With
    ``seed`` every row (in place, so the rows a task returns are those it wrote) records the run's seed, which
    ``tasks.common.summarize --paired`` pairs runs by."""
    if histories:
        plot_curves(histories, curve_keys, os.path.join(out, "curves.png"), title)
    for r in rows if seed is not None else ():
        r["seed"] = int(seed)
    save_results(rows, os.path.join(out, "results.json"))
