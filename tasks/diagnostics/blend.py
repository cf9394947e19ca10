"""Do two accuracy predictors know different things? Paired comparison and rank blend of their predictions.

Reads the ``predictions.json`` that :mod:`tasks.accuracy_prediction` writes (every test model's true and
predicted accuracy per method) and, per run (a seed), reports Kendall's τ of each method, of the rank blend
``w · rank(a) + (1 - w) · rank(b)`` (ranks scaled to [0, 1], ``w = 0.5`` by default: no weight is tuned on the
test models) and a paired bootstrap over the test models of ``τ(blend) - max(τ(a), τ(b))``. A blend above both
says the two read information the other misses.

    python -m tasks.diagnostics.blend runs/wild7k_s0 runs/wild7k_s1 runs/wild7k_s2 --methods encoder,stats_gbm

With ``--seed-ensemble`` it also blends the first method's predictions over the runs (the same test models,
trained with different seeds) and that ensemble with the second method: a blend of two methods that beats the
ensemble of one method's seeds is not only averaging noise away.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from scipy.stats import rankdata

from ..common.metrics import kendall_tau

__all__ = ["load_predictions", "rank_blend", "blend_report", "seed_ensemble"]


def load_predictions(run: str) -> dict:
    """``{"ids", "families", "true", "pred": {method: [...]}}`` of a finished accuracy-prediction run."""
    path = run if run.endswith(".json") else os.path.join(run, "predictions.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no predictions (runs of tasks.accuracy_prediction write them; rerun the "
                                "same command: finished trainings are loaded, not repeated)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _scaled_ranks(values) -> np.ndarray:
    """``(M,)``: the ranks of ``values`` scaled to ``[0, 1]`` (ties share a rank)."""
    values = np.asarray(values, float)
    return (rankdata(values) - 1) / max(len(values) - 1, 1)


def rank_blend(a, b, weight: float = 0.5) -> np.ndarray:
    """``(M,)``: ``weight · rank(a) + (1 - weight) · rank(b)``, ranks scaled to ``[0, 1]`` (ties share a rank)."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"the predictions differ in length: {np.shape(a)} and {np.shape(b)}")
    return weight * _scaled_ranks(a) + (1 - weight) * _scaled_ranks(b)


def seed_ensemble(preds: list[dict], method: str) -> np.ndarray:
    """``(M,)``: the mean of ``method``'s scaled ranks over runs of the same test models (checked by id)."""
    ids = preds[0]["ids"]
    if any(p["ids"] != ids for p in preds[1:]):
        raise ValueError("the runs hold different test models; a seed ensemble needs the same ones")
    return np.mean([_scaled_ranks(p["pred"][method]) for p in preds], axis=0)


def blend_report(pred: dict, a: str, b: str, weight: float = 0.5, boot: int = 200, seed: int = 0) -> dict:
    """τ of ``a``, ``b`` and their rank blend on one run's test models, and the bootstrap interval (95 %) of the
    blend's gain over the better of the two."""
    for m in (a, b):
        if m not in pred["pred"]:
            raise KeyError(f"method {m!r} not in the run's predictions ({sorted(pred['pred'])})")
    true = np.asarray(pred["true"], float)
    pa, pb = np.asarray(pred["pred"][a], float), np.asarray(pred["pred"][b], float)
    mix = rank_blend(pa, pb, weight)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(boot):
        i = rng.integers(0, len(true), len(true))
        gains.append(kendall_tau(true[i], mix[i]) - max(kendall_tau(true[i], pa[i]), kendall_tau(true[i], pb[i])))
    return {"tau_a": kendall_tau(true, pa), "tau_b": kendall_tau(true, pb), "tau_blend": kendall_tau(true, mix),
            "gain_low": float(np.percentile(gains, 2.5)), "gain_high": float(np.percentile(gains, 97.5)),
            "models": int(len(true))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tasks.diagnostics.blend", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", help="accuracy-prediction run directories (one per seed)")
    p.add_argument("--methods", default="encoder,stats_gbm", help="the two methods to blend, a,b")
    p.add_argument("--weight", type=float, default=0.5, help="weight of the first method's ranks")
    p.add_argument("--boot", type=int, default=200, help="bootstrap resamples of the test models")
    p.add_argument("--seed-ensemble", action="store_true",
                   help="also the first method's ensemble over the runs, alone and blended with the second")
    args = p.parse_args(argv)
    a, b = args.methods.split(",")
    print(f"| run | models | τ {a} | τ {b} | τ blend | blend - best, 95 % |")
    print("|---|---|---|---|---|---|")
    rows = []
    for run in args.runs:
        r = blend_report(load_predictions(run), a, b, args.weight, args.boot)
        rows.append(r)
        print(f"| {run} | {r['models']} | {r['tau_a']:.3f} | {r['tau_b']:.3f} | {r['tau_blend']:.3f} | "
              f"[{r['gain_low']:+.3f}, {r['gain_high']:+.3f}] |")
    if len(rows) > 1:
        cols = {k: np.array([r[k] for r in rows]) for k in ("tau_a", "tau_b", "tau_blend")}
        print("| mean ± std | | " + " | ".join(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" for v in cols.values()) + " | |")
    if args.seed_ensemble:
        preds = [load_predictions(run) for run in args.runs]
        true, ensemble = preds[0]["true"], seed_ensemble(preds, a)
        print(f"{a} over {len(preds)} runs, rank-averaged: τ {kendall_tau(true, ensemble):.3f}; blended with "
              f"{b} of the first run: τ {kendall_tau(true, rank_blend(ensemble, preds[0]['pred'][b], args.weight)):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
