"""Softmax, log-softmax and L2 normalization over the neurons of an activation (a classifier's probabilities or
log-probabilities, a normalised embedding).

``softmax(x, dim)`` over the neuron axis is a function of the whole axis, but an equivariant one:
permuting the neurons of ``x`` permutes the outputs the same way (as a LayerNorm without affine). It is
represented like a normalization: ``C`` new :attr:`~nngraph.schema.NodeKind.SOFTMAX` (or
``LOG_SOFTMAX``) neurons, an identity :attr:`~nngraph.schema.EdgeType.NORM` edge from each input neuron,
tied to it, so every symmetry of ``x`` is one of the output. The node kind says that the value is
normalised over the neurons of its activation space. ``F.normalize(x, 2, dim)`` (``x / max(||x||, eps)``)
is the same kind of function and gets :attr:`~nngraph.schema.NodeKind.L2_NORMALIZED` nodes, for ``p = 2``
and the default ``eps`` only (the kind has no parameters; other ones are refused). Over a position axis (per neuron, across
positions), over neurons split into heads or spread over positions (a flattened feature map), the
op is refused: no node kind says that. Softmax of attention scores is in
:mod:`nngraph.convert.eager_attention`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..schema import EdgeType, NodeKind
from .eager_attention import LOG_SOFTMAX_TARGETS, SOFTMAX_TARGETS
from .errors import UnsupportedError, describe
from .registry import register_function, register_module
from .values import TensorValue


def normalize_over_neurons(ctx, node, x, dim, kind: NodeKind, dtype=None) -> TensorValue:
    """``softmax(x, dim)`` / ``log_softmax(x, dim)`` with ``dim`` the neuron axis of ``x``."""
    if dim is None:
        raise UnsupportedError(f"{describe(node)} applies {kind.name.lower()} without naming the dimension")
    if not isinstance(x, TensorValue):
        raise UnsupportedError(f"{describe(node)} applies {kind.name.lower()} to {type(x).__name__}")
    if x.nodes is None:
        x = ctx.neurons(x, dim, node)  # a model input: its features become input neurons
    axis = int(dim) % len(x.shape)
    if x.heads or x.spatial or axis != x.axis:
        where = ("the positions of a flattened feature map" if x.spatial else f"neurons split into {x.heads} heads"
                 if x.heads else f"axis {axis}, a position axis (the neurons are on axis {x.axis})")
        raise UnsupportedError(
            f"{describe(node)} applies {kind.name.lower()} over {where}; nngraph represents a softmax over "
            "the neuron axis of an activation (or over the key positions of attention scores)"
        )
    if torch.unique(x.nodes).numel() != x.nodes.numel():
        raise UnsupportedError(f"{describe(node)} normalises over an axis that holds one neuron twice")
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise UnsupportedError(f"{describe(node)} computes {kind.name.lower()} in {dtype}")
        ctx.builder.casts.add(dtype)
    builder = ctx.builder
    out = builder.add_nodes(x.num_neurons, kind, layer=builder.node_layer(x.nodes) + 1)
    builder.add_edges(x.nodes, out, EdgeType.NORM, identity=True)
    builder.tie(x.nodes, out)
    return x.with_(nodes=out, shape=ctx.shape_of(node), source=node)


def _dtype(node, args, kwargs):
    if "dtype" in kwargs:
        return kwargs["dtype"]
    if args and node.target in (torch.ops.aten.softmax.int, torch.ops.aten.log_softmax.int):
        return args[0]
    return None


def _converter(kind: NodeKind):
    def convert(ctx, node, x, dim=None, *args, **kwargs):
        if node.op == "call_module":
            dim = ctx.module_of(node).dim
        return normalize_over_neurons(ctx, node, x, kwargs.get("dim", dim), kind, _dtype(node, args, kwargs))

    return convert


register_function(*SOFTMAX_TARGETS[:-1])(_converter(NodeKind.SOFTMAX))
register_function(*LOG_SOFTMAX_TARGETS[:-1])(_converter(NodeKind.LOG_SOFTMAX))
register_module(nn.Softmax)(_converter(NodeKind.SOFTMAX))
register_module(nn.LogSoftmax)(_converter(NodeKind.LOG_SOFTMAX))


@register_function(torch.nn.functional.normalize)
def _normalize(ctx, node, x, p=2.0, dim=1, eps=1e-12, out=None, **kwargs):
    p, dim, eps = kwargs.get("p", p), kwargs.get("dim", dim), kwargs.get("eps", eps)
    if float(p) != 2.0 or float(eps) != 1e-12 or out is not None:
        raise UnsupportedError(f"{describe(node)} normalises with p={p}, eps={eps}; nngraph represents F.normalize "
                               "with p=2 and the default eps=1e-12")
    return normalize_over_neurons(ctx, node, x, dim, NodeKind.L2_NORMALIZED)
