"""Accuracy prediction: regress each classifier's test accuracy from its weights (mixed architectures).

    python -m tasks.accuracy_prediction --zoo zoos/clf --out runs/acc_pred --epochs 40

Reports Kendall's tau and R² on held-out models, tau per architecture family, and tau / R² on a family
held out of training entirely. Rows: the encoder; the encoder with equivariance broken (random positional
features), also trained on randomly relabelled models (``encoder_broken_perm``, :mod:`tasks.common.permutation`);
weight statistics + gradient boosting and + an MLP; the models' outputs on fixed probe images + gradient
boosting and + an MLP (``probe_*``, :mod:`tasks.accuracy_prediction.probing`); opt-in, ``encoder_probe``: the encoder reading every
neuron's value on those probe images as node features (as the INR encoder reads coordinates); opt-in,
``encoder_stats``: the encoder's graph embedding and the weight statistics read by one MLP (:mod:`tasks.accuracy_prediction.hybrid`);
opt-in, ``probegen``: ProbeGen (:class:`nngraph.probing.ProbeGen`), probes from a shared deep linear generator
started at those probe images, the models' softmax outputs read by an MLP, trained end to end; opt-in, ``hybrid``
and its ablations ``hybrid_no_graph``, ``hybrid_fixed_probes``, ``hybrid_no_prior``, ``hybrid_no_probes``
(:class:`nngraph.probing.ProbeGraphHybrid`, :mod:`tasks.accuracy_prediction.probe_hybrid`): the encoder reading
every neuron's values on learned probes, the output neurons' softmax statistics read directly, on top of the
cross-fitted ``probe_gbm`` prediction; opt-in, ``hybrid_shrunk``, ``hybrid_fixed_probes_shrunk``: the trained
``hybrid`` (``hybrid_fixed_probes``) network with its correction to the prior shrunk by a factor fitted on the
validation models (row ``correction_shrinkage``); opt-in, ``probe_gbm_stacked``, ``probe_gbm_stacked_no_graph``:
gradient boosting on the probe outputs and the cross-fitted prediction of the hybrid network without a prior (with
and without the graph; :mod:`tasks.accuracy_prediction.probe_stacking`). The probing methods add their cost per prediction:
``flops_per_prediction`` (probe forward passes x the model's FLOPs, mean over the
test models, plus an MLP reader's) and ``seconds_per_prediction``.
(An MLP on the flattened weights needs one architecture: not applicable.)

Outputs in ``--out``: ``results.json`` (the rows), ``predictions.json`` (every test model's id, family, true and
predicted accuracy per method: for paired comparisons and blends, :mod:`tasks.diagnostics.blend`; under ``unseen``
the same for the held-out family), curves and a scatter plot.

The zoo's splits are by training run (every checkpoint of a run is in one split; checked here). Models
whose weights diverged to NaN / inf are dropped (counted in the notes); the encoder sees weights scaled
per depth with median-based scales and squashed by ``asinh`` (:mod:`tasks.common.robust`: a handful of diverged
models otherwise turn every scale NaN or every other model's weights to ~0), and regresses the
standardised accuracy.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch

import nngraph
from nngraph.io import atomic_write
from nngraph.convert.module_info import parameter_dtype
from nngraph.probing import ProbeGen, fit_probegen, forward_flops, model_outputs, probing_flops
from nngraph.train import seed_everything

from ..common.baselines import fit_vector_mlp, gradient_boosting, predict_vectors
from nngraph.symmetry import positive_scale, sign_flip, symmetry_augment
from ..common.features import add_positional_features, max_kernel_shape
from ..common.permutation import SymmetryAugmented
from .probing import output_features, probe_images
from .hybrid import StatsGraphPredictor, StatsStandardizer, with_stats_features
from .probe_hybrid import HYBRIDS, hybrid_method
from .probe_stacking import STACKED, stacked_method
from ..common.graph_training import predict_graphs, train_graph_predictor
from ..common.harness import add_optional_args, add_run_args, add_training_args, run_dir, run_main, start_run, task_parser
from ..common.metrics import kendall_tau, per_group_tau, r2
from ..common.report import plot_scatter, row, save_run
from ..common.robust import RobustGraphScaler, finite_only, signed_log
from ..common.scaling import GraphScaler
from ..common.splits import Split, check_more_runs, load_split
from ..common.weightstats import weight_stat_features

TASK = "accuracy_prediction"
METHODS = ("encoder", "encoder_broken", "encoder_broken_perm", "encoder_probe", "encoder_stats", "stats_gbm",
           "stats_mlp", "probe_gbm", "probe_mlp", "probegen", *HYBRIDS, *STACKED)
#: The methods a run trains unless ``--methods`` says otherwise (``encoder_probe``, ``encoder_stats``,
#: ``probegen``, the ``hybrid*`` and ``probe_gbm_stacked*`` rows: opt-in).
DEFAULT_METHODS = tuple(m for m in METHODS
                        if m not in ("encoder_probe", "encoder_stats", "probegen", *HYBRIDS, *STACKED))



#: ``--augment``: batch -> batch functions for the ``encoder`` method (its probe slot is empty; the twins'
#: positional features and the asinh-squashed probe features would not scale with the neurons)
AUGMENTS = {"none": None, "flip": sign_flip, "scale": positive_scale, "symmetries": symmetry_augment}


def build_parser(prog: str = "python -m tasks.accuracy_prediction") -> argparse.ArgumentParser:
    p = task_parser(prog, __doc__)
    add_training_args(p, zoo_help="a classifier zoo (python -m nngraph.zoo classifiers --out ...)",
                      out="runs/accuracy_prediction", methods=DEFAULT_METHODS, choices=METHODS, epochs=40,
                      baseline_epochs=200, batch_size=16, lr=1e-3, weight_decay=5e-4, patience=20)
    p.add_argument("--holdout-family", default="resnet", help="family left out of training for the transfer test "
                   "('' to skip)")
    add_optional_args(p, "positional_dim", "dropout")
    p.add_argument("--scaler", choices=("robust", "rms"), default="robust",
                   help="encoder input scaling: per-depth median scales + asinh (robust) or the plain per-depth "
                   "RMS of tasks.common.scaling.GraphScaler (rms: diverged models make it NaN)")
    p.add_argument("--target", choices=("standard", "raw", "rank"), default="standard",
                   help="encoder regresses the accuracy standardised on the training set, the raw accuracy, or its "
                        "rank among the training accuracies as a normal score (Kendall's tau reads only the order; "
                        "predictions map back through the training accuracies' quantiles)")
    add_optional_args(p, "gbm_iters")
    p.add_argument("--max-train", type=int, default=None,
                   help="train on at most this many checkpoints, taken as whole training runs (a seeded draw of "
                        "runs: for learning curves; validation, test and the held-out family are unchanged)")
    p.add_argument("--holdout-only", action="store_true",
                   help="train and test only the transfer to --holdout-family (skip the in-distribution test)")
    p.add_argument("--extra-train", action="append", default=[], metavar="ZOO",
                   help="add the train split of ZOO to the training models: a zoo of more runs of --zoo (its "
                        "settings, --first-run past its last run, --split 1,0,0), so validation and test stay "
                        "the same (repeatable; before --max-train draws)")
    p.add_argument("--augment", choices=tuple(AUGMENTS), default="none",
                   help="the encoder method's training batches: random sign flips of tanh neurons (flip), random "
                        "positive scales in [1/2, 2] of relu / leaky-relu neurons (scale), or both (symmetries); "
                        "only the neurons where they keep the function (nngraph.symmetry)")
    p.add_argument("--probe-inputs", type=int, default=32,
                   help="images the probing baselines run every classifier on (from the zoo's training images)")
    p.add_argument("--probegen-epochs", type=int, default=60, help="training epochs of ProbeGen")
    p.add_argument("--probegen-dropout", type=float, default=0.0, help="dropout of ProbeGen's MLP reader")
    p.add_argument("--probegen-start", choices=("images", "zeros"), default="images",
                   help="ProbeGen's probes start at the --probe-inputs images or at zero (then only the generator "
                        "shapes them)")
    add_run_args(p)
    return p


def _targets(split) -> np.ndarray:
    return np.array([e["test_acc"] for e in split.entries], dtype=float)


def _families(split) -> list[str]:
    return [e["family"] for e in split.entries]


def subsample_runs(split: Split, max_models: int, seed: int) -> Split:
    """The checkpoints of a seeded random draw of ``split``'s training runs (manifest ``run``), as many runs
    as fit in ``max_models`` checkpoints; every checkpoint of a drawn run is kept, in the split's order."""
    if max_models < 1:
        raise ValueError(f"max_models must be at least 1, got {max_models}")
    runs: dict = {}
    for i, e in enumerate(split.entries):
        runs.setdefault(e.get("run", e["id"]), []).append(i)
    order = list(runs)
    np.random.default_rng(seed).shuffle(order)
    keep: list[int] = []
    for r in order:
        if len(keep) + len(runs[r]) > max_models:
            continue
        keep += runs[r]
    return split.select(sorted(keep))


