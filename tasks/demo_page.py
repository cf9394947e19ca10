"""What the demo shows a person: the results table with where each row comes from, a confusion matrix, and one
``index.html`` that puts the table and the plots together."""
from __future__ import annotations

import html
import os
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nngraph.io import atomic_write

__all__ = ["format_demo_table", "plot_confusion", "write_index"]

#: Columns of the demo's table; ``source`` says whether a row is a shipped checkpoint or trained in the demo.
COLUMNS = ("task", "method", "metric", "value", "source", "seconds", "note")


def _cell(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if key == "seconds":
        return "" if v is None else f"{v:.0f}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v)


def format_demo_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` with the :data:`COLUMNS`; ``seconds`` is the time the row took in the demo."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r, k) for k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def plot_confusion(true: np.ndarray, pred: np.ndarray, path: str, title: str = "", classes: int = 10) -> str:
    """A ``classes x classes`` confusion matrix (rows: true class, columns: predicted), counts in the cells.
    Draws on its own figure, so the caller's matplotlib backend is never switched."""
    counts = np.zeros((classes, classes), dtype=int)  # (true, predicted)
    np.add.at(counts, (np.asarray(true, dtype=int), np.asarray(pred, dtype=int)), 1)
    fig = Figure(figsize=(4.6, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    for i in range(classes):
        for j in range(classes):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_index(path: str, title: str, intro: str, rows: Sequence[dict[str, Any]],
                figures: Sequence[tuple[str, str]]) -> str:
    """``index.html`` beside the plots: ``intro`` (text), the table of ``rows``, then each ``(png, caption)``
    of ``figures`` (paths relative to the page's directory; missing files are left out)."""
    root = os.path.dirname(os.path.abspath(path))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r, k))}</td>" for k in COLUMNS) + "</tr>\n"
                   for r in rows)
    figs = "".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}'
                   "</figcaption></figure>\n" for src, cap in figures if os.path.exists(os.path.join(root, src)))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}} table{{border-collapse:collapse;font-size:0.85em}}
td,th{{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left}} tr:nth-child(even){{background:#f6f6f6}}
figure{{display:inline-block;margin:1em;vertical-align:top}} img{{max-width:38em}}
figcaption{{font-size:0.85em;max-width:38em}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>
<table><tr>{head}</tr>
{body}</table>
{figs}</body></html>
"""
    atomic_write(path, page.encode())
    return path
