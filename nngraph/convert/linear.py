"""nn.Linear: one edge per weight; after a flatten, one edge per (channel, output) carrying the
channel's spatial map of weights as its kernel."""
from __future__ import annotations

import torch
from torch import nn

from ..schema import BIAS, EdgeType, NodeKind
from .registry import register_module
from .values import TensorValue


def _kernel_shape(spatial: tuple[int, ...]) -> tuple[int, int, int]:
    """Pad a 0-3 dimensional spatial extent to ``(depth, height, width)``."""
    if len(spatial) > 3:
        raise ValueError(f"spatial extent {spatial} has more than 3 dimensions")
    return tuple([1] * (3 - len(spatial)) + list(spatial))  # type: ignore[return-value]


@register_module(nn.Linear)
def convert_linear(ctx, node, x, *args, **kwargs) -> TensorValue:
    module: nn.Linear = ctx.module_of(node)
    name = node.target
    x = ctx.neurons(x, -1, node) if x.nodes is None or not x.spatial else x
    builder = ctx.builder
    per_neuron = 1
    for s in x.spatial:
        per_neuron *= s
    if x.num_neurons * per_neuron != module.in_features:
        raise ValueError(
            f"{x.num_neurons} input neurons x {per_neuron} positions do not match in_features={module.in_features}"
        )
    out = builder.add_nodes(module.out_features, NodeKind.LINEAR, layer=builder.node_layer(x.nodes) + 1)
    n_in, n_out = x.num_neurons, module.out_features
    # edge e = o * n_in + c connects input neuron c to output neuron o
    src = x.nodes.repeat(n_out)  # (n_out * n_in,)
    dst = out.repeat_interleave(n_in)  # (n_out * n_in,)
    kernel_shape = _kernel_shape(x.spatial) if per_neuron > 1 else (1, 1, 1)
    edges = builder.add_edges(src, dst, EdgeType.WEIGHT, kernel_shape=kernel_shape)
    # weight[o, c * P + p] -> edge o * n_in + c, kernel position p
    edge_of_entry = edges.view(n_out, n_in, 1).expand(n_out, n_in, per_neuron).reshape(n_out, -1)  # (out, in)
    position = torch.arange(per_neuron).repeat(n_in).view(1, -1)  # (1, in)
    builder.place_edge_param(f"{name}.weight", edge_of_entry, position, kernel_shape)
    if module.bias is not None:
        builder.place_node_param(f"{name}.bias", out, BIAS)
    builder.record_module_nodes(name, out)
    shape = ctx.shape_of(node)
    return TensorValue(nodes=out, shape=shape, axis=len(shape) - 1, source=node)
