"""How far an INR zoo's weights move from their initialisation, and whether the digit is linearly readable.

    python -m tasks.diagnostics.inr_weights --zoo zoos/inr

Every INR's seed is in the manifest and its initialisation is reproducible (``init_siren`` with the zoo's
``init`` scheme), so the update ``w - w0`` is known exactly. Printed:

- per parameter tensor: mean ``||w0||``, ``||w - w0||``, their ratio, and the share of the zoo's variance of
  ``w`` that the initialisation alone has (``sum var(w0) / sum var(w)``);
- the share of the per-coordinate variance of ``w``, ``w - w0`` and ``w0`` explained by the digit (between-class
  sum of squares / total; ``(C - 1) / M`` is what pure noise gives);
- train / test accuracy of a logistic regression (standardised features) on ``w``, ``w - w0`` and ``w0``.

``--refit-shared N`` also refits the zoo's first ``N`` training and ``N // 2`` test images from ONE common
initialisation (the zoo's settings otherwise) and reports the same linear probe on their weights: with the
initialisation shared, coordinates are aligned across INRs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from nngraph.zoo import Zoo, coordinate_grid, fit_sirens
from nngraph.zoo.siren import init_siren

__all__ = ["load_weights", "explained_by_label", "linear_probe", "main"]


def _param_names(spec: dict) -> list[str]:
    n = len(spec["hidden"]) + 1
    return [f"{2 * l}.{k}" for l in range(n) for k in ("weight", "bias")]


def load_weights(root: str) -> dict:
    """Flat weights ``w``, initialisations ``w0`` ``(M, P)``, labels, splits and tensor sizes of an INR zoo.

    Every weights file is checked against its manifest checksum (a corrupted one raises ``ZooError``).
    """
    zoo = Zoo(root)
    scheme = zoo.config.get("init", "siren")
    spec = zoo.entries[0]["spec"]
    names = _param_names(spec)
    w, w0, labels, splits, sizes = [], [], [], [], None
    for e in zoo.entries:
        sd = zoo.load_state_dict(e)
        sizes = sizes or [int(sd[n].numel()) for n in names]
        init = [t for pair in init_siren(e["spec"], torch.Generator().manual_seed(e["seed"]), scheme) for t in pair]
        w.append(torch.cat([sd[n].reshape(-1) for n in names]))
        w0.append(torch.cat([t.reshape(-1) for t in init]))
        labels.append(e["label"])
        splits.append(e["split"])
    return {"w": torch.stack(w).double().numpy(), "w0": torch.stack(w0).double().numpy(), "names": names,
            "sizes": sizes, "labels": np.array(labels), "splits": np.array(splits), "config": zoo.config}


def explained_by_label(x: np.ndarray, y: np.ndarray) -> float:
    """Between-class over total sum of squares of the rows of ``x`` ``(M, P)`` (all coordinates pooled)."""
    mean = x.mean(0)
    total = float(((x - mean) ** 2).sum())
    between = sum(float((y == c).sum() * ((x[y == c].mean(0) - mean) ** 2).sum()) for c in np.unique(y))
    return between / max(total, 1e-300)


def linear_probe(x_train, y_train, x_test, y_test, seed: int = 0) -> tuple[float, float]:
    """Train / test accuracy of a standardised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(scaler.transform(x_train), y_train)
    return (float(clf.score(scaler.transform(x_train), y_train)), float(clf.score(scaler.transform(x_test), y_test)))


