"""The ``hybrid*`` rows of accuracy prediction: :class:`nngraph.probing.ProbeGraphHybrid` and its ablations.

``hybrid``: the encoder reading every neuron's values on ``--probe-inputs`` learned probes (a shared deep linear
generator started at the probe images), the output neurons' softmax statistics read directly, on top of gradient
boosting on the probe images' outputs (the ``probe_gbm`` row), cross-fitted by training run (5 folds) so that the
prior the model trains on is as good as the one it sees at test time (cached in ``<run>/cache``, shared by the
variants and restarts: :mod:`tasks.accuracy_prediction.prior_cache`). Ablations: ``hybrid_no_graph`` (no GNN),
``hybrid_fixed_probes`` (the probe images, not learned), ``hybrid_no_prior`` (no gradient boosting: the neural model
alone), ``hybrid_no_probes`` (the weights' graph only: no probes, no prior). Targets are standardised on the
training set.

``hybrid_shrunk`` (and ``hybrid_fixed_probes_shrunk``): the trained network of ``hybrid`` (of
``hybrid_fixed_probes``; the same run directory, so a finished one is loaded, not trained again), its correction to
the prior scaled by the factor in [0, 1] that fits the validation models best
(:func:`nngraph.probing.correction_shrinkage`): the correction overfits its training models, and the validation
models, which it never trained on and whose prior is made as the test models' is, say how much of it carries over.
"""
from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
from torch import nn

import nngraph
from nngraph.probing import ProbeGraphHybrid, correction_shrinkage, forward_flops, probing_flops

from ..common.features import max_kernel_shape
from ..common.graph_training import predict_graphs, train_graph_predictor
from ..common.harness import run_dir
from ..common.models import max_box
from ..common.robust import RobustGraphScaler
from .prior_cache import gbm_prior
from .probing import output_features, probe_images

__all__ = ["HYBRIDS", "HybridOnZoo", "SHRUNK", "hybrid_graphs", "hybrid_method", "network_flops", "train_hybrid"]

#: method -> (ProbeGraphHybrid options, cross-fitted GBM prior)
HYBRIDS = {"hybrid": ({}, True),
           "hybrid_no_graph": ({"graph": False}, True),
           "hybrid_fixed_probes": ({"learned": False}, True),
           "hybrid_no_prior": ({}, False),
           "hybrid_no_probes": ({"node_probes": False, "readout_probes": False}, False)}
#: method -> the hybrid whose trained network it reuses, its correction shrunk on the validation models
SHRUNK = {"hybrid_shrunk": "hybrid", "hybrid_fixed_probes_shrunk": "hybrid_fixed_probes"}
HYBRIDS.update({name: HYBRIDS[trained] for name, trained in SHRUNK.items()})


class _Reader(nn.Module):
    """``hybrid.read`` as a module's forward (for the FLOP counter, which cannot run the probed models' tracing)."""

    def __init__(self, hybrid):
        super().__init__()
        self.hybrid = hybrid

    def forward(self, batch, values):
        return self.hybrid.read(batch, values)


class HybridOnZoo(nn.Module):
    """A :class:`ProbeGraphHybrid` that finds each graph's model by ``graph.model_key`` (models kept out of the
    state dict)."""

    def __init__(self, hybrid: ProbeGraphHybrid, models: list):
        super().__init__()
        self.hybrid = hybrid
        self._models = tuple(models)

    def forward(self, batch):
        runs_models = self.hybrid.learned and self.hybrid.uses_probes
        models = [self._models[i] for i in batch.model_key.tolist()] if runs_models else None
        return self.hybrid(batch, models)


def _targets(split):
    return np.array([e["test_acc"] for e in split.entries], dtype=float)


def probe_setup(args, train, val, test):
    """What every probe-reading method starts from: ``(splits, inputs (K, C, H, W), targets per split,
    mean, std of the training targets, every split's models)``."""
    splits = (train, val, test)
    inputs = probe_images(args.zoo, args.probe_inputs, args.seed)  # (K, C, H, W)
    ys = [_targets(s) for s in splits]
    mean, std = float(ys[0].mean()), float(max(ys[0].std(), 1e-6))
    return splits, inputs, ys, mean, std, [m for s in splits for m in s.models]


