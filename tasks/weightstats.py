"""Weight-statistics features (Unterthiner et al., 2020, "Predicting Neural Network Accuracy from Weights").

Per parameter tensor, in the model's order: mean, variance and the 0/25/50/75/100% quantiles, plus a
flag that the tensor exists (models with fewer tensors are zero-padded), and the same statistics over all
weights (tensors with 2+ dims) and over all vectors (biases, norm parameters) together. Every statistic is
invariant to relabelling hidden neurons.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["STATS", "tensor_stats", "weight_stat_features", "feature_dim"]

QUANTILES = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
STATS = ("present", "mean", "var", "q0", "q25", "q50", "q75", "q100")


def tensor_stats(t: torch.Tensor) -> torch.Tensor:
    """``(8,)``: present, mean, variance, quantiles of the entries of ``t``."""
    v = t.detach().reshape(-1).double()  # (numel,)
    var = v.var(unbiased=False) if v.numel() > 1 else v.new_zeros(())
    q = torch.quantile(v, QUANTILES.double())  # (5,)
    return torch.cat([v.new_ones(1), v.mean().reshape(1), var.reshape(1), q]).float()


def feature_dim(max_tensors: int) -> int:
    """Length of :func:`weight_stat_features`."""
    return len(STATS) * (max_tensors + 2)


def weight_stat_features(model: nn.Module, max_tensors: int = 20) -> torch.Tensor:
    """``(8 * (max_tensors + 2),)`` statistics of ``model``'s parameters (see the module docstring)."""
    params = [p for p in model.parameters()]
    rows = [tensor_stats(p) for p in params[:max_tensors]]
    rows += [torch.zeros(len(STATS))] * (max_tensors - len(rows))
    weights = [p.reshape(-1) for p in params if p.dim() > 1]
    vectors = [p.reshape(-1) for p in params if p.dim() <= 1]
    for group in (weights, vectors):
        rows.append(tensor_stats(torch.cat(group)) if group else torch.zeros(len(STATS)))
    return torch.stack(rows).reshape(-1)  # (max_tensors + 2, 8) -> (8 * (max_tensors + 2),)
