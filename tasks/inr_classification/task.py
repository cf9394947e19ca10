"""INR classification: predict the digit a SIREN represents from its weights alone.

    python -m tasks.inr_classification --zoo zoos/inr --out runs/inr_cls --epochs 30

Rows of the results table (test accuracy): the encoder without / with probe features, with sign-flip
augmentation, with equivariance broken (random positional features on hidden neurons); an MLP on the
flattened weights; weight statistics + gradient boosting; and an MLP on the pixels (the ceiling). On request
(``--methods``): the encoder without probes with sign flips (``encoder_flip``), with every INR aligned to one
training INR (``encoder_align``: weight matching makes the relabelling and the signs canonical,
:func:`nngraph.symmetry.align_all`), and aligned with weight-space MixUp (``encoder_mixup``, :mod:`.mixup`).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import nngraph

from nngraph.symmetry import align_all
from nngraph.symmetry import sign_flip
from ..common.baselines import fit_vector_mlp, flat_weights, gradient_boosting, predict_vectors
from ..common.features import add_positional_features, probe_inputs_for
from ..common.graph_training import predict_graphs, train_graph_predictor
from .learned_probes import LearnedProbePredictor
from .mixup import WeightMixup
from ..common.permutation import SymmetryAugmented
from ..common.harness import add_optional_args, add_run_args, add_training_args, run_dir, run_main, start_run, task_parser
from ..common.report import row, save_run
from ..common.scaling import GraphScaler
from ..common.splits import load_split
from ..common.weightstats import weight_stat_features

TASK = "inr_classification"
METHODS = ("pixels", "flat_mlp", "stats_gbm", "encoder", "encoder_probe", "encoder_probe_flip", "encoder_broken",
           "encoder_broken_perm")
#: on request only: the encoder without probes, trained with sign flips (the no-probe ablation of the flips);
#: with every INR of every split aligned to one training INR (relabelled and sign-flipped,
#: :func:`nngraph.symmetry.align_all`: the signs become canonical instead of augmented); aligned and trained with
#: weight-space MixUp (:mod:`.mixup`);
#: probes + sign flips with the probe inputs trained along (:mod:`tasks.inr_classification.learned_probes`)
EXTRA_METHODS = ("encoder_flip", "encoder_align", "encoder_mixup", "encoder_learned_probe")



def build_parser(prog: str = "python -m tasks.inr_classification") -> argparse.ArgumentParser:
    p = task_parser(prog, __doc__)
    add_training_args(p, zoo_help="an INR zoo directory (python -m nngraph.zoo inr --out ...)",
                      out="runs/inr_classification", methods=METHODS, choices=METHODS + EXTRA_METHODS, epochs=10, baseline_epochs=200, batch_size=32,
                      lr=2e-3, weight_decay=5e-4, patience=15, num_layers=2)  # the settings of the reported runs
    p.add_argument("--warmup", type=int, default=1, help="epochs of linear learning-rate warmup")
    p.add_argument("--probes", type=int, default=64,
                   help="probe inputs (coordinates) for the probe variants; a square makes a k x k grid")
    p.add_argument("--probe-placement", choices=("grid", "random"), default="grid",
                   help="grid: the output neuron's probe values are a k x k rendering of the image")
    p.add_argument("--probe-generator", action="store_true",
                   help="encoder_learned_probe: make the probes with a shared deep linear generator (ProbeGen) "
                        "instead of training them as free inputs")
    p.add_argument("--mixup-alpha", type=float, default=0.2,
                   help="encoder_mixup: the Beta(alpha, alpha) distribution of the mixing weights")
    add_optional_args(p, "dropout", "positional_dim", "gbm_iters", "max_train", what="INRs")
    add_run_args(p)
    return p


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).float().mean())


def _aligned_splits(train, val, test, progress: bool) -> dict[str, list]:
    """Every split's graphs (without probes) aligned to the first training INR (:func:`nngraph.symmetry.align_all`)."""
    from nngraph.data.zoo_dataset import example_inputs_for_spec

    layout = nngraph.build_layout(train.models[0], example_inputs_for_spec(train.entries[0]["spec"]))
    reference = train.graphs[0]
    return {k: align_all(s.graphs, reference, layout, progress, f"aligning {k}")
            for k, s in (("train", train), ("val", val), ("test", test))}


