"""How well can *any* predictor rank a classifier zoo's test accuracies? The noise ceiling of Kendall's τ.

A zoo's target, ``test_acc``, is an accuracy on a finite test set (539 images on the digits zoos). Two models
whose true accuracies differ by less than the sampling noise of that set are ranked by chance, so even a
predictor that knows every model's *expected* accuracy exactly cannot reach τ = 1 against the measured one. This
module measures that ceiling from the models themselves:

- the **correctness matrix** ``(M, T)``: model ``m`` right on test image ``t`` (the zoo's own test images, in
  eval mode; each row's mean reproduces the manifest's ``test_acc``);
- **split-half τ**: accuracies on two disjoint random halves of the images, ranked against each other — a
  direct, assumption-free measurement of how repeatable the ranking is at ``T / 2`` images;
- **bootstrap ceiling**: the images resampled with replacement (the cross-model correlation of hard images is
  kept); τ between each model's accuracy on the resample and on all ``T`` images estimates the τ that a perfect
  predictor of the expected accuracy reaches against a ``T``-image measurement. It conditions on the ``T``
  images at hand, so it leans high: the same bootstrap at ``T / 2`` images, two resamples against each other,
  comes out above the measured split-half τ (both resamples share the full set's noise);
- **ceiling from the split-half**: a second estimate that does not condition on the images, from the measured
  split-half τ under a Gaussian model of signal and noise (``τ = 2/π · arcsin ρ``; halving the images doubles
  the noise variance): ``ρ_half = sin(π τ_half / 2)``, ``noise / signal = 1 / ρ_half - 1``, the ceiling's
  ``ρ = (1 + noise / signal / 2) ** -0.5``.

    python -m tasks.diagnostics.noise_ceiling --zoo zoos/wild                 # the test split, 20 repeats
    python -m tasks.diagnostics.noise_ceiling --zoo zoos/wild --out runs/ceiling_wild.json
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from nngraph.io import atomic_write
from nngraph.zoo import Zoo

from ..common.metrics import kendall_tau
from ..accuracy_prediction.probing import zoo_images

__all__ = ["correctness_matrix", "split_half_tau", "bootstrap_tau", "ceiling_from_split_half", "noise_ceiling"]


@torch.no_grad()
def correctness_matrix(zoo_root: str, split: str = "test", progress: bool = True
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(correct (M, T) bool, recorded test_acc (M,), families (M,))`` over the models of ``split`` whose
    weights are finite, on the zoo's ``T`` test images.

    Raises:
        ValueError: if the zoo was not built by ``nngraph.zoo classifiers`` (its test images are unknown), or a
            recomputed accuracy disagrees with the manifest's (the images or the models are not the zoo's).
    """
    zoo = Zoo(zoo_root)
    images, train = zoo_images(zoo_root, "the noise ceiling")
    x, y = images.images[~train], images.labels[~train]  # (T, C, H, W), (T,)
    rows, recorded, families = [], [], []
    for entry in tqdm(zoo.split(split), desc=f"evaluating {split} models", disable=not progress):
        model = zoo.load_model(entry)
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            continue  # diverged: the accuracy-prediction task drops these too
        logits = model(x.to(next(model.parameters()).dtype))  # (T, classes)
        right = (logits.argmax(-1) == y).numpy()  # (T,)
        if abs(right.mean() - entry["test_acc"]) > 1e-6:
            raise ValueError(f"model {entry['id']}: accuracy {right.mean():.4f} on the zoo's test images, the "
                             f"manifest says {entry['test_acc']:.4f}; these are not the images it was scored on")
        rows.append(right)
        recorded.append(entry["test_acc"])
        families.append(entry.get("family", ""))
    return np.stack(rows), np.asarray(recorded), families


