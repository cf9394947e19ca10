"""Merging models of one architecture after aligning them, and the loss barrier on the path between two.

Two models trained apart from different seeds put their features on different neurons: averaging their weights
entry by entry mixes unrelated neurons, and the loss along the straight path between them rises (the barrier).
Aligning one to the other first (:func:`~nngraph.symmetry.match.align`) removes most of that rise for wide
models (Ainsworth et al., *Git Re-Basin*, ICLR 2023). BatchNorm's running statistics are not averages of the
models' statistics; ``reset_norms`` recomputes them on data (Jordan et al., *REPAIR*, ICLR 2023).
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from .match import align

__all__ = ["interpolate", "interpolation_barrier", "merge", "plot_barrier", "reset_norms"]


def interpolate(a: nn.Module, b: nn.Module, t: float) -> nn.Module:
    """A copy of ``a`` whose floating parameters and buffers are ``(1 - t) a + t b`` (integer buffers: ``a``'s)."""
    out = copy.deepcopy(a)
    sb = b.state_dict()
    with torch.no_grad():
        for name, value in out.state_dict().items():
            if value.is_floating_point():
                value.copy_((1 - t) * value + t * sb[name])
    return out


def merge(models: Sequence[nn.Module], weights: Sequence[float] | None = None,
          example_inputs: Sequence[torch.Tensor] | torch.Tensor | None = None, aligned: bool = True) -> nn.Module:
    """The weighted average of ``models`` (one architecture), each aligned to the first unless ``aligned=False``.

    Args:
        models: two or more models of one architecture.
        weights: one per model, summing to 1 (default: equal).
        example_inputs: as for :func:`nngraph.to_graph`.
        aligned: align every model to the first before averaging (default: ``True``).
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"merge needs at least two models, got {len(models)}")
    weights = [1.0 / len(models)] * len(models) if weights is None else [float(w) for w in weights]
    if len(weights) != len(models) or abs(sum(weights) - 1.0) > 1e-6 or any(w < 0 for w in weights):
        raise ValueError(f"merge: weights must be {len(models)} non-negative numbers summing to 1, got {weights}")
    reference = models[0]
    members = [reference] + [align(reference, m, example_inputs) if aligned else m for m in models[1:]]
    out = copy.deepcopy(reference)
    states = [m.state_dict() for m in members]
    with torch.no_grad():
        for name, value in out.state_dict().items():
            if value.is_floating_point():
                value.copy_(sum(w * s[name] for w, s in zip(weights, states)))
    return out


def reset_norms(model: nn.Module, batches: Iterable) -> nn.Module:
    """``model`` with every BatchNorm's running statistics recomputed on ``batches`` (inputs, or ``(inputs, ...)``
    tuples): a cumulative average over them, the model in training mode for the pass and back in eval after."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    was = model.training
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(*(batch if isinstance(batch, (tuple, list)) else (batch,))[:1])
    model.train(was)
    return model


def interpolation_barrier(a: nn.Module, b: nn.Module, loss_fn: Callable[[nn.Module], float], steps: int = 11,
                          norm_batches: Iterable | None = None) -> dict:
    """The loss along the straight path from ``a`` to ``b`` and its barrier.

    Args:
        a, b: two models of one architecture (align ``b`` to ``a`` first to measure the aligned barrier).
        loss_fn: ``loss_fn(model) -> float`` on the data of interest (the model in eval mode).
        steps: points on the path, ends included (default: 11).
        norm_batches: if given, BatchNorm statistics are recomputed on them at every point (:func:`reset_norms`).

    Returns:
        ``{"t": [...], "loss": [...], "barrier": max_t (loss(t) - ((1 - t) loss(0) + t loss(1)))}``.
    """
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    ts = torch.linspace(0, 1, steps).tolist()
    losses = []
    for t in ts:
        model = interpolate(a, b, t)
        if norm_batches is not None:
            reset_norms(model, norm_batches)
        model.eval()
        losses.append(float(loss_fn(model)))
    ends = [(1 - t) * losses[0] + t * losses[-1] for t in ts]
    return {"t": ts, "loss": losses, "barrier": max(l - e for l, e in zip(losses, ends))}


def plot_barrier(curves: dict[str, dict], path: str, title: str = "loss along the path between two models") -> None:
    """Plot ``{label: interpolation_barrier(...)}`` curves into ``path`` (PNG), barriers in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, curve in curves.items():
        ax.plot(curve["t"], curve["loss"], marker="o", ms=3, label=f"{label} (barrier {curve['barrier']:.3f})")
    ax.set_xlabel("t (0: model A, 1: model B)")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
