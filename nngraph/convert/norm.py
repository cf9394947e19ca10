"""Normalization layers: BatchNorm1d/2d/3d, LayerNorm (last dimension) and GroupNorm.

A normalization makes a **new** node (:attr:`NodeKind.NORM`) for each of its output neurons, with
one identity :attr:`EdgeType.NORM` edge from each input neuron to its normalized neuron; input and
output neurons are tied (one permutation acts on both). The per-neuron parameters are node features
of the output neuron, stored raw so that the round trip is exact:

=====================  ==================
parameter / buffer     column of ``x``
=====================  ==================
``weight`` (γ)         ``NORM_WEIGHT``
``bias`` (β)           ``NORM_BIAS``
``running_mean``       ``RUNNING_MEAN``
``running_var``        ``RUNNING_VAR``
=====================  ==================

``affine=False`` / ``track_running_stats=False`` just leave the columns at zero. Per-neuron
statistics (BatchNorm) and statistics over all neurons (LayerNorm) commute with any permutation of
the neurons. GroupNorm computes statistics over contiguous groups of ``C // G`` channels, so it adds
one :attr:`NodeKind.GROUP` node per group with :attr:`EdgeType.GROUP_MEMBER` edges to the group's
output channels, and restricts the symmetries of the channels to permutations that keep the groups
together (the group nodes move with their group).
"""
from __future__ import annotations

import torch
from torch import nn

from ..schema import NORM_BIAS, NORM_WEIGHT, RUNNING_MEAN, RUNNING_VAR, EdgeType, NodeKind
from .errors import UnsupportedError, describe
from .registry import register_module
from .values import TensorValue


#: ``op_code`` category of RMSNorm neurons whose weight is read with an offset (``1 + weight``), column 1 the offset
#: in millionths (schema: ``op_code``)
_OFFSET_CATEGORY = 1


def normalize_nodes(builder, module: nn.Module, name: str, in_nodes: torch.Tensor,
                    kind: NodeKind = NodeKind.NORM) -> torch.Tensor:
    """Add the NORM (or ``kind``) output neurons of normalization ``module`` (parameters named
    ``name.*``) reading ``in_nodes`` ``(C,)``; returns their ids ``(C,)``. Also used by the
    transformer converter."""
    count = in_nodes.numel()
    out = builder.add_nodes(count, kind, layer=builder.node_layer(in_nodes) + 1)
    builder.add_edges(in_nodes, out, EdgeType.NORM, identity=True)
    builder.tie(in_nodes, out)
    eps = getattr(module, "eps", None)  # RMSNorm's None: the epsilon of the input's dtype
    builder.set_norm_eps(out, torch.finfo(torch.float32).eps if eps is None else eps)
    for attr, column in (("weight", NORM_WEIGHT), ("bias", NORM_BIAS),
                         ("running_mean", RUNNING_MEAN), ("running_var", RUNNING_VAR)):
        if getattr(module, attr, None) is not None:
            builder.place_node_param(f"{name}.{attr}", out, column)
    return out


def _no_spatial(node, x: TensorValue) -> None:
    if x.spatial:
        raise UnsupportedError(
            f"{describe(node)} normalizes a flattened feature map (every neuron spans positions "
            f"{x.spatial}), so its parameters are per position, not per neuron; normalize before the flatten"
        )


@register_module(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def convert_batch_norm(ctx, node, x, *args, **kwargs) -> TensorValue:
    """Channels are axis 1 of ``(B, C)``, ``(B, C, L)``, ``(B, C, H, W)`` or ``(B, C, D, H, W)``."""
    _no_spatial(node, x)
    x = ctx.neurons(x, 1, node)
    out = normalize_nodes(ctx.builder, ctx.module_of(node), node.target, x.nodes)
    ctx.builder.record_module_nodes(node.target, out)
    return x.with_(nodes=out, shape=ctx.shape_of(node), source=node)


@register_module(nn.LayerNorm)
def convert_layer_norm(ctx, node, x, *args, **kwargs) -> TensorValue:
    """Statistics over the last dimension, whose entries are the neurons."""
    module: nn.LayerNorm = ctx.module_of(node)
    if len(module.normalized_shape) != 1:
        raise UnsupportedError(
            f"{describe(node)} normalizes over the last {len(module.normalized_shape)} dimensions "
            f"(normalized_shape={tuple(module.normalized_shape)}); nngraph supports LayerNorm over the "
            "last dimension only, where every entry is one neuron. Reshape so that the features are the last axis."
        )
    _no_spatial(node, x)
    x = ctx.neurons(x, -1, node)
    out = normalize_nodes(ctx.builder, module, node.target, x.nodes)
    ctx.builder.record_module_nodes(node.target, out)
    return x.with_(nodes=out, shape=ctx.shape_of(node), source=node)


@register_module(nn.GroupNorm)
def convert_group_norm(ctx, node, x, *args, **kwargs) -> TensorValue:
    """Channels are axis 1; one GROUP node per group, permutations keep groups together."""
    module: nn.GroupNorm = ctx.module_of(node)
    _no_spatial(node, x)
    x = ctx.neurons(x, 1, node)
    builder = ctx.builder
    out = normalize_nodes(builder, module, node.target, x.nodes)
    groups, size = module.num_groups, module.num_channels // module.num_groups
    group_nodes = builder.add_nodes(groups, NodeKind.GROUP, layer=builder.node_layer(out))
    # channel c belongs to group c // size
    builder.add_edges(group_nodes.repeat_interleave(size), out, EdgeType.GROUP_MEMBER, identity=True)
    builder.constrain_blocks(out, size, satellites=group_nodes)
    builder.record_module_nodes(node.target, out)
    builder.record_module_nodes(f"{node.target}.groups", group_nodes)
    return x.with_(nodes=out, shape=ctx.shape_of(node), source=node)


@register_module(nn.RMSNorm)
def convert_rms_norm(ctx, node, x, *args, **kwargs) -> TensorValue:
    """``x / rms(x) * weight`` over the last dimension (LLaMA, T5): :attr:`NodeKind.RMS_NORM` neurons,
    the weight in ``NORM_WEIGHT``."""
    module: nn.RMSNorm = ctx.module_of(node)
    if len(module.normalized_shape) != 1:
        raise UnsupportedError(f"{describe(node)} normalizes over {len(module.normalized_shape)} dimensions; "
                               "nngraph supports the last dimension only")
    _no_spatial(node, x)
    x = ctx.neurons(x, -1, node)
    out = normalize_nodes(ctx.builder, module, node.target, x.nodes, kind=NodeKind.RMS_NORM)
    offset = getattr(module, "weight_offset", 0.0)
    if offset:  # (offset + weight) * x / rms(x) (Gemma): another function than weight * x / rms(x)
        ctx.builder.set_op_code(out, (_OFFSET_CATEGORY, int(round(offset * 1e6)) & ((1 << 62) - 1)))
    ctx.builder.record_module_nodes(node.target, out)
    return x.with_(nodes=out, shape=ctx.shape_of(node), source=node)