def check_runs_disjoint(splits: dict) -> None:
    """Raise if checkpoints of one training run (manifest ``run``) sit in more than one split (leakage)."""
    where: dict = {}
    for name, split in splits.items():
        for e in split.entries:
            where.setdefault(e.get("run", e["id"]), set()).add(name)
    mixed = {r: sorted(s) for r, s in where.items() if len(s) > 1}
    if mixed:
        some = dict(list(mixed.items())[:5])
        raise ValueError(f"checkpoints of {len(mixed)} training runs straddle splits (e.g. {some}); "
                         "split the zoo by run")


def _score_rows(method: str, true, pred, families, seconds, note, scope: str = "test") -> list[dict]:
    rows = [row(TASK, method, f"kendall_tau[{scope}]", kendall_tau(true, pred), seconds, note=note),
            row(TASK, method, f"r2[{scope}]", r2(true, pred), None, note=note)]
    if scope == "test":
        for fam, tau in per_group_tau(true, pred, families).items():
            rows.append(row(TASK, method, f"kendall_tau[{fam}]", tau, None, note=f"n={families.count(fam)}"))
    return rows


def _graph_method(args, name, train, val, test, progress, tag=""):
    """Train the encoder (``name`` = encoder / encoder_broken / encoder_broken_perm / encoder_probe /
    encoder_stats) and predict ``test``; returns (pred, result)."""
    graphs = [train.graphs, val.graphs, test.graphs]
    probe_dim = 0
    if name == "encoder_probe":  # every neuron's value on the probe images, as the INR encoder reads coordinates
        inputs = probe_images(args.zoo, args.probe_inputs, args.seed)  # (K, C, H, W)
        graphs = [with_probe_features(s, inputs) for s in (train, val, test)]
        probe_dim = inputs.shape[0]
    if name in ("encoder_broken", "encoder_broken_perm"):
        graphs = [add_positional_features(g, args.positional_dim, args.seed) for g in graphs]
        probe_dim = args.positional_dim
    scaler = (RobustGraphScaler() if args.scaler == "robust" else GraphScaler()).fit(graphs[0])
    factory = None
    if name == "encoder_stats":  # the weight statistics beside the encoder's embedding, in one model
        graphs = [with_stats_features(gs, s.models) for gs, s in zip(graphs, (train, val, test))]
        standardizer = StatsStandardizer(graphs[0][0].stats.size(-1)).fit(graphs[0])
        factory = lambda box: StatsGraphPredictor(scaler, standardizer, 1, args.hidden_dim,  # noqa: E731
                                                  args.num_layers, args.dropout, box)
    mean, std = 0.0, 1.0
    if args.target == "standard":
        y = _targets(train)
        mean, std = float(y.mean()), float(max(y.std(), 1e-6))
        graphs[:2] = [_with_targets(gs, (_targets(s) - mean) / std) for gs, s in zip(graphs[:2], (train, val))]
    rank = RankTarget(_targets(train)) if args.target == "rank" else None
    if rank is not None:
        graphs[:2] = [_with_targets(gs, rank.encode(_targets(s))) for gs, s in zip(graphs[:2], (train, val))]
    box = max_kernel_shape([g for gs in graphs for g in gs])  # the held-out family's kernels too
    settings = {"scaler": args.scaler, "target": args.target, "target_mean": mean, "target_std": std}
    augment = AUGMENTS[args.augment] if name == "encoder" else None
    if augment is not None:
        settings["augment"] = args.augment
    if name == "encoder_broken_perm":  # every epoch sees each model under a fresh relabelling of its neurons
        graphs[0] = SymmetryAugmented.of_split(graphs[0], train, args.positional_dim)
        settings["symmetry_augmented"] = True
    if factory is not None:
        settings["stats_features"] = True
    model, result = train_graph_predictor(
        graphs[0], graphs[1], "regression", run_dir(args.out, name + tag), scaler, 1, hidden_dim=args.hidden_dim,
        num_layers=args.num_layers, probe_dim=probe_dim, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, dropout=args.dropout, patience=args.patience, seed=args.seed,
        device=args.device, progress=progress, augment=augment,
        settings=settings, kernel_box=box, model_factory=factory)
    predictions = predict_graphs(model, graphs[2], "regression").numpy()
    return (rank.decode(predictions) if rank is not None else predictions * std + mean), result


