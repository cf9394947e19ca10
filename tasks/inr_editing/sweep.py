"""Output-ensemble editing, k side by side: one INR-editing run per ensemble size and seed, then one table.

    python -m tasks.inr_editing.sweep --zoo zoos/inr --out runs/edit_ensemble --ks 1,2,4,8 --seeds 0,1,2

Each run is ``python -m tasks.inr_editing --zoo Z --ensemble K --seed S --out OUT/kK_seedS`` plus any further
flags given here (passed through, e.g. ``--epochs 30``); the ``k = 1`` runs also train the unedited-INR and
flat-MLP rows, the others only the encoder. A run whose ``results.json`` exists is not repeated, so an
interrupted sweep resumes. ``summary.json`` / ``summary.md`` in ``OUT``: per row (``noop``, ``encoder``,
``encoder_kK``, ``flat_mlp``) the mean and standard deviation of the test MSE and its background / stroke /
speckle over the seeds, the parameter counts, and the change of the mean test MSE against ``encoder`` (k = 1).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys

from nngraph.io import atomic_write

from . import task as inr_editing
from ..common.harness import csv_list, task_parser

__all__ = ["run_commands", "summarise", "format_summary", "main"]

FIELDS = ("value", "mse_background", "mse_stroke", "speckle")


def build_parser(prog: str = "python -m tasks.inr_editing.sweep") -> argparse.ArgumentParser:
    p = task_parser(prog, __doc__)
    p.add_argument("--zoo", required=True, help="an INR zoo directory")
    p.add_argument("--out", default="runs/edit_ensemble", help="directory of the runs and the summary")
    p.add_argument("--ks", type=lambda t: [int(v) for v in csv_list(t)], default=[1, 2, 4, 8],
                   help="comma-separated ensemble sizes")
    p.add_argument("--seeds", type=lambda t: [int(v) for v in csv_list(t)], default=[0, 1, 2],
                   help="comma-separated seeds")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return p


def run_commands(zoo: str, out: str, ks, seeds, extra=()) -> list[tuple[str, list[str]]]:
    """``[(run directory, inr_editing arguments), ...]``: one run per seed and ensemble size."""
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ensemble sizes must be at least 1, got {list(ks)}")
    runs = []
    for seed in seeds:
        for k in ks:
            directory = os.path.join(out, f"k{k}_seed{seed}")
            methods = ",".join(inr_editing.METHODS) if k == 1 else "encoder"
            runs.append((directory, ["--zoo", zoo, "--out", directory, "--ensemble", str(k), "--seed", str(seed),
                                     "--methods", methods, *extra]))
    return runs


def summarise(out: str) -> list[dict]:
    """One row per method over every ``results.json`` under ``out``: mean / std / n of :data:`FIELDS`."""
    by_method: dict[str, list[dict]] = {}
    for path in sorted(glob.glob(os.path.join(out, "k*_seed*", "results.json"))):
        with open(path, encoding="utf-8") as f:
            for r in json.load(f):
                by_method.setdefault(r["method"], []).append(r)
    if not by_method:
        raise FileNotFoundError(f"no runs under {out}: run the sweep first")
    order = {"noop": (0, 0), "encoder": (1, 1), "flat_mlp": (3, 0)}
    rows = []
    for method, found in sorted(by_method.items(), key=lambda m: order.get(m[0], (2, m[1][0].get("k", 0)))):
        summary = {"method": method, "k": found[0].get("k"), "n": len(found)}
        for field in FIELDS:
            values = [r[field] for r in found if r.get(field) is not None]
            summary[field] = statistics.fmean(values) if values else None
            summary[field + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        for key in ("head_dim", "params_used", "params_total"):
            if key in found[0]:
                summary[key] = found[0][key]
        rows.append(summary)
    reference = next((r["value"] for r in rows if r["method"] == "encoder"), None)
    for r in rows:
        r["vs_k1"] = None if reference is None or r["k"] is None else r["value"] / reference - 1.0
    return rows


def format_summary(rows: list[dict]) -> str:
    """A Markdown table of :func:`summarise`'s rows."""
    def cell(r, field, fmt=".4f"):
        mean, std = r.get(field), r.get(field + "_std")
        return "" if mean is None else f"{mean:{fmt}}" + ("" if std is None else f" ± {std:{fmt}}")

    lines = ["| method | k | seeds | test MSE | background MSE | stroke MSE | speckle | vs k = 1 | head width | "
             "parameters (used / all) |", "|" + "---|" * 10]
    for r in rows:
        params = f"{r['params_used']} / {r['params_total']}" if "params_used" in r else ""
        change = "" if r.get("vs_k1") is None else f"{100 * r['vs_k1']:+.1f}%"
        errors = " | ".join(cell(r, f, ".3f" if f == "speckle" else ".5f") for f in FIELDS)
        lines.append(f"| {r['method']} | {r['k'] or ''} | {r['n']} | {errors} | {change} | {r.get('head_dim', '')} | "
                     f"{params} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    for directory, task_args in run_commands(args.zoo, args.out, args.ks, args.seeds, extra):
        print("python -m tasks.inr_editing " + " ".join(task_args), flush=True)
        if args.dry_run or os.path.exists(os.path.join(directory, "results.json")):
            continue
        status = inr_editing.main(task_args)
        if status:
            return status
    if args.dry_run:
        return 0
    rows = summarise(args.out)
    table = format_summary(rows)
    atomic_write(os.path.join(args.out, "summary.json"), (json.dumps(rows, indent=2) + "\n").encode())
    atomic_write(os.path.join(args.out, "summary.md"), (table + "\n").encode())
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