def _twin_sign_flip(positional_dim: int):
    """:func:`sign_flip` for the broken twins: their positional features (the last ``positional_dim`` probe
    columns) name a position, not a value of the neuron, and keep their sign."""
    def sign_flip_twin(batch):
        return sign_flip(batch, fixed_columns=positional_dim)
    return sign_flip_twin


def _learned_probe_factory(train, args, scaler, probe_dim: int, probe_placement: str):
    """``box -> LearnedProbePredictor`` starting from the fixed probes' inputs."""
    from nngraph.zoo import build_model
    from nngraph.zoo.inr_meta import INRMetadata

    spec = train.entries[0]["spec"]
    inputs = probe_inputs_for(spec, args.probes, 0, probe_placement, INRMetadata.of_zoo(train.dataset.zoo.config))
    return lambda box: LearnedProbePredictor(scaler, 10, build_model(spec), inputs, args.hidden_dim,
                                             args.num_layers, args.dropout, box, generator=args.probe_generator)


def run(args: argparse.Namespace) -> list[dict]:
    """Train every method of ``args.methods``; returns the results rows (and writes results.json, plots)."""
    progress = start_run(args, METHODS + EXTRA_METHODS, "inr", "INR classification")
    probe_kw = dict(probe_placement=args.probe_placement)
    train = load_split(args.zoo, "train", args.probes, max_items=args.max_train, **probe_kw)
    val = load_split(args.zoo, "val", args.probes, **probe_kw)
    test = load_split(args.zoo, "test", args.probes, **probe_kw)
    y = {name: torch.tensor([e["label"] for e in s.entries]) for name, s in
         (("train", train), ("val", val), ("test", test))}
    rows, histories = [], {}
    common = dict(hidden_dim=args.hidden_dim, num_layers=args.num_layers, epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, patience=args.patience,
                  dropout=args.dropout, warmup=args.warmup,
                  seed=args.seed, device=args.device, progress=progress)
    scaler = GraphScaler().fit(train.graphs)
    n_note = f"{len(train)} train / {len(test)} test INRs"

    variants = {  # name -> (probe_dim, augment, positional, aligned)
        "encoder": (0, None, False, False),
        "encoder_flip": (0, sign_flip, False, False),
        "encoder_align": (0, None, False, True),
        "encoder_mixup": (0, WeightMixup(10, args.mixup_alpha), False, True),
        "encoder_probe": (args.probes, None, False, False),
        "encoder_probe_flip": (args.probes, sign_flip, False, False),
        "encoder_learned_probe": (args.probes, sign_flip, False, False),
        "encoder_broken": (args.probes, _twin_sign_flip(args.positional_dim), True, False),
        "encoder_broken_perm": (args.probes, _twin_sign_flip(args.positional_dim), True, False),
    }
    aligned_graphs = None
    for name, (probe_dim, augment, positional, aligned) in variants.items():
        if name not in args.methods:
            continue
        graphs = {k: s.graphs for k, s in (("train", train), ("val", val), ("test", test))}
        if aligned:
            if aligned_graphs is None:  # one alignment serves every aligned method
                aligned_graphs = _aligned_splits(train, val, test, progress)
            graphs = aligned_graphs
        if positional:
            graphs = {k: add_positional_features(g, args.positional_dim, args.seed) for k, g in graphs.items()}
            probe_dim += args.positional_dim
        start = time.perf_counter()
        extra = {}
        if name == "encoder_broken_perm":  # every epoch sees each INR under a fresh relabelling of its neurons
            graphs["train"] = SymmetryAugmented.of_split(graphs["train"], train, args.positional_dim)
            extra = {"settings": {"symmetry_augmented": True}}
        if name == "encoder_learned_probe":
            extra = {"settings": {"learned_probes": args.probes, "probe_placement": args.probe_placement,
                                  "probe_generator": args.probe_generator},
                     "model_factory": _learned_probe_factory(train, args, scaler, probe_dim, **probe_kw)}
        if aligned:  # recorded, so that a rerun with other settings is refused instead of resumed
            extra = {"settings": {"aligned": True, **({"mixup_alpha": args.mixup_alpha} if name == "encoder_mixup" else {})}}
        model, result = train_graph_predictor(graphs["train"], graphs["val"], "classification",
                                              run_dir(args.out, name), scaler, 10, probe_dim=probe_dim,
                                              augment=augment, **common, **extra)
        acc = _accuracy(predict_graphs(model, graphs["test"], "classification").argmax(-1), y["test"])
        histories[name] = result.history
        note = {"encoder": "no probe features", "encoder_flip": "no probe features; sign-flip augmentation",
                "encoder_align": "no probe features; aligned (relabelled, signs flipped) to one training INR",
                "encoder_mixup": f"no probe features; aligned; weight-space MixUp (alpha {args.mixup_alpha})",
                "encoder_probe": f"{args.probes} probe inputs ({args.probe_placement})",
                "encoder_probe_flip": "probes + sign-flip augmentation",
                "encoder_learned_probe": f"{args.probes} learned probe inputs (from the {args.probe_placement}"
                                         f"{', made by a generator' if args.probe_generator else ''}) + sign flips",
                "encoder_broken": f"as probe_flip + {args.positional_dim} random positional features",
                "encoder_broken_perm": "as encoder_broken, trained on randomly relabelled INRs"}[name]
        rows.append(row(TASK, name, "test_acc", acc, time.perf_counter() - start, note=note,
                        best_epoch=result.best_epoch))
        print(f"{name}: test accuracy {acc:.4f}", flush=True)

    if "flat_mlp" in args.methods:
        start = time.perf_counter()
        flat = {k: flat_weights(s.models) for k, s in (("train", train), ("val", val), ("test", test))}  # (M, P)
        model, result = fit_vector_mlp(flat["train"], y["train"], flat["val"], y["val"], "classification",
                                       run_dir(args.out, "flat_mlp"), epochs=args.baseline_epochs, seed=args.seed,
                                       patience=args.patience)
        acc = _accuracy(predict_vectors(model, flat["test"]).argmax(-1), y["test"])
        histories["flat_mlp"] = result.history
        rows.append(row(TASK, "flat_mlp", "test_acc", acc, time.perf_counter() - start, note="MLP on weight vector"))

    if "stats_gbm" in args.methods:
        start = time.perf_counter()
        feats = {k: torch.stack([weight_stat_features(m) for m in s.models])
                 for k, s in (("train", train), ("test", test))}  # (M, D)
        pred = torch.as_tensor(gradient_boosting(feats["train"], y["train"], feats["test"], "classification",
                                                 args.seed, args.gbm_iters))
        rows.append(row(TASK, "stats_gbm", "test_acc", _accuracy(pred, y["test"]), time.perf_counter() - start,
                        note="weight statistics + gradient boosting"))

    if "pixels" in args.methods:
        start = time.perf_counter()
        pix = {k: torch.stack([s.dataset.image(i).reshape(-1) for i in range(len(s))])
               for k, s in (("train", train), ("val", val), ("test", test))}  # (M, C*H*W)
        model, result = fit_vector_mlp(pix["train"], y["train"], pix["val"], y["val"], "classification",
                                       run_dir(args.out, "pixels"), epochs=args.baseline_epochs, seed=args.seed,
                                       patience=args.patience)
        acc = _accuracy(predict_vectors(model, pix["test"]).argmax(-1), y["test"])
        histories["pixels"] = result.history
        rows.append(row(TASK, "pixels", "test_acc", acc, time.perf_counter() - start,
                        note="ceiling: MLP on the images"))

    for r in rows:
        r["note"] = f"{r['note']}; {n_note}"
    save_run(rows, histories, ["train_loss", "val_acc"], args.out, "INR classification", seed=args.seed)
    return rows


def main(argv=None, prog: str | None = None) -> int:
    return run_main(run, build_parser, argv, prog)


if __name__ == "__main__":
    sys.exit(main())