class RankTarget:
    """Accuracies as normal scores of their rank among the training accuracies, and back.

    ``encode(a) = Φ⁻¹(F(a))`` with ``F`` the training accuracies' empirical distribution (mid-ranks, linear
    between them), so the encoder regresses a target spread evenly instead of one piled at chance and near 1;
    ``decode`` is the inverse (training quantiles), used for R² and the scatter plot. Both are monotone, so the
    order of the predictions, all Kendall's tau reads, is the order of the scores.
    """

    def __init__(self, train_accuracies: np.ndarray):
        from scipy.stats import norm

        self._norm = norm
        values = np.sort(np.asarray(train_accuracies, dtype=float))
        levels = (np.arange(len(values)) + 0.5) / len(values)  # mid-rank quantile of each sorted accuracy
        self.values, inverse = np.unique(values, return_inverse=True)  # accuracies repeat (k / 360 correct)
        self.levels = np.bincount(inverse, weights=levels) / np.bincount(inverse)  # ties share their mean level

    def encode(self, accuracies: np.ndarray) -> np.ndarray:
        q = np.interp(np.asarray(accuracies, dtype=float), self.values, self.levels)
        return self._norm.ppf(q)

    def decode(self, scores: np.ndarray) -> np.ndarray:
        q = self._norm.cdf(np.asarray(scores, dtype=float))
        return np.interp(q, self.levels, self.values)


