"""The ``probe_gbm_stacked*`` rows of accuracy prediction: gradient boosting on the probe outputs and, as one more
feature, a network's cross-fitted prediction.

``probe_gbm_stacked``: the network is :class:`nngraph.probing.ProbeGraphHybrid` without a prior, on the
``--probe-inputs`` fixed probe images (the graph with every neuron's values on them, and the output neurons' softmax
statistics read directly); ``probe_gbm_stacked_no_graph``: the same without the graph (an MLP on the output
statistics), the control that says what the graph adds. The training models' feature is cross-fitted by training
run (5 folds, :func:`nngraph.probing.cross_fit`): each comes from a network that did not train on its run, so
gradient boosting learns to trust the feature as much as it deserves on new models; validation and test models get
the network trained on every training model. Every network stops on the validation models (its best epoch) and
has its own run directory (``<method>-fold<k>``, ``<method>-full``): a killed run resumes.
"""
from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from nngraph.probing import cross_fit, probing_flops

from ..common.baselines import gradient_boosting
from ..common.features import max_kernel_shape
from ..common.graph_training import predict_graphs
from ..common.harness import run_dir
from .probe_hybrid import hybrid_graphs, network_flops, probe_setup, train_hybrid
from .probing import output_features

__all__ = ["STACKED", "stacked_method"]

#: method -> the ProbeGraphHybrid options of the network whose prediction is stacked (fixed probes, no prior)
STACKED = {"probe_gbm_stacked": {"learned": False},
           "probe_gbm_stacked_no_graph": {"learned": False, "graph": False}}
FOLDS = 5


def _objects(items: list) -> np.ndarray:
    """``items`` in a 1-d object array (indexable by integer arrays, as :func:`cross_fit` indexes its rows)."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def stacked_method(args, name, train, val, test, progress, tag=""):
    """Train the networks of ``name`` (a key of :data:`STACKED`), cross-fitted, and gradient boosting on the probe
    outputs with their prediction; returns ``(pred, result, cost)`` (``result``: the network trained on every
    training model; ``cost`` as the hybrid rows')."""
    options = STACKED[name]
    splits, inputs, ys, mean, std, all_models = probe_setup(args, train, val, test)
    feats = [output_features(s.models, inputs) for s in splits[:2]]  # (M, K * classes)
    graphs = hybrid_graphs(splits[:2], ys[:2], mean, std, [None] * 2, inputs)
    begin = time.perf_counter()  # the test models on the probe images: their outputs and every neuron's values
    feats.append(output_features(test.models, inputs))  # (M_test, K * classes)
    # (model_key counts from 0 here: with fixed probes the network never runs the models)
    graphs += hybrid_graphs((test,), ys[2:], mean, std, [None], inputs)
    probe_seconds = time.perf_counter() - begin
    box = max_kernel_shape([g for gs in graphs for g in gs])  # the held-out family's kernels too
    settings = {"stacked": name, "target_mean": mean, "target_std": std, "probe_inputs": args.probe_inputs}
    fits = itertools.chain((f"{name}{tag}-fold{k}" for k in range(FOLDS)), [f"{name}{tag}-full"])
    trained = []

    def fit_predict(fit_graphs, _y, predict_graphs_):  # the standardised targets ride on the graphs (g.y)
        model, result = train_hybrid(args, list(fit_graphs), graphs[1], box, inputs, all_models, options,
                                     run_dir(args.out, next(fits)), progress, settings)
        trained.append((model, result))
        return predict_graphs(model, list(predict_graphs_), "regression").numpy()  # (M_predict,) standardised

    groups = [e.get("run", e["id"]) for e in train.entries]
    oof, (rest,) = cross_fit(fit_predict, _objects(graphs[0]), ys[0], groups, [_objects(graphs[1] + graphs[2])],
                             folds=FOLDS, seed=args.seed)
    p_test = rest[len(graphs[1]):]  # (M_test,) the network trained on every training model
    stack = lambda f, p: torch.cat([f, torch.tensor(p, dtype=f.dtype)[:, None]], dim=1)  # noqa: E731 (M, K C + 1)
    pred = gradient_boosting(stack(feats[0], oof), torch.tensor(ys[0], dtype=torch.float), stack(feats[2], p_test),
                             "regression", args.seed, args.gbm_iters)
    model, result = trained[-1]
    begin = time.perf_counter()
    predict_graphs(model, graphs[2], "regression")
    seconds = (time.perf_counter() - begin + probe_seconds) / len(test.models)
    flops = network_flops(model.hybrid, graphs[2], test.models) + probing_flops(test.models, inputs)
    cost = {"passes": len(inputs), "flops": flops, "reader_flops": 0, "seconds": seconds}
    return np.clip(np.asarray(pred), ys[0].min(), ys[0].max()), result, cost