def hybrid_method(args, name, train, val, test, progress, tag=""):
    """Train the hybrid ``name`` (a key of :data:`HYBRIDS`) and predict ``test``; returns ``(pred, result, cost)``,
    ``cost`` as the probing rows' (probe forward passes, FLOPs per prediction, seconds per prediction; for the
    :data:`SHRUNK` methods also ``shrinkage``, the factor kept of the correction)."""
    trained = SHRUNK.get(name, name)  # the network trained (or loaded from its run directory)
    options, use_prior = HYBRIDS[trained]
    splits, inputs, ys, mean, std, all_models = probe_setup(args, train, val, test)
    priors = [None] * 3
    prior_seconds = 0.0
    if use_prior:  # gradient boosting on the probe outputs, cross-fitted by training run
        feats = [output_features(s.models, inputs) for s in splits[:2]]  # (M, K * classes)
        begin = time.perf_counter()
        feats.append(output_features(test.models, inputs))
        prior_seconds = time.perf_counter() - begin  # running the test models on the probe images (trees not timed)
        groups = [e.get("run", e["id"]) for e in train.entries]
        ids = [[e["id"] for e in s.entries] for s in splits]
        # the same for every hybrid variant and every restart of the run: cached in the run directory
        prior = gbm_prior(feats, ys[0], groups, ids, args.seed, args.gbm_iters, args.probe_inputs,
                          os.path.join(args.out, "cache"))
        priors = [(p - mean) / std for p in prior]
    fixed = not options.get("learned", True)
    graphs = hybrid_graphs(splits, ys, mean, std, priors, inputs if fixed else None)
    box = max_kernel_shape([g for gs in graphs for g in gs])  # the held-out family's kernels too
    model, result = train_hybrid(args, graphs[0], graphs[1], box, inputs, all_models, options,
                                 run_dir(args.out, trained + tag), progress,
                                 {"hybrid": trained, "prior": use_prior, "target_mean": mean, "target_std": std,
                                  "probe_inputs": args.probe_inputs})
    begin = time.perf_counter()
    pred = predict_graphs(model, graphs[2], "regression").numpy()  # (M_test,) standardised
    seconds = (time.perf_counter() - begin + prior_seconds) / len(test.models)
    shrinkage = None
    if name in SHRUNK:  # keep of the correction what carries over to the validation models
        val_pred = predict_graphs(model, graphs[1], "regression").numpy()  # (M_val,) standardised
        shrinkage = correction_shrinkage(priors[1], val_pred, (ys[1] - mean) / std)
        pred = priors[2] + shrinkage * (pred - priors[2])
    pred = pred * std + mean
    # FLOPs per prediction: the network on one graph (with learned probes, their forward passes through the model
    # are inside it) plus the forward passes on the fixed probe images (the prior's and fixed node features)
    hybrid = model.hybrid
    net = network_flops(hybrid, graphs[2], test.models)
    learned_passes = len(inputs) if hybrid.learned and hybrid.uses_probes else 0
    fixed_passes = use_prior or (fixed and hybrid.uses_probes)
    flops = net + (probing_flops(test.models, inputs) if fixed_passes else 0.0)
    cost = {"passes": learned_passes + (len(inputs) if fixed_passes else 0), "flops": flops, "reader_flops": 0,
            "seconds": seconds, "shrinkage": shrinkage}
    return np.clip(pred, ys[0].min(), ys[0].max()), result, cost


def hybrid_graphs(splits, ys, mean: float, std: float, priors, fixed_probes: torch.Tensor | None) -> list[list]:
    """Shallow copies of each split's graphs with ``y`` (the accuracy standardised by ``mean``, ``std``),
    ``model_key`` (the model's index in the splits' models, concatenated), ``prior`` ``(1, 1)`` where ``priors``
    holds one (standardised) and, given ``fixed_probes`` ``(K, ...)``, ``probe`` ``(N, K)``: every neuron's raw
    value on them."""
    offsets = np.cumsum([0] + [len(s.models) for s in splits])
    graphs = []
    for k, s in enumerate(splits):
        out = []
        for i, (g, model) in enumerate(zip(s.graphs, s.models)):
            g = copy.copy(g)
            g.y = torch.tensor([(ys[k][i] - mean) / std], dtype=torch.float)
            g.model_key = torch.tensor([int(offsets[k]) + i])
            if priors[k] is not None:
                g.prior = torch.tensor([[float(priors[k][i])]])  # (1, 1)
            if fixed_probes is not None:
                inputs = fixed_probes.to(next(model.parameters()).dtype)
                g.probe = nngraph.probe_features(model, inputs).float()  # (N, K)
            out.append(g)
        graphs.append(out)
    return graphs


def train_hybrid(args, train_graphs: list, val_graphs: list, box, inputs: torch.Tensor, all_models: list,
                 options: dict, out_dir: str, progress: bool, settings: dict):
    """Train (or load, when ``out_dir`` holds the finished run) a :class:`HybridOnZoo` with the
    :class:`ProbeGraphHybrid` ``options`` on the standardised targets; returns ``(model, result)``."""
    scaler = RobustGraphScaler().fit(train_graphs)
    num_classes = all_models[0](inputs[:1]).shape[-1]

    def factory(box):
        hybrid = ProbeGraphHybrid(inputs, num_classes, hidden_dim=args.hidden_dim, num_layers=args.num_layers,
                                  dropout=args.dropout, max_kernel_box=max_box(box), scaler=scaler, **options)
        return HybridOnZoo(hybrid, all_models)

    return train_graph_predictor(
        train_graphs, val_graphs, "regression", out_dir, scaler, 1, hidden_dim=args.hidden_dim,
        num_layers=args.num_layers, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, dropout=args.dropout, patience=args.patience, seed=args.seed,
        device=args.device, progress=progress, kernel_box=box, model_factory=factory, settings=settings)


def network_flops(hybrid: ProbeGraphHybrid, graphs: list, models: list) -> float:
    """FLOPs of ``hybrid`` on one graph, the mean over ``graphs``; with learned probes, their forward passes
    through the ``models`` too."""
    values = [hybrid.neuron_values(g, [models[i]] if hybrid.learned else None) if hybrid.uses_probes else None
              for i, g in enumerate(nngraph.batch_graphs([g]) for g in graphs)]
    net = float(np.mean([forward_flops(_Reader(hybrid), nngraph.batch_graphs([g]), v) for g, v in zip(graphs, values)]))
    if hybrid.learned and hybrid.uses_probes:
        net += probing_flops(models, hybrid.current_probes().detach())
    return net
