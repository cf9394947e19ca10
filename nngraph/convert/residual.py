"""Residual sums ``a + b`` / ``a - b`` of two activations: new SUM neurons with identity edges from both operands.

A helper, not a converter (it registers nothing): the ``add`` converter (:mod:`~nngraph.convert.structural`), a
parameter added as data (:mod:`~nngraph.convert.parameters`) and attention (:mod:`~nngraph.convert.attention`) all
build their sums with it, so it sits below them.
"""
from __future__ import annotations

import torch

from ..schema import EdgeType, NodeKind
from .errors import UnsupportedError, describe
from .values import TensorValue

__all__ = ["residual_sum"]


def residual_sum(ctx, node, a: TensorValue, b: TensorValue, sign: float = 1.0) -> TensorValue:
    """``a + sign * b``: new SUM neurons with identity edges from both operands (the one from ``b``
    carries ``sign``: -1 for ``a - b``); one permutation acts on all three."""
    if a.nodes is None and b.nodes is None:
        raise UnsupportedError(f"{describe(node)} adds two model inputs; nngraph needs a layer between them")
    if a.nodes is None:
        a = ctx.neurons(a, b.axis - len(b.shape), node)
    if b.nodes is None:
        b = ctx.neurons(b, a.axis - len(a.shape), node)
    if a.nodes.shape == b.nodes.shape and torch.equal(a.nodes, b.nodes):
        raise UnsupportedError(
            f"{describe(node)} adds a value to itself (h + h); nngraph represents a sum by one identity "
            "edge per operand, and two parallel edges between the same neurons cannot be told apart"
        )
    if a.axis - len(a.shape) != b.axis - len(b.shape):
        raise UnsupportedError(
            f"{describe(node)} adds a tensor of shape {tuple(a.shape)} with neurons on axis {a.axis} to one of "
            f"shape {tuple(b.shape)} with neurons on axis {b.axis}: the sum mixes neurons with positions, so "
            "permuting them is not a symmetry. Move the neurons to the same axis before adding."
        )
    if a.num_neurons != b.num_neurons or a.spatial != b.spatial:
        raise UnsupportedError(
            f"{describe(node)} adds tensors with {a.num_neurons} and {b.num_neurons} neurons; a residual sum "
            "needs the same neurons on both sides"
        )
    builder = ctx.builder
    out = builder.tied_copies(a.nodes, NodeKind.SUM, layer=max(builder.node_layer(a.nodes), builder.node_layer(b.nodes)) + 1)
    builder.add_edges(a.nodes, out, EdgeType.RESIDUAL, identity=True)
    builder.add_edges(b.nodes, out, EdgeType.RESIDUAL, constant=sign)  # a - b: the edge from b carries -1
    builder.tie(b.nodes, out)
    shape = ctx.shape_of(node)
    axis = (a.axis - len(a.shape)) % len(shape)
    if a.heads or b.heads:  # a sum of two head-split values (rotary's q * cos + rotate_half(q) * sin)
        if (a.heads, a.head_axis - len(a.shape)) != (b.heads, b.head_axis - len(b.shape)):
            raise UnsupportedError(f"{describe(node)} adds values split into heads differently")
        return TensorValue(nodes=out, shape=shape, axis=axis, heads=a.heads,
                           head_axis=(a.head_axis - len(a.shape)) % len(shape), source=node)
    return TensorValue(nodes=out, shape=shape, axis=axis, spatial=a.spatial, source=node)
