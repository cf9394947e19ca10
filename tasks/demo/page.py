"""What the demo shows a person: a headline (one sentence and one row per task: the shipped encoder, its rival,
the best baseline trained in the run, a reference), the plots, and the full results table with where each row comes
from, in one ``index.html``; a confusion matrix.

The headline is also the demo's table in ``docs/results.md``: ``python -m tasks.demo.page runs/demo`` copies a demo
run's ``results.json`` to ``docs/demo_results.json`` and writes the table from it (``tests/test_docs.py`` checks
that the two agree).
"""
from __future__ import annotations

import argparse
import dataclasses
import html
import json
import os
import re
import shutil
import sys
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nngraph.io import atomic_write

__all__ = ["HEADLINE", "format_demo_table", "format_headline", "headline", "headline_sentence", "plot_confusion",
           "update_docs", "write_index"]

#: Columns of the demo's table; ``source`` says whether a row is a shipped checkpoint or trained in the demo.
COLUMNS = ("task", "method", "metric", "value", "source", "seconds", "note")


def _cell(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if key == "seconds":
        return "" if v is None else f"{v:.0f}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v)


@dataclasses.dataclass(frozen=True)
class HeadlineSpec:
    """One task's headline row: which rows of ``results.json`` it reads and what their number means."""

    label: str  #: the task, as a reader names it
    metric: str  #: the ``metric`` of the rows compared
    meaning: str  #: what the number is; ``{n}`` becomes the number of test models
    short: str  #: the same in the headline sentence, ``{v}`` the value
    higher_is_better: bool
    encoder: str  #: the shipped encoder's method
    rival: str | None  #: the shipped method it is compared with
    reference: str | None  #: a row trained in the demo that is not a weight-space baseline (pixels, the unedited INR)


#: The demo's headline, one row per task, in this order.
HEADLINE = {
    "inr_classification": HeadlineSpec("INR classification", "test_acc", "accuracy on {n} test INRs",
                                       "accuracy {v} on {n} test INRs", True, "encoder_probe_flip", "encoder_broken",
                                       "pixels"),
    "accuracy_prediction": HeadlineSpec("accuracy prediction", "kendall_tau[test]",
                                        "Kendall's τ, predicted against true accuracy of {n} test models",
                                        "Kendall's τ {v} on {n} test models", True, "encoder", None, None),
    "inr_editing": HeadlineSpec("INR editing", "test_mse", "MSE to the dilated digit on {n} test INRs",
                                "MSE {v} on {n} test INRs", False, "encoder", "flat_mlp", "noop"),
}

#: How the headline names the methods.
METHOD_NAMES = {"encoder_probe_flip": "probes + sign flips", "encoder_broken": "equivariance broken",
                "encoder": "encoder", "flat_mlp": "MLP on the flat weights", "stats_gbm": "weight statistics + GBM",
                "stats_mlp": "weight statistics + MLP", "probe_gbm": "probe outputs + GBM",
                "probe_mlp": "probe outputs + MLP", "pixels": "MLP on the pixels", "noop": "unedited INR"}

#: Where the docs keep the demo run their table is written from, and the table's markers in ``docs/results.md``.
DEMO_RESULTS = os.path.join("docs", "demo_results.json")
DEMO_DOC = os.path.join("docs", "results.md")
DEMO_TABLE_BEGIN = ("<!-- demo table: written by `python -m tasks.demo.page runs/demo` from docs/demo_results.json; "
                    "tests/test_docs.py checks it -->")
DEMO_TABLE_END = "<!-- end of the demo table -->"


def _number(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 0.1 else f"{v:.3f}"


def headline(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per task of :data:`HEADLINE` that ``rows`` hold: ``task``, ``meaning``, ``short``,
    ``higher_is_better`` and ``(method name, value)`` pairs (or ``None``) for ``encoder`` and ``rival``
    (shipped), ``baseline`` (the best row trained in the demo whose method is neither an encoder nor the
    reference) and ``reference``."""
    out = []
    for task, spec in HEADLINE.items():
        mine = [r for r in rows if r.get("task") == task and r.get("metric") == spec.metric]
        shipped = {r["method"]: r for r in mine if r.get("source") == "shipped"}
        trained = {r["method"]: r for r in mine if r.get("source") == "trained in demo"}
        if not shipped and not trained:
            continue
        pair = lambda r: None if r is None else (METHOD_NAMES.get(r["method"], r["method"]), r["value"])  # noqa: E731
        baselines = [r for m, r in trained.items() if not m.startswith("encoder") and m != spec.reference]
        best = (max if spec.higher_is_better else min)(baselines, key=lambda r: r["value"]) if baselines else None
        n = next((r["n"] for r in shipped.values() if "n" in r), None)
        count = lambda text: text.replace("{n}", "the" if n is None else str(n))  # noqa: E731
        out.append({"task": spec.label, "higher_is_better": spec.higher_is_better, "meaning": count(spec.meaning),
                    "short": count(spec.short),
                    "encoder": pair(shipped.get(spec.encoder)), "rival": pair(shipped.get(spec.rival)),
                    "baseline": pair(best), "reference": pair(trained.get(spec.reference))})
    return out


#: The headline table's columns: a heading and the entry of :func:`headline` it shows.
_HEADLINE_COLUMNS = (("task: the number", None), ("shipped encoder", "encoder"), ("shipped rival", "rival"),
                     ("best baseline, trained in the demo", "baseline"),
                     ("reference, trained in the demo", "reference"))


def _headline_cells(entry: dict[str, Any], bold: str = "**{}**", escape=lambda text: text) -> list[str]:
    """The cells of one :func:`headline` entry: the shipped encoder's value in ``bold``, text through ``escape``."""
    better = "higher" if entry["higher_is_better"] else "lower"
    cells = [escape(f"{entry['task']}: {entry['meaning']} ({better} is better)")]
    for _, key in _HEADLINE_COLUMNS[1:]:
        pair = entry[key]
        if pair is None:
            cells.append("")
            continue
        value = _number(pair[1])
        cells.append((bold.format(value) if key == "encoder" else value) + escape(f" ({pair[0]})"))
    return cells


def format_headline(rows: Sequence[dict[str, Any]]) -> str:
    """The :func:`headline` of ``rows`` as a Markdown table (the demo prints it; it is the table in the docs)."""
    lines = ["| " + " | ".join(h for h, _ in _HEADLINE_COLUMNS) + " |", "|" + "---|" * len(_HEADLINE_COLUMNS)]
    lines += ["| " + " | ".join(_headline_cells(e)) + " |" for e in headline(rows)]
    return "\n".join(lines)


def headline_sentence(rows: Sequence[dict[str, Any]], seconds: float | None = None) -> str:
    """What the demo did, in one sentence with the shipped encoders' numbers and the best baselines'."""
    parts = []
    for e in headline(rows):
        if e["encoder"] is None:
            continue
        against = [f"{what} {_number(p[1])}" for what, p in (("rival", e["rival"]),
                                                            ("best baseline trained here", e["baseline"])) if p]
        parts.append(f"{e['task']} at {e['short'].replace('{v}', _number(e['encoder'][1]))}"
                     + (f" ({', '.join(against)})" if against else ""))
    when = f"In {seconds:.0f} s, " if seconds is not None else ""
    if not parts:
        return f"{when}nngraph trained every method of the demo's tasks on small zoos (no shipped checkpoint scored)."
    return (f"{when}nngraph scored its shipped encoders on models they never saw: " + "; ".join(parts)
            + "; and trained every method briefly beside them.")


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
                figures: Sequence[tuple[str, str]], seconds: float | None = None) -> str:
    """``index.html`` beside the plots: the :func:`headline_sentence` and the :func:`headline` table of ``rows``,
    ``intro`` (text), each ``(png, caption)`` of ``figures`` large (paths relative to the page's directory; a
    missing file is left out and named on stdout), and the full table of ``rows`` last, collapsed."""
    root = os.path.dirname(os.path.abspath(path))
    missing = [src for src, _ in figures if not os.path.exists(os.path.join(root, src))]
    if missing:
        print(f"{path}: pictures not written, left out of the page: {', '.join(missing)}", flush=True)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r, k))}</td>" for k in COLUMNS) + "</tr>\n"
                   for r in rows)
    top_head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in _HEADLINE_COLUMNS)
    top = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in _headline_cells(e, "<b>{}</b>", html.escape)) + "</tr>\n"
                  for e in headline(rows))
    figs = "".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}'
                   "</figcaption></figure>\n" for src, cap in figures if src not in missing)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.2em 2em;max-width:84em}} h1{{margin:0.2em 0}}
