"""The demo: build small zoos, score the shipped checkpoints on them, train every task briefly, and show
one results table with the baselines, the plots, and ``index.html`` with both.

    python -m tasks.demo                 # small zoos, shipped checkpoints + short training (a few minutes)
    python -m tasks.demo --full          # whole zoos (1,797 digits x 4 INRs, 300 classifier runs), longer training

Besides the tasks of ``tasks.TASKS`` it samples weights (``generation``): classifiers conditioned on a target
accuracy (:mod:`tasks.generation`) and INRs conditioned on their digit (:mod:`tasks.generation.inr`), each on a
zoo it builds itself.

Rows marked "shipped" are the checkpoints in ``tasks/pretrained/checkpoints`` (trained by the full-run command their note
names, on zoos whose test images / runs the demo's test splits do not share: :func:`tasks.pretrained.check_unseen`);
rows marked "trained in demo" were trained here, on the demo zoo's training split. Rerunning continues: zoos
and finished training runs in ``--workdir`` are reused.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from nngraph.zoo import ClassifierZooConfig, INRZooConfig, build_classifier_zoo, build_inr_zoo

from .. import TASKS
from ..accuracy_prediction import task as accuracy_prediction
from ..generation import inr as generation_inr
from ..generation import task as generation
from ..inr_classification import task as inr_classification
from ..inr_editing import task as inr_editing
from ..pretrained import shipped as pretrained
from .page import format_demo_table, format_headline, headline_sentence, plot_confusion, write_index
from ..common.metrics import kendall_tau
from ..common.report import plot_edit_grid, plot_scatter, row, save_results

#: Settings of the short demo and of ``--full``: zoo configs and per-task flags.
PROFILES = {
    "small": {
        # the first 600 digits, one INR each, split as in the full zoo (their test images are test images of
        # the zoo the shipped checkpoints were trained on): 420 train / 60 val / 120 test
        "inr_zoo": INRZooConfig(max_images=600, inrs_per_image=1, split_scope="source"),
        # 60 runs of the full zoo's distribution, seed 1: no run in common with the shipped checkpoint's zoo
        "clf_zoo": ClassifierZooConfig(num_runs=60, seed=1),
        # 280 training INRs, batches of 16: ~200 optimiser steps, enough for the encoder with probes to
        # leave chance (16 steps were not: every encoder row sat at 10%). About 25 s per encoder row.
        "inr_classification": ["--epochs", "12", "--batch-size", "16", "--baseline-epochs", "60", "--hidden-dim", "32",
                               "--num-layers", "2", "--gbm-iters", "40", "--max-train", "280"],
        "accuracy_prediction": ["--epochs", "8", "--baseline-epochs", "100", "--hidden-dim", "32", "--num-layers", "2",
                                "--gbm-iters", "100"],
        "inr_editing": ["--epochs", "4", "--baseline-epochs", "40", "--hidden-dim", "32", "--num-layers", "2",
                        "--max-train", "96"],
        # a 30-run classifier zoo and 200 digit INRs, the latent generator against the Gaussian
        "generation": ["--runs", "30", "--methods", "latent,gaussian", "--per-target", "4", "--latent-epochs", "40",
                       "--finetune-epochs", "0"],
        "generation_inr": ["--images", "200", "--methods", "latent,gaussian", "--epochs", "40", "--per-class", "8"],
    },
    "full": {
        "inr_zoo": INRZooConfig(),  # the default zoo: 1,797 digits x 4 INRs (5,028 / 716 / 1,444)
        "clf_zoo": ClassifierZooConfig(),
        # ~50 s per epoch on 2 busy cores; the probe rows reach ~95% test accuracy in 10 epochs
        "inr_classification": ["--epochs", "10", "--baseline-epochs", "200", "--hidden-dim", "32", "--num-layers", "2"],
        # the settings of the measured tables in docs/tasks/accuracy_prediction.md
        "accuracy_prediction": ["--holdout-family", "resnet"],
        "inr_editing": ["--epochs", "30", "--probes", "64", "--flip", "--lr", "5e-3"],
        # the settings of the measured tables in docs/tasks/generation.md
        "generation": ["--runs", "80", "--methods", "latent,latent_twin,latent_filtered,gaussian,interpolate",
                       "--per-target", "8"],
        "generation_inr": [],
    },
}


#: What the demo runs: the tasks, then weight generation (:func:`generation_rows`).
DEMO_TASKS = (*TASKS, "generation")

#: The shipped checkpoints the demo scores, per task.
SHIPPED = {"inr_classification": ("encoder_probe_flip", "encoder_broken"), "accuracy_prediction": ("encoder",),
           "inr_editing": ("encoder", "flat_mlp")}

#: The plots each task writes into its output directory, and what to see in them.
TASK_FIGURES = {
    "inr_classification": [("curves.png", "training and validation curves of every method; the encoders with probes "
                            "leave chance (0.1) within the first epochs")],
    "accuracy_prediction": [("scatter.png", "predicted against true test accuracy of the test models, coloured by "
                             "family; Kendall's τ in the title (1: the ranking is right)"),
                            ("curves.png", "training and validation curves of every method")],
    "inr_editing": [("edits.png", "test INRs: unedited, the dilated target, and each method's edit (the closer to "
                     "the target, the lower the MSE)"),
                    ("edits_fine.png", "the same edits rendered on a 4x finer grid: what the edited INR draws between "
                     "the training pixels"),
                    ("curves.png", "training and validation curves of every method")],
    "generation": [("classifiers/accuracy.png", "classifiers sampled without training: their test accuracy against "
                    "the zoo's and random init's (left), and against the accuracy they were conditioned on (right; on "
                    "the dashed line the condition is met)"),
                   ("inr/samples.png", "INRs sampled for each digit (one row per digit) beside INRs of the zoo; the "
                    "pixel classifier's recognition rate is in the table")],
}


def _shipped_note(result: dict, models: str) -> str:
    meta = result["meta"]
    full = meta["metrics"].get(result["metric"])
    minutes = (meta.get("seconds") or 0) / 60
    return (f"{result['n']} {models} ({result['unseen']}); full run, {minutes:.0f} min: `{meta['command']}`, "
            f"which scored {full:.4f} on its own test split")


def shipped_rows(task: str, zoo: str, workdir: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """The demo's rows of the shipped checkpoints of ``task`` on ``zoo``'s test split, and their plots
    (``(png relative to workdir, caption)``). Checkpoints that are not shipped are skipped with a message."""
    rows, figures, results = [], [], {}
    for method in SHIPPED[task]:
        name = f"{task}.{method}"
        if name not in pretrained.available():
            print(f"{name}: not shipped (python -m tasks.pretrained list); skipped", flush=True)
            continue
        results[method] = r = pretrained.evaluate(name, zoo)
        models = "test INRs" if task != "accuracy_prediction" else "test models"
        extra = {k: r[k] for k in ("mse_background", "mse_stroke", "speckle", "r2") if k in r}
        rows.append(row(task, method, r["metric"], r["value"], r["seconds"], note=_shipped_note(r, models),
                        source="shipped", n=r["n"], **extra))
    if task == "inr_classification" and "encoder_probe_flip" in results:
        r = results["encoder_probe_flip"]
        plot_confusion(r["true"], r["pred"], os.path.join(workdir, "confusion.png"),
                       f"shipped encoder, {r['n']} test INRs: accuracy {r['value']:.3f}")
        figures.append(("confusion.png", f"INR classification, shipped encoder (probes + sign flips): accuracy "
                        f"{r['value']:.3f} on {r['n']} test INRs; the confusion matrix, true digit by row: the "
                        "diagonal holds the right answers, off-diagonal cells the digits it mixes up"))
    if task == "accuracy_prediction" and "encoder" in results:
        r = results["encoder"]
        plot_scatter(r["true"], r["pred"], r["families"], os.path.join(workdir, "scatter_shipped.png"),
                     f"shipped encoder: τ {r['value']:.3f} on {r['n']} test models")
        figures.append(("scatter_shipped.png", f"accuracy prediction, shipped encoder: Kendall's τ "
                        f"{r['value']:.3f} on {r['n']} test models; predicted against true test accuracy, coloured "
                        "by family (on the dashed line the prediction is exact)"))
        # none of the demo zoo's runs was seen in training (another seed): score it on all of them too
        parts = [r] + [pretrained.evaluate("accuracy_prediction.encoder", zoo, s) for s in ("train", "val")]
        true = np.concatenate([p["true"] for p in parts])
        pred = np.concatenate([p["pred"] for p in parts])
        rows.append(row(task, "encoder", "kendall_tau[all]", kendall_tau(true, pred), None, source="shipped",
                        note=f"every model of the demo zoo ({len(true)}; no run seen in training)"))
    if task == "inr_editing" and results:
        r0 = next(iter(results.values()))
        shown = np.arange(0, r0["n"], max(1, r0["n"] // 6))[:6]
        columns = {"original": r0["originals"][shown, 0].numpy(), "target (dilated)": r0["targets"][shown, 0].numpy()}
        for method, r in results.items():
            columns[f"shipped {method} edit"] = r["images"][shown, 0].numpy()
        plot_edit_grid(columns, os.path.join(workdir, "edits_shipped.png"))
        mse = ", ".join(f"{method} {r['value']:.4f}" for method, r in results.items())
        figures.append(("edits_shipped.png", f"INR editing, shipped checkpoints (test MSE {mse}): the unedited INR, "
                        "the dilation target and each checkpoint's edit; the edit should thicken the strokes like the "
                        "target"))
    return rows, figures


def generation_rows(profile: dict, workdir: str, quiet: list[str]) -> list[dict]:
    """The rows of the two generation runs (classifiers, then INRs), each in ``workdir/generation/...``."""
    rows = []
    for module, key, sub in ((generation, "generation", "classifiers"), (generation_inr, "generation_inr", "inr")):
        args = module.build_parser().parse_args(
            ["--out", os.path.join(workdir, "generation", sub), *profile[key], *quiet])
        rows += module.run(args)
    return rows


def build_parser(prog: str = "python -m tasks.demo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=" ".join(__doc__.split("\n\n")[0].split()),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--workdir", default="runs/demo", help="zoos, runs, plots and results.json go here")
    p.add_argument("--full", action="store_true", help="whole zoos and longer training")
    p.add_argument("--tasks", default=",".join(DEMO_TASKS),
                   help="comma-separated subset of the tasks")
    p.add_argument("--workers", type=int, default=1, help="processes building the classifier zoo")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument("--no-shipped", action="store_true", help="do not score the shipped checkpoints")
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
    rows, figures = [], []
    for name in tasks:
        if name == "generation":
            t0 = time.perf_counter()
            rows += [{**r, "source": "trained in demo"} for r in generation_rows(profile, args.workdir, quiet)]
            figures += [(os.path.join(name, f), f"generation, fitted in the demo: {what}")
                        for f, what in TASK_FIGURES[name]]
            print(f"generation fitted and sampled in {time.perf_counter() - t0:.0f} s", flush=True)
            continue
        module, zoo = modules[name]
        if not args.no_shipped:
            t0 = time.perf_counter()
            shipped, figs = shipped_rows(name, zoo, args.workdir)
            rows += shipped
            figures += figs
            print(f"{name}: shipped checkpoints scored in {time.perf_counter() - t0:.0f} s", flush=True)
        t0 = time.perf_counter()
        task_args = module.build_parser().parse_args(
            ["--zoo", zoo, "--out", os.path.join(args.workdir, name), *profile[name], *quiet])
        trained = module.run(task_args)
        rows += [{**r, "source": "trained in demo"} for r in trained]
        figures += [(os.path.join(name, f), f"{name}, trained in the demo: {what}") for f, what in TASK_FIGURES[name]]
        print(f"{name} trained in {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - start
    save_results(rows, os.path.join(args.workdir, "results.json"))
    print()
    print(format_demo_table(rows))
    print()
    print(headline_sentence(rows, seconds))
    print(format_headline(rows))
    page = write_index(os.path.join(args.workdir, "index.html"), "nngraph demo",
                       f"{'Full' if args.full else 'Short'} demo, {seconds:.0f} s wall. 'Shipped' are the "
                       "checkpoints in tasks/pretrained/checkpoints, trained by the full-run command in their note and scored "
                       "here on test models they never saw; 'trained in the demo' were trained in this run "
                       "on the demo zoo's training split, briefly.", rows, figures, seconds)
    print(f"\ndemo wall time: {seconds:.0f} s; open {page} (headline, plots, every row); results.json in "
          f"{args.workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