def with_probe_features(split: Split, inputs: torch.Tensor) -> list:
    """Shallow copies of ``split``'s graphs with ``probe`` ``(N, K)``: each neuron's value on the ``K`` probe
    images (:func:`nngraph.probe_features`), squashed by ``asinh`` (a near-diverged model's activations reach
    1e6 and more) and zero where not finite."""
    out = []
    for g, model in zip(split.graphs, split.models):
        g = copy.copy(g)
        probe = nngraph.probe_features(model, inputs.to(parameter_dtype(model)))  # (N, K)
        g.probe = torch.nan_to_num(torch.asinh(probe.float()), nan=0.0, posinf=0.0, neginf=0.0)  # (N, K)
        out.append(g)
    return out


def _with_targets(graphs: list, y: np.ndarray) -> list:
    """Shallow copies of ``graphs`` with ``y`` replaced by ``(1,)`` float targets."""
    out = []
    for g, v in zip(graphs, y):
        g = copy.copy(g)
        g.y = torch.tensor([float(v)])
        out.append(g)
    return out


def _stats_method(args, name, train, val, test, tag=""):
    """The vector baselines: weight statistics (``stats_*``) or outputs on probe images (``probe_*``), read by
    gradient boosting (``*_gbm``) or an MLP (``*_mlp``)."""
    cost = None
    if name.startswith("probe"):
        inputs = probe_images(args.zoo, args.probe_inputs, args.seed)  # (K, C, H, W)
        feats = [output_features(s.models, inputs) for s in (train, val)]  # (M, K * classes)
        begin = time.perf_counter()
        feats.append(output_features(test.models, inputs))  # (M_test, K * classes)
        cost = (inputs, time.perf_counter() - begin)
    else:
        # asinh: diverged models have statistics of 1e17+, which would swamp the MLP's standardisation
        # (gradient boosting only sees the order of each feature: unaffected).
        feats = [signed_log(torch.stack([weight_stat_features(m) for m in s.models])) for s in (train, val, test)]
    ys = [torch.tensor(_targets(s), dtype=torch.float) for s in (train, val, test)]
    if name.endswith("_gbm"):
        pred = np.asarray(gradient_boosting(feats[0], ys[0], feats[2], "regression", args.seed, args.gbm_iters))
        return pred, None, None if cost is None else _probe_cost(test.models, *cost)  # the trees' FLOPs not counted
    model, result = fit_vector_mlp(feats[0], ys[0], feats[1], ys[1], "regression", run_dir(args.out, name + tag),
                                   epochs=args.baseline_epochs, seed=args.seed, patience=args.patience,
                                   hidden=(64, 64), batch_size=16)
    # an MLP extrapolates without bound on a model whose features lie far outside the training set's (one such
    # prediction of 30 took R² to -5,900 on a demo zoo); an accuracy is bounded, so predict within the range
    # of accuracies seen in training (Kendall's tau changes only through ties among the clipped predictions)
    predictions = predict_vectors(model, feats[2]).squeeze(-1).numpy()
    if cost is not None:
        cost = _probe_cost(test.models, *cost, reader_flops=forward_flops(model, feats[2][:1]))
    return np.clip(predictions, float(ys[0].min()), float(ys[0].max())), result, cost


