"""Weight-statistics features (Unterthiner et al., 2020, "Predicting Neural Network Accuracy from Weights").

Rows of :data:`STATS` (a flag that the row exists, mean, variance and the 0/25/50/75/100% quantiles), in
this order:

1. one per parameter tensor, in the model's order (``max_tensors`` rows);
2. all weights (tensors with 2+ dims) together, all vectors (biases, norm parameters) together;
3. over every normalisation layer (BatchNorm, LayerNorm, GroupNorm, InstanceNorm) together: the affine
   weights (γ), the affine biases (β), and BatchNorm's ``running_mean`` and ``running_var`` buffers (the node
   features ``norm_weight``, ``norm_bias``, ``running_mean``, ``running_var`` of the neural graph's NORM
   neurons, :mod:`nngraph.schema`);
4. the same four per normalisation layer, in the model's order (``max_norm_layers`` blocks of 4 rows).

A row that does not exist (fewer tensors or normalisation layers than rows, no normalisation at all, a
LayerNorm's absent running statistics, ``affine=False``, ``track_running_stats=False``) is all zeros,
flag included, so the vector has the same length for every architecture. ``num_batches_tracked`` (a count
of training steps, not a weight) is left out. Every statistic is invariant to relabelling hidden neurons.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["STATS", "NORM_FIELDS", "tensor_stats", "norm_layers", "weight_stat_features", "feature_dim"]

QUANTILES = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
STATS = ("present", "mean", "var", "q0", "q25", "q50", "q75", "q100")
#: Attributes of a normalisation layer summarised in parts 3 and 4 (``None`` or missing = absent).
NORM_FIELDS = ("weight", "bias", "running_mean", "running_var")
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def tensor_stats(t: torch.Tensor) -> torch.Tensor:
    """``(8,)``: present, mean, variance, quantiles of the entries of ``t``."""
    v = t.detach().reshape(-1).double()  # (numel,)
    var = v.var(unbiased=False) if v.numel() > 1 else v.new_zeros(())
    q = torch.quantile(v, QUANTILES.double())  # (5,)
    out = torch.cat([v.new_ones(1), v.mean().reshape(1), var.reshape(1), q])  # (8,) float64
    big = torch.finfo(torch.float32).max  # the variance of weights near 1e20 overflows float32: saturate instead
    return out.clamp(-big, big).float()


def _absent() -> torch.Tensor:
    return torch.zeros(len(STATS))


def _group_stats(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensor_stats(torch.cat([t.detach().reshape(-1) for t in tensors])) if tensors else _absent()


def norm_layers(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    """The normalisation layers of ``model`` in module order, each as ``{field: tensor}`` over the
    :data:`NORM_FIELDS` it has (a LayerNorm has no running statistics; ``affine=False`` no weight / bias)."""
    out = []
    for m in model.modules():
        if isinstance(m, _NORM_TYPES):
            fields = {f: getattr(m, f, None) for f in NORM_FIELDS}
            out.append({f: t for f, t in fields.items() if isinstance(t, torch.Tensor) and t.numel() > 0})
    return out


def feature_dim(max_tensors: int = 20, max_norm_layers: int = 8) -> int:
    """Length of :func:`weight_stat_features`."""
    return len(STATS) * (max_tensors + 2 + len(NORM_FIELDS) * (1 + max_norm_layers))


def weight_stat_features(model: nn.Module, max_tensors: int = 20, max_norm_layers: int = 8) -> torch.Tensor:
    """``(feature_dim(max_tensors, max_norm_layers),)`` statistics of ``model`` (see the module docstring)."""
    params = [p for p in model.parameters()]
    rows = [tensor_stats(p) for p in params[:max_tensors]]
    rows += [_absent()] * (max_tensors - len(rows))
    rows.append(_group_stats([p for p in params if p.dim() > 1]))
    rows.append(_group_stats([p for p in params if p.dim() <= 1]))
    norms = norm_layers(model)
    rows += [_group_stats([n[f] for n in norms if f in n]) for f in NORM_FIELDS]
    for i in range(max_norm_layers):
        n = norms[i] if i < len(norms) else {}
        rows += [tensor_stats(n[f]) if f in n else _absent() for f in NORM_FIELDS]
    return torch.stack(rows).reshape(-1)  # (R, 8) -> (8 * R,)