def split_half_tau(correct: np.ndarray, repeats: int = 20, seed: int = 0) -> np.ndarray:
    """``(repeats,)``: τ between the models' accuracies on two disjoint random halves of the images
    (``correct``: ``(M, T)``)."""
    rng = np.random.default_rng(seed)
    t = correct.shape[1]
    out = []
    for _ in range(repeats):
        order = rng.permutation(t)
        a, b = order[: t // 2], order[t // 2: 2 * (t // 2)]
        out.append(kendall_tau(correct[:, a].mean(1), correct[:, b].mean(1)))
    return np.asarray(out)


def bootstrap_tau(correct: np.ndarray, size: int | None = None, against: str = "all", repeats: int = 20,
                  seed: int = 0) -> np.ndarray:
    """``(repeats,)``: τ of accuracies on a resample (with replacement) of ``size`` images (default ``T``)
    against the accuracies on all images (``against="all"``: the ceiling of a perfect predictor of the expected
    accuracy) or against a second, independent resample (``against="resample"``: the bootstrap's split-half)."""
    if against not in ("all", "resample"):
        raise ValueError(f"against must be 'all' or 'resample', not {against!r}")
    rng = np.random.default_rng(seed)
    t = correct.shape[1]
    size = t if size is None else size
    full = correct.mean(1)  # (M,)
    out = []
    for _ in range(repeats):
        first = correct[:, rng.integers(0, t, size)].mean(1)  # (M,)
        other = full if against == "all" else correct[:, rng.integers(0, t, size)].mean(1)
        out.append(kendall_tau(other, first))
    return np.asarray(out)


def ceiling_from_split_half(tau_half: float) -> float:
    """The τ of a perfect predictor of the expected accuracy against a measurement on ``T`` images, from the
    split-half τ (two measurements on ``T / 2`` images each), under a Gaussian model of signal and independent
    noise (Kendall's τ of a bivariate normal with correlation ρ is ``2/π · arcsin ρ``)."""
    rho_half = np.sin(np.pi * tau_half / 2)  # corr of two half measurements = signal / (signal + noise_half)
    noise_half = 1.0 / rho_half - 1.0  # noise variance of a half measurement, in units of the signal's
    rho_full = (1.0 + noise_half / 2.0) ** -0.5  # corr of the truth with a full measurement (half the noise)
    return float(2.0 / np.pi * np.arcsin(rho_full))


def noise_ceiling(correct: np.ndarray, families: list[str], repeats: int = 20, seed: int = 0) -> list[dict]:
    """One row per scope (``"all"``, then each family): the measured split-half τ, the bootstrap's split-half τ,
    the bootstrap ceiling at the full test set (each ``mean`` and ``std`` over ``repeats``) and the ceiling
    estimated from the split-half (:func:`ceiling_from_split_half`)."""
    fam = np.asarray(families)
    rows = []
    for scope in ["all"] + sorted(set(families)):
        sub = correct if scope == "all" else correct[fam == scope]
        half = split_half_tau(sub, repeats, seed)
        boot_half = bootstrap_tau(sub, sub.shape[1] // 2, "resample", repeats, seed)
        ceiling = bootstrap_tau(sub, None, "all", repeats, seed)
        rows.append({"scope": scope, "models": int(sub.shape[0]), "images": int(sub.shape[1]),
                     "split_half_tau": float(half.mean()), "split_half_std": float(half.std(ddof=1)),
                     "bootstrap_half_tau": float(boot_half.mean()),
                     "ceiling_tau": float(ceiling.mean()), "ceiling_std": float(ceiling.std(ddof=1)),
                     "ceiling_from_split_half": ceiling_from_split_half(float(half.mean()))})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| scope | models | split-half τ (T/2 vs T/2) | bootstrap split-half τ | ceiling τ, bootstrap | "
             "ceiling τ, from the split-half |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scope']} | {r['models']} | {r['split_half_tau']:.3f} ± {r['split_half_std']:.3f} | "
                     f"{r['bootstrap_half_tau']:.3f} | {r['ceiling_tau']:.3f} ± {r['ceiling_std']:.3f} | "
                     f"{r['ceiling_from_split_half']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tasks.diagnostics.noise_ceiling", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--zoo", required=True, help="a classifier zoo built by `python -m nngraph.zoo classifiers`")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    p.add_argument("--repeats", type=int, default=20, help="random halvings / resamples per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the rows to this JSON file (atomically)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)
    correct, recorded, families = correctness_matrix(args.zoo, args.split, progress=not args.no_progress)
    rows = noise_ceiling(correct, families, args.repeats, args.seed)
    print(f"{correct.shape[0]} {args.split} models x {correct.shape[1]} test images "
          f"(accuracies reproduce the manifest's to 1e-6)")
    print(format_table(rows))
    if args.out:
        atomic_write(args.out, (json.dumps(rows, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