def _probegen_method(args, train, val, test, progress, tag=""):
    """ProbeGen (:class:`nngraph.probing.ProbeGen`): ``--probe-inputs`` probes from a shared deep linear generator,
    starting at the probe images (or zeros), the models' softmax outputs read by an MLP, trained end to end on
    the standardised accuracy; returns (pred, result, cost)."""
    inputs = probe_images(args.zoo, args.probe_inputs, args.seed)  # (K, C, H, W)
    seed_everything(args.seed)
    num_outputs = model_outputs(train.models[0], inputs[:1]).shape[-1]
    model = ProbeGen(inputs if args.probegen_start == "images" else torch.zeros_like(inputs), num_outputs,
                     hidden=(64, 64), dropout=args.probegen_dropout)
    result = fit_probegen(model, train.models, _targets(train), val.models, _targets(val),
                          run_dir(args.out, "probegen" + tag), epochs=args.probegen_epochs, batch_size=args.batch_size,
                          lr=args.lr, weight_decay=args.weight_decay, patience=args.patience, seed=args.seed,
                          progress=progress, settings={"start": args.probegen_start, "dropout": args.probegen_dropout})
    begin = time.perf_counter()
    pred = model.predict(test.models).squeeze(-1).numpy()
    seconds = time.perf_counter() - begin
    reader_flops = forward_flops(model.reader, torch.zeros(1, model.reader[0].in_features))
    cost = _probe_cost(test.models, model.generator().detach(), seconds, reader_flops)
    y = _targets(train)
    return np.clip(pred, y.min(), y.max()), result, cost


def _probe_cost(models, probes: torch.Tensor, seconds: float, reader_flops: int = 0) -> dict:
    """One prediction of a probing method: ``P`` probe forward passes of the model (the mean FLOPs over
    ``models``) plus the reader's FLOPs, and ``seconds`` spent on all ``models``, per model."""
    return {"passes": len(probes), "flops": probing_flops(models, probes) + reader_flops, "reader_flops": reader_flops,
            "seconds": seconds / len(models)}


def _cost_rows(method: str, cost: dict, scope: str = "") -> list[dict]:
    """The cost rows of a probing method (``scope``: appended to the metrics' names, ``"[unseen resnet]"`` for the
    held-out family's models, whose cost differs)."""
    if method in HYBRIDS or method in STACKED:
        shrunk = [] if cost.get("shrinkage") is None else [
            row(TASK, method, "correction_shrinkage" + scope, cost["shrinkage"], None,
                note="the factor kept of the network's correction to the prior, fitted on the validation models")]
        return shrunk + [
            row(TASK, method, "flops_per_prediction" + scope, cost["flops"], None,
                note=f"{cost['passes']} probe forward passes x the model's FLOPs + the network on its graph (mean "
                     "over the test models; gradient boosting's trees not counted)"),
            row(TASK, method, "seconds_per_prediction" + scope, cost["seconds"], None,
                note="probing the test models, reading their graphs and outputs, per model, one thread")]
    reader = f" + {cost['reader_flops']:,} of the MLP reader" if cost["reader_flops"] else ""
    return [row(TASK, method, "flops_per_prediction" + scope, cost["flops"], None,
                note=f"{cost['passes']} probe forward passes x the model's FLOPs (mean over the test models){reader}"),
            row(TASK, method, "seconds_per_prediction" + scope, cost["seconds"], None,
                note="running the test models on the probes" + (" and reading them" if method == "probegen" else "")
                + ", per model, one thread")]


