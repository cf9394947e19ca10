"""The demo: build small zoos, train every task briefly, print one results table with the baselines.

    python -m tasks.demo                 # small zoos, short training (a few minutes on a laptop CPU)
    python -m tasks.demo --full          # whole zoos (1,797 digits x 4 INRs, 300 classifier runs), longer training

Rerunning continues: zoos and finished training runs in ``--workdir`` are reused.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from threadpoolctl import threadpool_limits

from nngraph.zoo import ClassifierZooConfig, INRZooConfig, build_classifier_zoo, build_inr_zoo

from . import TASKS, accuracy_prediction, inr_classification, inr_editing
from .report import format_table, save_results

#: Settings of the short demo and of ``--full``: zoo configs and per-task flags.
PROFILES = {
    "small": {
        "inr_zoo": INRZooConfig.small(),
        "clf_zoo": ClassifierZooConfig.small(num_runs=40),
        # All 280 training INRs, batches of 16: ~200 optimiser steps, enough for the encoder with probes to
        # leave chance (16 steps were not: every encoder row sat at 10%). About 25 s per encoder row.
        "inr_classification": ["--epochs", "12", "--batch-size", "16", "--baseline-epochs", "60", "--hidden-dim", "32",
                               "--num-layers", "2", "--gbm-iters", "40"],
        "accuracy_prediction": ["--epochs", "8", "--baseline-epochs", "100", "--hidden-dim", "32", "--num-layers", "2",
                                "--gbm-iters", "100"],
        "inr_editing": ["--epochs", "4", "--baseline-epochs", "40", "--hidden-dim", "32", "--num-layers", "2",
                        "--max-train", "96"],
    },
    "full": {
        "inr_zoo": INRZooConfig(),  # the default zoo: 1,797 digits x 4 INRs (5,028 / 716 / 1,444)
        "clf_zoo": ClassifierZooConfig(),
        # ~50 s per epoch on 2 busy cores; the probe rows reach ~95% test accuracy in 10 epochs
        "inr_classification": ["--epochs", "10", "--baseline-epochs", "200", "--hidden-dim", "32", "--num-layers", "2"],
        # the settings of the measured tables in tasks/README.md
        "accuracy_prediction": ["--holdout-family", "resnet"],
        "inr_editing": ["--epochs", "30", "--probes", "64", "--flip", "--lr", "5e-3"],
    },
}


def build_parser(prog: str = "python -m tasks.demo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--workdir", default="runs/demo", help="zoos, runs, plots and results.json go here")
    p.add_argument("--full", action="store_true", help="whole zoos and longer training")
    p.add_argument("--tasks", default=",".join(TASKS),
                   help="comma-separated subset of the tasks")
    p.add_argument("--workers", type=int, default=1, help="processes building the classifier zoo")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for torch and for scikit-learn's OpenMP. One by default: with 2 threads on a "
                        "machine whose other core is busy, OpenMP barriers stall and the short demo took 12 "
                        "minutes instead of 2; 0 keeps the libraries' defaults")
    return p


def main(argv=None, prog: str | None = None) -> int:
    args = (build_parser(prog) if prog else build_parser()).parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # scikit-learn's gradient boosting (OpenMP) and BLAS
    profile = PROFILES["full" if args.full else "small"]
    start = time.perf_counter()
    inr_zoo, clf_zoo = os.path.join(args.workdir, "zoo-inr"), os.path.join(args.workdir, "zoo-classifiers")
    tasks = [t for t in args.tasks.split(",") if t]
    quiet = [] if args.progress else ["--no-progress"]
    if {"inr_classification", "inr_editing"} & set(tasks):
        t0 = time.perf_counter()
        build_inr_zoo(inr_zoo, profile["inr_zoo"], progress=args.progress)
        print(f"INR zoo ready in {time.perf_counter() - t0:.0f} s: {inr_zoo}", flush=True)
    if "accuracy_prediction" in tasks:
        t0 = time.perf_counter()
        build_classifier_zoo(clf_zoo, profile["clf_zoo"], progress=args.progress, workers=args.workers)
        print(f"classifier zoo ready in {time.perf_counter() - t0:.0f} s: {clf_zoo}", flush=True)
    modules = {"inr_classification": (inr_classification, inr_zoo), "accuracy_prediction": (accuracy_prediction, clf_zoo),
               "inr_editing": (inr_editing, inr_zoo)}
    rows = []
    for name in tasks:
        module, zoo = modules[name]
        t0 = time.perf_counter()
        task_args = module.build_parser().parse_args(
            ["--zoo", zoo, "--out", os.path.join(args.workdir, name), *profile[name], *quiet])
        rows += module.run(task_args)
        print(f"{name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    save_results(rows, os.path.join(args.workdir, "results.json"))
    print()
    print(format_table(rows))
    print(f"\ndemo wall time: {time.perf_counter() - start:.0f} s; plots and results.json in {args.workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