def _shared_init_probe(root: str, config: dict, n: int) -> tuple[float, float, float]:
    """Refit the first ``n`` train and ``n // 2`` test images of the zoo from one common seed; linear probe."""
    images = load_file(os.path.join(root, "images.safetensors"))
    zoo = Zoo(root)
    first = {}
    for e in zoo.entries:  # image -> split
        first.setdefault(e["image_index"], e["split"])
    train = [i for i, s in sorted(first.items()) if s == "train"][:n]
    test = [i for i, s in sorted(first.items()) if s == "test"][: n // 2]
    idx = torch.tensor(train + test)
    targets = images["images"][idx].flatten(2).transpose(1, 2)  # (B, P, C)
    res = config["resolution"]
    spec = zoo.entries[0]["spec"]
    gens = [torch.Generator().manual_seed(config["seed"]) for _ in range(len(idx))]  # one init for all
    fit = fit_sirens(spec, coordinate_grid(res, res), targets, gens, config["target_psnr"], config["max_steps"],
                     config["lr"], init=config.get("init", "siren"))
    w = torch.cat([p.reshape(len(idx), -1) for p in fit.params], dim=1).double().numpy()
    y = images["labels"][idx].numpy()
    tr, te = linear_probe(w[: len(train)], y[: len(train)], w[len(train):], y[len(train):])
    return tr, te, float(fit.psnr.mean())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.diagnostics.inr_weights", description=__doc__.split("\n")[0])
    p.add_argument("--zoo", required=True, help="an INR zoo directory")
    p.add_argument("--no-probes", action="store_true", help="only the weight-motion table (no logistic regression)")
    p.add_argument("--refit-shared", type=int, default=0,
                   help="also refit this many training images from one shared initialisation (see the docstring)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    d = load_weights(args.zoo)
    w, w0, y, s = d["w"], d["w0"], d["labels"], d["splits"]
    delta = w - w0
    out = {"num_models": len(y), "init": d["config"].get("init", "siren"), "tensors": {}}
    print(f"{len(y)} INRs, init {out['init']}")
    print("| tensor | mean ‖w0‖ | mean ‖w − w0‖ | mean ‖w − w0‖ / ‖w0‖ | Σvar(w0) / Σvar(w) |")
    print("|---|---|---|---|---|")
    off = 0
    for name, k in zip(d["names"] + ["all"], d["sizes"] + [w.shape[1]]):
        sl = slice(0, w.shape[1]) if name == "all" else slice(off, off + k)
        off += 0 if name == "all" else k
        n0 = np.linalg.norm(w0[:, sl], axis=1)
        nd = np.linalg.norm(delta[:, sl], axis=1)
        rel = float(np.mean(nd / n0)) if (n0 > 0).all() else float("nan")  # zero-initialised biases: n/a
        share = float(w0[:, sl].var(0).sum() / max(w[:, sl].var(0).sum(), 1e-300))
        out["tensors"][name] = {"norm_w0": float(n0.mean()), "norm_delta": float(nd.mean()), "rel": rel,
                                "init_var_share": share}
        print(f"| {name} | {n0.mean():.4f} | {nd.mean():.4f} | {'–' if rel != rel else f'{rel:.3f}'} | {share:.3f} |")
    noise = (len(np.unique(y)) - 1) / len(y)
    out["explained"] = {k: explained_by_label(x, y) for k, x in (("w", w), ("w-w0", delta), ("w0", w0))}
    print("digit-explained share of per-coordinate variance: "
          + ", ".join(f"{k} {v:.4f}" for k, v in out["explained"].items()) + f" (noise level {noise:.4f})")
    if not args.no_probes:
        tr, te = s == "train", s == "test"
        out["linear_probe"] = {}
        for k, x in (("w", w), ("w-w0", delta), ("w0", w0)):
            a, b = linear_probe(x[tr], y[tr], x[te], y[te])
            out["linear_probe"][k] = {"train": a, "test": b}
            print(f"logistic regression on {k}: train {a:.3f}, test {b:.3f}", flush=True)
    if args.refit_shared:
        a, b, q = _shared_init_probe(args.zoo, d["config"], args.refit_shared)
        out["shared_init_probe"] = {"n_train": args.refit_shared, "train": a, "test": b, "psnr": q}
        print(f"one shared init, {args.refit_shared} training images refitted (PSNR {q:.1f}): logistic regression "
              f"on w: train {a:.3f}, test {b:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