def _predict(args, name, train, val, test, progress, tag=""):
    """``(pred, result, cost)``: predictions for ``test``, the training result (or None), the cost per
    prediction of a probing method (or None)."""
    if name.startswith("encoder"):
        return (*_graph_method(args, name, train, val, test, progress, tag), None)
    if name in HYBRIDS:
        return hybrid_method(args, name, train, val, test, progress, tag)
    if name in STACKED:
        return stacked_method(args, name, train, val, test, progress, tag)
    if name == "probegen":
        return _probegen_method(args, train, val, test, progress, tag)
    return _stats_method(args, name, train, val, test, tag)


def run(args: argparse.Namespace) -> list[dict]:
    """Train every method; returns the results rows (and writes results.json, curves and scatter plots)."""
    progress = start_run(args, METHODS, "classifier", "accuracy prediction")
    splits = {s: load_split(args.zoo, s) for s in ("train", "val", "test")}
    for more in args.extra_train:
        check_more_runs(args.zoo, more)
        splits["train"] = Split.concat([splits["train"], load_split(more, "train")])
    check_runs_disjoint(splits)
    dropped = 0
    for s in splits:
        splits[s], n = finite_only(splits[s])
        dropped += n
    train, val, test = splits["train"], splits["val"], splits["test"]
    all_train = train
    if args.max_train is not None:
        train = subsample_runs(train, args.max_train, args.seed)
    note = f"{len(train)} train / {len(test)} test models" + (f" ({dropped} non-finite dropped)" if dropped else "")
    rows, histories = [], {}
    predictions = {"ids": [e["id"] for e in test.entries], "families": _families(test),
                   "true": [float(v) for v in _targets(test)], "pred": {}}
    for name in [] if args.holdout_only else args.methods:
        start = time.perf_counter()
        pred, result, cost = _predict(args, name, train, val, test, progress)
        predictions["pred"][name] = [float(v) for v in pred]
        if result is not None:
            histories[name] = result.history
        method_note = note + (f"; augmented: {args.augment}" if name == "encoder" and args.augment != "none" else "")
        rows += _score_rows(name, _targets(test), pred, _families(test), time.perf_counter() - start, method_note)
        rows += _cost_rows(name, cost) if cost is not None else []
        print(f"{name}: kendall tau {kendall_tau(_targets(test), pred):.4f}", flush=True)
        if name == "encoder":
            plot_scatter(_targets(test), pred, _families(test), os.path.join(args.out, "scatter.png"),
                         f"encoder: τ {kendall_tau(_targets(test), pred):.3f} on {len(pred)} test models")

    fam = args.holdout_family
    families = set(_families(train) + _families(val) + _families(test))
    transfer = bool(fam) and fam in families and len(families) > 1
    if args.holdout_only and not transfer:
        raise ValueError(f"--holdout-only needs --holdout-family to name one of the zoo's families "
                         f"{sorted(families)}, got {fam!r}")
    if transfer:
        not_fam = lambda e: e["family"] != fam  # noqa: E731
        tr, va = train.where(not_fam), val.where(not_fam)
        held = Split.concat([s.where(lambda e: e["family"] == fam) for s in (all_train, val, test)])
        unseen = {"family": fam, "ids": [e["id"] for e in held.entries], "true": [float(v) for v in _targets(held)],
                  "pred": {}}
        predictions["unseen"] = unseen
        for name in args.methods:
            start = time.perf_counter()
            pred, _, cost = _predict(args, name, tr, va, held, progress, tag=f"-without-{fam}")
            unseen["pred"][name] = [float(v) for v in pred]
            rows += _score_rows(name, _targets(held), pred, _families(held), time.perf_counter() - start,
                                f"trained without {fam}: {len(tr)} models; tested on all {len(held)} {fam}",
                                scope=f"unseen {fam}")
            rows += _cost_rows(name, cost, f"[unseen {fam}]") if cost is not None else []
    atomic_write(os.path.join(args.out, "predictions.json"), (json.dumps(predictions) + "\n").encode())
    save_run(rows, histories, ["train_loss", "val_loss"], args.out, "accuracy prediction", seed=args.seed)
    return rows


def main(argv=None, prog: str | None = None) -> int:
    return run_main(run, build_parser, argv, prog)


if __name__ == "__main__":
    sys.exit(main())
