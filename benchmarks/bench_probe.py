"""Probe features per model: ``nngraph.probe_features`` on real modules (one ``fx`` run each) against
``nngraph.batched_probe_features`` on a batch of their graphs (vectorised, differentiable; what learned probes
run at every training step), forward only and forward + backward into the probe inputs.

Times are per model, the best of several repetitions (closest to an idle machine); compare within a run.

Usage: ``python -m benchmarks probe`` or ``python benchmarks/bench_probe.py [--models 256] [--probes 64]
[--batch 32] [--reps 5]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nngraph
from nngraph.zoo import build_model, siren_spec


def _best(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks probe", description=__doc__)
    p.add_argument("--models", type=int, default=256)
    p.add_argument("--probes", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    models = [build_model(siren_spec(2, [32, 32], 1, 30.0)).eval() for _ in range(args.models)]
    inputs = torch.rand(args.probes, 2) * 2 - 1
    layout = nngraph.build_layout(models[0], (inputs,))
    graphs = [nngraph.to_graph(m) for m in models]
    batches = [Batch.from_data_list(graphs[i:i + args.batch]) for i in range(0, len(graphs), args.batch)]

    def loop():
        for m in models:
            nngraph.probe_features(m, inputs, layout)

    def batched():
        with torch.no_grad():
            for b in batches:
                nngraph.batched_probe_features(b, models[0], inputs)

    learned = inputs.clone().requires_grad_(True)

    def batched_backward():
        for b in batches:
            nngraph.batched_probe_features(b, models[0], learned).sum().backward()

    n = len(models)
    rows = [("probe_features, a loop over modules", _best(loop, args.reps) / n),
            (f"batched_probe_features, batches of {args.batch}", _best(batched, args.reps) / n),
            ("batched_probe_features + backward to the inputs", _best(batched_backward, args.reps) / n)]
    base = rows[0][1]
    print(f"SIREN 2->32->32->1, {args.probes} probes, {n} models, {torch.get_num_threads()} thread(s), "
          f"load {os.getloadavg()[0]:.2f}")
    print("| path | ms / model | vs the loop |")
    print("|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t * 1e3:.3f} | {t / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