p.headline{{font-size:1.15em;max-width:60em}} table{{border-collapse:collapse;font-size:0.85em}}
td,th{{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left;vertical-align:top}}
tr:nth-child(even){{background:#f6f6f6}} table.headline{{font-size:0.95em;margin-bottom:0.6em}}
figure{{display:inline-block;margin:0.6em 1em 1em 0;vertical-align:top;max-width:40em}}
img{{width:100%;max-width:40em}} figcaption{{font-size:0.9em}} p.intro{{font-size:0.9em;color:#444;max-width:70em}}
details{{margin-top:1em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="headline">{html.escape(headline_sentence(rows, seconds))}</p>
<table class="headline"><tr>{top_head}</tr>
{top}</table>
<p class="intro">{html.escape(intro)}</p>
{figs}<details><summary>All {len(rows)} rows: task, method, metric, value, source, seconds, note</summary>
<table><tr>{head}</tr>
{body}</table></details>
</body></html>
"""
    atomic_write(path, page.encode())
    return path


def update_docs(workdir: str, root: str = ".") -> str:
    """Copy ``workdir/results.json`` (a demo run) to :data:`DEMO_RESULTS` under ``root`` and write its
    :func:`format_headline` between the markers of :data:`DEMO_DOC`; returns the table."""
    rows = json.load(open(os.path.join(workdir, "results.json"), encoding="utf-8"))
    shutil.copyfile(os.path.join(workdir, "results.json"), os.path.join(root, DEMO_RESULTS))
    doc = os.path.join(root, DEMO_DOC)
    text = open(doc, encoding="utf-8").read()
    begin, end = DEMO_TABLE_BEGIN, DEMO_TABLE_END
    if begin not in text or end not in text:
        raise ValueError(f"{doc} has no demo table to replace: put the two lines {begin!r} and {end!r} where it goes")
    table = format_headline(rows)
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{table}\n{end}", text, flags=re.S)
    atomic_write(doc, text.encode())
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tasks.demo.page",
                                description=f"Copy a demo run's results.json to {DEMO_RESULTS} and write the demo "
                                            f"table of {DEMO_DOC} from it.")
    p.add_argument("workdir", help="the demo's --workdir (runs/demo), holding results.json")
    args = p.parse_args(argv)
    print(update_docs(args.workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
