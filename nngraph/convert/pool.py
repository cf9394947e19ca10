"""Pooling and spatial reductions: every channel is pooled on its own, so the neurons stay the
same nodes and only the tensor's shape changes.

Supported: ``nn.MaxPool1/2/3d``, ``nn.AvgPool1/2/3d``, ``nn.LPPool1/2/3d``,
``nn.AdaptiveAvgPool1/2/3d``, ``nn.AdaptiveMaxPool1/2/3d``, their ``torch.nn.functional``
forms, and ``mean`` / ``sum`` / ``amax`` / ``amin`` (method or ``torch.*``) over spatial
dimensions. A reduction over the neuron axis (``x.mean(1)``, ``x.sum()``) mixes neurons and is
refused, as is ``return_indices=True`` (the indices are positions, not activations).

Every pooling is recorded on the channels it pools (``pool`` and ``pool_args``, see
:class:`~nngraph.schema.Pool`): its kind, its window, and whether it came after the channels'
activation, so that a max and an average pooling, or two window sizes, never give one graph. When
the pooled value is also used unpooled elsewhere, the pooling gets fresh :attr:`NodeKind.POOL`
neurons tied to the old ones by identity edges (as activations do), so that the unpooled use does
not read as pooled. The pooling ops are registered as pass-through (an activation after a pool is
recorded on the channels that were pooled).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..schema import EdgeType, NodeKind, Pool
from .errors import UnsupportedError, describe
from .registry import register_function, register_module
from .values import TensorValue

#: family -> (kind, the functional form's arguments after the input, in order)
_FAMILIES = {
    "max_pool": (Pool.MAX, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    "avg_pool": (Pool.AVG, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")),
    "lp_pool": (Pool.LP, ("norm_type", "kernel_size", "stride", "ceil_mode")),
    "adaptive_max_pool": (Pool.ADAPTIVE_MAX, ("output_size", "return_indices")),
    "adaptive_avg_pool": (Pool.ADAPTIVE_AVG, ("output_size",)),
}
_MODULE_NAMES = {"max_pool": "MaxPool", "avg_pool": "AvgPool", "lp_pool": "LPPool",
                 "adaptive_max_pool": "AdaptiveMaxPool", "adaptive_avg_pool": "AdaptiveAvgPool"}

#: module type -> (family, number of spatial dimensions it pools over)
_MODULES: dict[type, tuple[str, int]] = {}
#: functional target -> (family, number of spatial dimensions)
_FUNCTIONS: dict[object, tuple[str, int]] = {}
for _family in _FAMILIES:
    for _dims in (1, 2, 3):
        if hasattr(nn, f"{_MODULE_NAMES[_family]}{_dims}d"):  # LPPool3d is recent
            _MODULES[getattr(nn, f"{_MODULE_NAMES[_family]}{_dims}d")] = (_family, _dims)
        if hasattr(F, f"{_family}{_dims}d"):
            _FUNCTIONS[getattr(F, f"{_family}{_dims}d")] = (_family, _dims)

_REDUCTIONS = {"mean": Pool.MEAN, "sum": Pool.SUM, "amax": Pool.AMAX, "amin": Pool.AMIN}


def _axes(value, dims: int, fill: float, default=None) -> list[float]:
    """An int or ``dims``-tuple as three right-aligned per-axis values (``fill`` on missing axes);
    ``None`` or an empty list reads as ``default``; ``None`` entries (adaptive sizes) as 0."""
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        value = default
    values = list(value) if isinstance(value, (list, tuple)) else [value] * dims
    if len(values) == 1 and dims > 1:
        values = values * dims
    if len(values) != dims:
        raise ValueError(f"{len(values)} sizes for a {dims}d pooling")
    return [float(fill)] * (3 - dims) + [0.0 if v is None else float(v) for v in values]


def pool_args(family: str, dims: int, params: dict, in_shape: tuple[int, ...]) -> dict[str, float]:
    """The :data:`~nngraph.schema.POOL_ARGS` of a pooling of ``family`` with arguments ``params``
    (by the functional form's names; missing ones take torch's defaults) on an input of ``in_shape``
    (an adaptive size ``None`` is the input's size, as torch.export writes it)."""
    out: dict[str, float] = {}

    def put(prefix, values):
        for axis, v in zip("dhw", values):
            out[f"{prefix}_{axis}"] = v

    if family.startswith("adaptive"):
        size = params["output_size"]
        if isinstance(size, (list, tuple)):
            size = [in_shape[len(in_shape) - dims + i] if v is None else v for i, v in enumerate(size)]
        put("kernel", _axes(size, dims, 1))
        return out
    kernel = params["kernel_size"]
    put("kernel", _axes(kernel, dims, 1))
    put("stride", _axes(params.get("stride"), dims, 1, default=kernel))
    put("padding", _axes(params.get("padding", 0), dims, 0))
    if family == "max_pool":
        put("dilation", _axes(params.get("dilation", 1), dims, 1))
    out["ceil_mode"] = float(bool(params.get("ceil_mode", False)))
    if family == "avg_pool":
        out["count_include_pad"] = float(bool(params.get("count_include_pad", True)))
        out["divisor_override"] = float(params.get("divisor_override") or 0)
    if family == "lp_pool":
        out["norm_type"] = float(params["norm_type"])
    return out


def _sole_use(node, x: TensorValue) -> bool:
    """Whether the value ``node`` pools is used by nothing else (size queries aside), back to the
    fx node ``x`` was made for."""
    def users(n):
        return [u for u in n.users if not (u.target in ("size", "dim") or u.target is getattr)]

    inputs = node.all_input_nodes
    n = inputs[0] if inputs else None
    while n is not None:
        if len(users(n)) != 1:
            return False
        if n is x.source:
            return True
        inputs = n.all_input_nodes
        n = inputs[0] if len(inputs) == 1 else None
    return False


def record_pool(ctx, node, x: TensorValue, kind: Pool, args: dict[str, float], own_neurons: bool = False,
                in_place: bool = False) -> TensorValue:
    """Record pooling ``kind`` on ``x``'s neurons, or on fresh tied POOL neurons if the unpooled value
    is used elsewhere too or ``own_neurons`` (one of several picks of one value); ``in_place``: on
    ``x``'s neurons whatever their uses (a second record of one op on the neurons the first made)."""
    builder = ctx.builder
    if not in_place and (own_neurons or not _sole_use(node, x) or builder.read_inside(x.nodes)):
        out = builder.tied_copies(x.nodes, NodeKind.POOL, layer=builder.node_layer(x.nodes) + 1)
        builder.add_edges(x.nodes, out, EdgeType.POOL, identity=True)
        x = x.with_(nodes=out, source=node)
    try:
        builder.add_pool(x.nodes, kind, args)
    except ValueError as error:
        raise UnsupportedError(f"{describe(node)}: {error}; nngraph records at most that many") from None
    return x


def pool_channels(ctx, node, x, dims: int, kind: Pool = Pool.NONE, params: dict | None = None,
                  family: str = "") -> TensorValue:
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
    if kind != Pool.NONE:
        x = record_pool(ctx, node, x, kind, pool_args(family, dims, params, x.shape))
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
    family, dims = _MODULES[type(module)]
    kind, names = _FAMILIES[family]
    params = {n: getattr(module, n) for n in names if hasattr(module, n)}
    return pool_channels(ctx, node, x, dims, kind, params, family)


def _pool_function(ctx, node, x, *args, **kwargs) -> TensorValue:
    family, dims = _FUNCTIONS[node.target]
    kind, names = _FAMILIES[family]
    if len(args) > len(names) or set(kwargs) - set(names):
        raise UnsupportedError(f"{describe(node)}: arguments {args}, {kwargs} do not match {names}")
    params = {**dict(zip(names, args)), **kwargs}
    _refuse_indices(node, params.get("return_indices", False) is True)
    return pool_channels(ctx, node, x, dims, kind, params, family)


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
    if x.heads and x.head_axis in dims:
        raise UnsupportedError(
            f"{describe(node)} computes {op} over dimension {x.head_axis}, which holds {x.heads} groups of different "
            "neurons (attention heads, or the layers and directions of a recurrent h_n); that mixes neurons"
        )
    if x.spatial:
        raise UnsupportedError(f"{describe(node)} reduces a flattened tensor (neurons spanning positions {x.spatial})")
    args = {}
    for d in dims:  # after the neuron axis: kernel columns, before it: stride columns, right-aligned
        column = 3 - (ndim - d) if d > x.axis else 3 - (x.axis - d)
        if column < 0:
            raise UnsupportedError(f"{describe(node)} reduces dimension {d}, more than 3 away from the neuron axis")
        args[f"{'kernel' if d > x.axis else 'stride'}_{'dhw'[column]}"] = 1.0
    x = record_pool(ctx, node, x, _REDUCTIONS[op], args)
    axis = x.axis if keepdim else x.axis - sum(1 for d in dims if d < x.axis)
    return x.with_(shape=ctx.shape_of(node), axis=axis)


def _reduction(ctx, node, x, dim=None, keepdim=False, *args, **kwargs) -> TensorValue:
    return reduce_spatial(ctx, node, x, kwargs.get("axis", dim), keepdim)


register_function(*_REDUCTIONS, *(getattr(torch, r) for r in _REDUCTIONS), passthrough=True)(_reduction)
