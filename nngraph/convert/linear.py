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


class TransposedLinear(nn.Module):
    """``y = x @ weight + bias`` with ``weight`` of shape ``(in_features, out_features)``: Hugging Face's
    ``Conv1D`` (GPT-2), which torch.export shows as ``addmm(bias, x, weight)``. The export path uses it
    as a stand-in on the meta device; its weight is placed transposed, so the graph is a Linear's."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, device=device)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.reshape(-1, self.in_features) @ self.weight
        out = out if self.bias is None else out + self.bias
        return out.view(*x.shape[:-1], self.out_features)


def dense_layer(
    builder,
    name: str,
    module: nn.Linear,
    in_nodes: torch.Tensor,
    spatial: tuple[int, ...] = (),
    kind: NodeKind = NodeKind.LINEAR,
    transposed: bool = False,
) -> torch.Tensor:
    """Linear layer ``name`` reading neurons ``in_nodes`` ``(n_in,)``, each spanning ``spatial``
    positions (after a flatten); returns the new output nodes ``(n_out,)``. ``transposed``: the
    weight is stored ``(in, out)`` (:class:`TransposedLinear`)."""
    per_neuron = 1
    for s in spatial:
        per_neuron *= s
    n_in, n_out = in_nodes.numel(), module.out_features
    if n_in * per_neuron != module.in_features:
        raise ValueError(
            f"{name}: {n_in} input neurons x {per_neuron} positions do not match in_features={module.in_features}"
        )
    out = builder.add_nodes(n_out, kind, layer=builder.node_layer(in_nodes) + 1)
    if per_neuron == 1:  # edges in the weight's memory order, so that to_graph copies it straight:
        # weight[o, c] -> edge o * n_in + c; a transposed weight[c, o] -> edge c * n_out + o (sources major)
        builder.place_edge_param(f"{name}.weight", builder.add_grid(in_nodes, out, EdgeType.WEIGHT,
                                                                    src_major=transposed))
    else:  # after a flatten: weight[o, c * P + p] -> edge o * n_in + c, kernel position p
        kernel_shape = _kernel_shape(spatial)
        start, _, _ = builder.add_grid(in_nodes, out, EdgeType.WEIGHT, kernel_shape=kernel_shape)
        edges = torch.arange(start, start + n_out * n_in).view(n_out, n_in, 1)  # (out, in, 1)
        edge_of_entry = edges.expand(n_out, n_in, per_neuron).reshape(n_out, -1)  # (out, in * P)
        position = torch.arange(per_neuron).repeat(n_in).view(1, -1)  # (1, in * P)
        if transposed:
            edge_of_entry, position = edge_of_entry.t(), position.t()  # (in * P, out), as the weight is stored
        builder.place_edge_param(f"{name}.weight", edge_of_entry, position, kernel_shape)
    if module.bias is not None:
        builder.place_node_param(f"{name}.bias", out, BIAS)
    builder.record_module_nodes(name, out)
    return out


@register_module(nn.Linear)
def convert_linear(ctx, node, x, *args, **kwargs) -> TensorValue:
    x = ctx.neurons(x, -1, node) if x.nodes is None or not x.spatial else x
    out = dense_layer(ctx.builder, node.target, ctx.module_of(node), x.nodes, x.spatial)
    shape = ctx.shape_of(node)
    return TensorValue(nodes=out, shape=shape, axis=len(shape) - 1, source=node)


@register_module(TransposedLinear)
def convert_transposed_linear(ctx, node, x, *args, **kwargs) -> TensorValue:
    x = ctx.neurons(x, -1, node)
    out = dense_layer(ctx.builder, node.target, ctx.module_of(node), x.nodes, transposed=True)
    shape = ctx.shape_of(node)
    return TensorValue(nodes=out, shape=shape, axis=len(shape) - 1, source=node)
