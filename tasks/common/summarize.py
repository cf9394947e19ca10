"""Results over seeds and over training-set sizes, from the ``results.json`` of finished task runs.

    python -m tasks.common.summarize runs/acc_s0 runs/acc_s1 runs/acc_s2            # mean ± std per method and metric
    python -m tasks.common.summarize runs/curve_* --curve "kendall_tau[test]" --png curve.png   # a learning curve
    python -m tasks.common.summarize runs/w64_s0 runs/w64_s1 runs/base_s0 runs/base_s1 --tag "w64=width 64" \
        --paired "encoder (width 64)=encoder"                                # paired by seed: A - B per seed
    python -m tasks.common.summarize runs/edit_s0 runs/edit_s1 --fields speckle --digits 5   # a row's extra numbers too

Seeds: every (method, metric) row that the runs share is reduced to its mean, its standard deviation over
the runs (``ddof=1``; 0 for one run) and the number of runs, and printed as a Markdown table. Curves: the
runs are grouped by their number of training models (the first number of the rows' ``note``, which every
task writes as ``"N train / ..."``); each method's metric is drawn as mean ± std against it. Paired: the run
that holds method A is paired with the run of the same seed that holds method B (the seed each run's rows record;
a run holding both pairs with itself; runs from before the rows recorded a seed pair by the order they are listed
in), and every metric they share is reduced to the mean ± std of the per-seed differences A - B, which a shared
seed's luck cancels out of. Fields: numbers a task keeps
beside a row's value (INR editing's ``mse_background``, ``speckle``) become metrics of their own.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from typing import Any, Sequence

import numpy as np

from nngraph.plotting import pyplot, save_figure

__all__ = ["load_rows", "tag_methods", "expand_fields", "over_seeds", "format_seed_table", "run_seed",
           "paired_differences", "format_paired_table", "train_size", "learning_curve", "plot_learning_curve"]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def load_rows(run: str) -> list[dict[str, Any]]:
    """The rows of a finished run: ``run/results.json`` (or ``run`` itself if it is that file)."""
    path = run if run.endswith(".json") else os.path.join(run, "results.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no results (is the run {run!r} finished?)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def tag_methods(rows: Sequence[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """``rows`` with every method renamed ``"<method> (<label>)"``: runs of one method with another setting
    (e.g. ``--hidden-dim 64``) become a method of their own in tables and curves."""
    return [{**r, "method": f"{r['method']} ({label})"} for r in rows]


def expand_fields(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> list[dict[str, Any]]:
    """``rows`` plus, for every row holding a number under one of ``fields``, a row of the same task and method
    whose metric is that field and whose value is that number (no ``seconds``: the time is the row's own).
    Raises ``ValueError`` when one method holds a field on two rows (the name would not say which)."""
    out, seen = list(rows), set()
    for r in rows:
        for field in fields:
            value = r.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if (r["task"], r["method"], field) in seen:
                    raise ValueError(f"method {r['method']!r} holds field {field!r} on more than one row")
                seen.add((r["task"], r["method"], field))
                out.append({"task": r["task"], "method": r["method"], "metric": field, "value": float(value),
                            "seconds": None, "note": r.get("note", "")})
    return out


def over_seeds(runs: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (task, method, metric) present in every run: ``mean``, ``std`` (ddof 1), ``n``, ``values``
    and the mean training ``seconds``; in the first run's order. Non-finite values count as they are (a
    method that failed in one seed shows NaN, not a kinder mean)."""
    if not runs:
        raise ValueError("no runs to summarise")
    keyed = [{(r["task"], r["method"], r["metric"]): r for r in rows} for rows in runs]
    out = []
    for key in keyed[0]:
        if not all(key in k for k in keyed):
            continue
        values = np.array([k[key]["value"] for k in keyed], dtype=float)
        seconds = [k[key]["seconds"] for k in keyed if k[key].get("seconds") is not None]
        mean, std = _mean_std(values)
        out.append({"task": key[0], "method": key[1], "metric": key[2], "mean": mean, "std": std, "n": len(values),
                    "values": values.tolist(), "seconds": float(np.mean(seconds)) if seconds else None})
    return out


def format_seed_table(rows: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None, digits: int = 3) -> str:
    """A Markdown table, one line per method, one column per metric: ``mean ± std`` (n runs), ``digits``
    decimals."""
    metrics = list(metrics) if metrics else list(dict.fromkeys(r["metric"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["metric"]): r for r in rows}
    n = max((r["n"] for r in rows), default=0)
    lines = ["| method | " + " | ".join(metrics) + " | seconds |", "|---|" + "---|" * (len(metrics) + 1)]
    for m in methods:
        cells = []
        for metric in metrics:
            r = cell.get((m, metric))
            cells.append("" if r is None else f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}")
        secs = [cell[(m, k)]["seconds"] for k in metrics if (m, k) in cell and cell[(m, k)]["seconds"] is not None]
        lines.append(f"| {m} | " + " | ".join(cells) + " | " + (f"{secs[0]:.0f}" if secs else "") + " |")
    return "\n".join(lines) + f"\n\n(mean ± std over {n} runs)"


def run_seed(rows: Sequence[dict[str, Any]]) -> int | None:
    """The seed a run's rows record (``None`` when none does: a run from before the tasks recorded it).
    Raises ``ValueError`` when its rows record different seeds or only some record one."""
    seeds = {r.get("seed") for r in rows}
    if len(seeds) > 1:
        raise ValueError(f"one run's rows record different seeds {sorted(map(str, seeds))}")
    return next(iter(seeds), None)


def paired_differences(runs: Sequence[Sequence[dict[str, Any]]], first: str, second: str) -> list[dict[str, Any]]:
    """Method ``first`` against method ``second``, paired by seed: the run of seed ``s`` holding ``first`` with
    the run of seed ``s`` holding ``second`` (:func:`run_seed`; when no run records a seed, the i-th run
    holding ``first`` with the i-th run holding ``second``). One row per (task, metric) that every one of those
    runs has: ``first_mean``, ``first_std``, ``second_mean``, ``second_std``, ``mean`` and ``std`` (ddof 1) of
    the differences ``first - second``, ``n`` pairs, the differences as ``values`` and the ``seeds`` paired (in
    the order of the runs holding ``first``; ``None`` for runs that record none); in the first run's order.

    Raises:
        ValueError: a method no run holds, some runs recording a seed and others not, two runs of one seed
            holding the same method, or the seeds of ``first``'s runs not those of ``second``'s.
    """
    seeds = [run_seed(rows) for rows in runs]
    if len({s is None for s in seeds}) > 1:
        raise ValueError("some runs record their seed and others do not (older runs): pair runs of one kind")

    def holding(method: str) -> tuple[list[dict[tuple[str, str], dict[str, Any]]], list[int | None]]:
        held = [({(r["task"], r["metric"]): r for r in rows if r["method"] == method}, seed)
                for rows, seed in zip(runs, seeds)]
        held = [(h, seed) for h, seed in held if h]
        if not held:
            raise ValueError(f"no run holds method {method!r} (methods: "
                             f"{sorted({r['method'] for rows in runs for r in rows})})")
        return [h for h, _ in held], [seed for _, seed in held]
    (a, seeds_a), (b, seeds_b) = holding(first), holding(second)
    if seeds_a[0] is None:  # runs that record no seed: by the order given
        if len(a) != len(b):
            raise ValueError(f"{len(a)} runs hold {first!r} and {len(b)} hold {second!r}: pairing needs one of "
                             "each per seed")
    else:
        for method, held in ((first, seeds_a), (second, seeds_b)):
            twice = sorted({s for s in held if held.count(s) > 1})
            if twice:
                raise ValueError(f"more than one run of seed {twice} holds {method!r}: pairing needs one run per "
                                 "seed and method")
        if set(seeds_a) != set(seeds_b):
            raise ValueError(f"the seeds do not match: {first!r} ran with seeds {sorted(seeds_a)}, {second!r} with "
                             f"{sorted(seeds_b)}")
        b = [b[seeds_b.index(s)] for s in seeds_a]  # second's runs in the order of first's seeds
    out = []
    for key in a[0]:
        if not all(key in h for h in a + b):
            continue
        va = np.array([h[key]["value"] for h in a], dtype=float)
        vb = np.array([h[key]["value"] for h in b], dtype=float)
        (ma, sa), (mb, sb), (md, sd) = _mean_std(va), _mean_std(vb), _mean_std(va - vb)
        out.append({"task": key[0], "metric": key[1], "first": first, "second": second, "first_mean": ma,
                    "first_std": sa, "second_mean": mb, "second_std": sb, "mean": md, "std": sd, "n": len(va),
                    "values": (va - vb).tolist(), "seeds": list(seeds_a)})
    if not out:
        raise ValueError(f"the runs of {first!r} and {second!r} share no metric")
    return out


def format_paired_table(rows: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None,
                        digits: int = 3) -> str:
    """A Markdown table of :func:`paired_differences`: one line per metric, both methods' mean ± std, the paired
    difference's mean ± std and every pair's difference, ``digits`` decimals."""
    rows = [r for r in rows if not metrics or r["metric"] in metrics]
    if not rows:
        return "(no metric to compare)"
    first, second = rows[0]["first"], rows[0]["second"]
    lines = [f"| metric | {first} | {second} | {first} - {second}, paired | per pair |", "|---|---|---|---|---|"]
    d = digits
    for r in rows:
        pairs = " / ".join(f"{v:+.{d}f}" for v in r["values"])
        lines.append(f"| {r['metric']} | {r['first_mean']:.{d}f} ± {r['first_std']:.{d}f} | {r['second_mean']:.{d}f} ± "
                     f"{r['second_std']:.{d}f} | {r['mean']:+.{d}f} ± {r['std']:.{d}f} | {pairs} |")
    return "\n".join(lines) + f"\n\n({rows[0]['n']} pairs)"


def train_size(rows: Sequence[dict[str, Any]]) -> int:
    """The number of training models of a run: the first number of its rows' ``note``."""
    for r in rows:
        match = re.match(r"\s*(\d+) train", str(r.get("note", "")))
        if match:
            return int(match.group(1))
    raise ValueError("no row's note starts with 'N train': not a run of a task of this package")


def learning_curve(runs: Sequence[Sequence[dict[str, Any]]], metric: str) -> dict[str, list[tuple[int, float, float, int]]]:
    """``{method: [(train_size, mean, std, n), ...]}`` sorted by size: every run's ``metric`` rows grouped by
    method and training-set size (seeds of one size reduce to mean ± std; runs of one size may hold different
    methods)."""
    groups: dict[tuple[str, int], list[float]] = {}
    for rows in runs:
        size = train_size(rows)
        for r in rows:
            if r["metric"] == metric:
                groups.setdefault((r["method"], size), []).append(float(r["value"]))
    if not groups:
        raise ValueError(f"no run has metric {metric!r}")
    curve: dict[str, list] = {}
    for (method, size), values in sorted(groups.items(), key=lambda kv: kv[0][1]):
        curve.setdefault(method, []).append((size, *_mean_std(values), len(values)))
    return curve


def plot_learning_curve(curve: dict[str, list[tuple[int, float, float, int]]], metric: str, path: str,
                        references: dict[str, float] | None = None) -> str:
    """The curve of :func:`learning_curve` as a PNG (log-scaled size axis, ± std bands); ``references``:
    ``{label: value}`` drawn as dashed horizontal lines (a ceiling, a goal)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, points in curve.items():
        size, mean, std = (np.array([p[i] for p in points], dtype=float) for i in range(3))
        ax.plot(size, mean, marker="o", label=method)
        ax.fill_between(size, mean - std, mean + std, alpha=0.2)
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, linestyle="--", linewidth=1, color=f"C{7 + i}", label=f"{label} ({value:g})")
    ax.set_xscale("log")
    ax.set_xlabel("training models")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _pair(parser: argparse.ArgumentParser, flag: str, item: str, form: str, last: bool = False) -> tuple[str, str]:
    """``item`` split at its first ``=`` (its last with ``last``: labels may hold one); a parser error naming
    ``flag`` and the expected ``form`` when either side is empty."""
    key, sep, value = item.rpartition("=") if last else item.partition("=")
    if not (sep and key and value):
        parser.error(f"{flag} {item!r}: expected {form}")
    return key, value


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tasks.common.summarize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (or results.json files)")
    p.add_argument("--metrics", default="", help="comma-separated metrics to show (default: all)")
    p.add_argument("--curve", default="", help="draw this metric against the training-set size instead")
    p.add_argument("--png", default="", help="where the learning curve goes (with --curve)")
    p.add_argument("--reference", action="append", default=[], metavar="LABEL=VALUE",
                   help="a dashed horizontal line on the curve (repeatable), e.g. 'noise ceiling=0.915'")
    p.add_argument("--tag", action="append", default=[], metavar="TEXT=LABEL",
                   help="runs whose path contains TEXT show their methods as 'method (LABEL)' (repeatable; the "
                        "first match counts; the seed table reduces each tag's runs on their own), e.g. "
                        "'_w64_=width 64'")
    p.add_argument("--paired", action="append", default=[], metavar="A=B",
                   help="method A against method B, paired by the seed each run records (repeatable), e.g. "
                        "'encoder (width 64)=encoder'")
    p.add_argument("--fields", default="", help="comma-separated numbers kept beside a row's value that become "
                   "metrics of their own, e.g. 'mse_background,speckle' (INR editing)")
    p.add_argument("--digits", type=int, default=3, help="decimals in the tables")
    p.add_argument("--json", default="", help="also write the summary rows here")
    args = p.parse_args(argv)
    if args.digits < 0:
        p.error(f"--digits {args.digits}: expected a number of decimals >= 0")
    fields = [f for f in args.fields.split(",") if f]
    tags = [_pair(p, "--tag", item, "TEXT=LABEL") for item in args.tag]
    metrics = [m for m in args.metrics.split(",") if m] or None
    runs, labels = [], []
    for r in args.runs:
        label = next((lab for text, lab in tags if text in r), None)
        try:
            rows = expand_fields(load_rows(r), fields)
        except ValueError as e:
            p.error(f"--fields in {r}: {e}")
        runs.append(rows if label is None else tag_methods(rows, label))
        labels.append(label)
    if args.curve:
        curve = learning_curve(runs, args.curve)
        for method, points in curve.items():
            print(method + ": " + ", ".join(f"{s}: {m:.3f} ± {sd:.3f} (n={n})" for s, m, sd, n in points))
        if args.png:
            references = {label: float(value) for label, value in
                          (_pair(p, "--reference", item, "LABEL=VALUE", last=True) for item in args.reference)}
            print(plot_learning_curve(curve, args.curve, args.png, references))
        summary: Any = {m: [list(p) for p in pts] for m, pts in curve.items()}
    elif args.paired:
        summary = []
        for item in args.paired:
            first, second = _pair(p, "--paired", item, "A=B")
            try:
                rows = paired_differences(runs, first, second)
            except ValueError as e:
                p.error(f"--paired {item!r}: {e}")
            summary.extend(rows)
            print(format_paired_table(rows, metrics, args.digits) + "\n")
    else:
        # the seeds of each tag (and of the untagged runs) are reduced on their own, then listed together
        summary = [r for label in dict.fromkeys(labels)
                   for r in over_seeds([rows for rows, lab in zip(runs, labels) if lab == label])]
        print(format_seed_table(summary, metrics, args.digits))
    if args.json:
        from nngraph.io import atomic_write
        atomic_write(args.json, (json.dumps(summary, indent=2, default=lambda v: None if
                                            isinstance(v, float) and not math.isfinite(v) else v) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
