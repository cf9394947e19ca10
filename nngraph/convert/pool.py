"""Pooling and spatial reductions: every channel is pooled on its own, so the neurons stay the
same nodes and only the tensor's shape changes.

Supported: ``nn.MaxPool1/2/3d``, ``nn.AvgPool1/2/3d``, ``nn.LPPool1/2/3d``,
``nn.AdaptiveAvgPool1/2/3d``, ``nn.AdaptiveMaxPool1/2/3d``, their ``torch.nn.functional``
forms, and ``mean`` / ``sum`` / ``amax`` / ``amin`` (method or ``torch.*``) over spatial
dimensions. A reduction over the neuron axis (``x.mean(1)``, ``x.sum()``) mixes neurons and is
refused, as is ``return_indices=True`` (the indices are positions, not activations).

All of them are registered as pass-through: an activation after a pool is recorded on the
channels that were pooled (exact for max pooling, which commutes with monotone activations; for
average pooling the graph records *that* the channel is activated, not the order of the two).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UnsupportedError
from .registry import register_function, register_module
from .values import TensorValue
from .walk import describe

#: module type -> number of spatial dimensions it pools over
_MODULES: dict[type, int] = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3,
    nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
    nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
}
for _lp, _dims in (("LPPool1d", 1), ("LPPool2d", 2), ("LPPool3d", 3)):
    if hasattr(nn, _lp):  # LPPool3d is recent
        _MODULES[getattr(nn, _lp)] = _dims

#: functional target -> number of spatial dimensions (some F.* are the same builtins as torch.*)
_FUNCTIONS: dict[object, int] = {}
for _name, _dims in (
    ("max_pool1d", 1), ("max_pool2d", 2), ("max_pool3d", 3),
    ("avg_pool1d", 1), ("avg_pool2d", 2), ("avg_pool3d", 3),
    ("lp_pool1d", 1), ("lp_pool2d", 2), ("lp_pool3d", 3),
    ("adaptive_avg_pool1d", 1), ("adaptive_avg_pool2d", 2), ("adaptive_avg_pool3d", 3),
    ("adaptive_max_pool1d", 1), ("adaptive_max_pool2d", 2), ("adaptive_max_pool3d", 3),
):
    if hasattr(F, _name):
        _FUNCTIONS[getattr(F, _name)] = _dims

_REDUCTIONS = ("mean", "sum", "amax", "amin")


def pool_channels(ctx, node, x, dims: int) -> TensorValue:
    """``(B, C, *S) -> (B, C, *S')`` (or unbatched ``(C, *S)``): the same channel neurons, new shape."""
    if not isinstance(x, TensorValue):
        raise UnsupportedError(f"{describe(node)} expects a tensor, got {x!r}")
    if x.spatial:
        raise UnsupportedError(
            f"{describe(node)} pools a flattened tensor (neurons spanning positions {x.spatial}); pool before the flatten"
        )
    x = ctx.neurons(x, -(dims + 1), node)  # channels: axis 1 of (B, C, *S), axis 0 of (C, *S)
    shape = ctx.shape_of(node)
    if shape is None or len(shape) != len(x.shape) or shape[x.axis] != x.num_neurons:
        raise UnsupportedError(
            f"{describe(node)} turns {x.shape} into {shape}; pooling must keep the {x.num_neurons} channels on axis {x.axis}"
        )
    return x.with_(shape=shape)


def _refuse_indices(node, return_indices) -> None:
    if return_indices:
        raise UnsupportedError(
            f"{describe(node)} returns the indices of the maxima; nngraph follows activations only, "
            "use return_indices=False"
        )


def _pool_module(ctx, node, x, *args, **kwargs) -> TensorValue:
    module = ctx.module_of(node)
    _refuse_indices(node, getattr(module, "return_indices", False))
    return pool_channels(ctx, node, x, _MODULES[type(module)])


def _pool_function(ctx, node, x, *args, **kwargs) -> TensorValue:
    _refuse_indices(node, kwargs.get("return_indices", False) is True)
    return pool_channels(ctx, node, x, _FUNCTIONS[node.target])


register_module(*_MODULES, passthrough=True)(_pool_module)
register_function(*_FUNCTIONS, passthrough=True)(_pool_function)


def reduce_spatial(ctx, node, x, dim=None, keepdim=False) -> TensorValue:
    """``x.mean(dim)`` and friends over non-neuron dimensions: the neurons stay, the axis moves
    left by the number of reduced dimensions before it (unless ``keepdim``)."""
    op = node.target if isinstance(node.target, str) else node.target.__name__
    if not isinstance(x, TensorValue):
        raise UnsupportedError(f"{describe(node)} expects a tensor, got {x!r}")
    if x.nodes is None:
        x = ctx.neurons(x, 1 if len(x.shape) > 2 else -1, node)  # a raw model input: channels on axis 1
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        raise UnsupportedError(
            f"{describe(node)} computes {op} over every dimension, the neuron axis {x.axis} included, which mixes "
            f"neurons; reduce over the spatial dimensions only (e.g. x.{op}(dim=(2, 3)))"
        )
    ndim = len(x.shape)
    dims = {int(d) % ndim for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
    if x.axis in dims:
        raise UnsupportedError(
            f"{describe(node)} computes {op} over dimension {x.axis}, which holds the neurons; that mixes neurons "
            "and cannot be represented in a neural graph. Reduce over the spatial dimensions only."
        )
    if x.spatial:
        raise UnsupportedError(f"{describe(node)} reduces a flattened tensor (neurons spanning positions {x.spatial})")
    axis = x.axis if keepdim else x.axis - sum(1 for d in dims if d < x.axis)
    return x.with_(shape=ctx.shape_of(node), axis=axis)


def _reduction(ctx, node, x, dim=None, keepdim=False, *args, **kwargs) -> TensorValue:
    return reduce_spatial(ctx, node, x, kwargs.get("axis", dim), keepdim)


register_function(*_REDUCTIONS, *(getattr(torch, r) for r in _REDUCTIONS), passthrough=True)(_reduction)
