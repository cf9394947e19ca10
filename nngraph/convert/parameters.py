"""Parameters read as data in ``forward``, combined with an activation: a positional embedding
added (``x + pos``), a layer scale (``gamma * x``), a class token concatenated along positions
(``cat([cls, x], 1)``).

The entries of such a parameter are tabulated per neuron: broadcast to the activation's shape,
every position shows one row of entries across the neurons. The ``Q`` distinct rows become ``Q``
input nodes (:attr:`NodeKind.TOKEN`, fixed, like the positions of an embedding table), and entry
``(q, c)`` the WEIGHT edge from token ``q`` to neuron ``c``:

- ``x + p``: the tokens feed ``C`` new EMBEDDING neurons, summed with ``x`` as a residual sum (a
  learned positional embedding is an embedding of the positions);
- ``p * x`` with one row (``Q == 1``): ``C`` new :attr:`NodeKind.SCALE` neurons, WEIGHT edge
  ``x_c -> out_c`` carrying ``p[c]`` (a diagonal linear layer);
- ``cat([... x ..., ... p ...], dim)`` along a position axis: ``C`` new :attr:`NodeKind.CONCAT`
  neurons with an identity CONCAT edge from every activation operand's neuron and WEIGHT edges from
  every parameter operand's tokens.

Every parameter entry must land on exactly one edge (no entry shared by two neurons), otherwise the
op is refused; the neurons keep their permutation symmetry because each one's entries move with it.
"""
from __future__ import annotations

import operator

import torch

from ..schema import EdgeType, NodeKind, NodeType
from .errors import UnsupportedError
from .registry import register_function
from .structural import residual_sum
from .values import ParamValue, TensorValue
from .walk import describe

aten = torch.ops.aten


def _activation(node, x) -> TensorValue:
    if not isinstance(x, TensorValue) or x.nodes is None or x.heads or x.spatial:
        raise UnsupportedError(
            f"{describe(node)} combines a parameter with {'a model input' if isinstance(x, TensorValue) else x!r}; "
            "nngraph follows parameters combined with activations whose neurons lie on one axis"
        )
    return x


def entry_table(node, x: TensorValue, p: ParamValue, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """``(Q, C)`` flat parameter entries: row ``q`` is what one position of ``x`` shows across its
    ``C`` neurons. Refuses unless every entry of the parameter appears exactly once."""
    shape = tuple(x.shape) if shape is None else shape
    try:
        entries = torch.broadcast_to(p.entries, shape)
    except RuntimeError as error:
        raise UnsupportedError(f"{describe(node)}: parameter {p.name!r} of shape {tuple(p.entries.shape)} does not "
                               f"broadcast to the activation's {shape}") from error
    rows = entries.movedim(x.axis, -1).reshape(-1, shape[x.axis])  # (positions, C)
    table = torch.unique(rows, dim=0)  # (Q, C)
    numel = 1
    for s in p.shape:
        numel *= s
    if table.numel() != numel or torch.unique(table).numel() != numel:
        raise UnsupportedError(
            f"{describe(node)} uses parameter {p.name!r} so that one entry serves several neurons (or a "
            "neuron's entries vary along positions in a way rows do not capture); each entry must belong "
            "to one neuron"
        )
    return table


def place_tokens(builder, name: str, param_shape: tuple[int, ...], table: torch.Tensor,
                 targets: torch.Tensor) -> None:
    """``Q`` token input nodes with WEIGHT edges ``q -> targets[c]`` carrying entry ``table[q, c]``."""
    q, c = table.shape
    tokens = builder.add_nodes(q, NodeKind.TOKEN, layer=0, node_type=NodeType.INPUT)
    edges = builder.add_edges(tokens.repeat_interleave(c), targets.repeat(q), EdgeType.WEIGHT)
    edge_of_entry = torch.empty(table.numel(), dtype=torch.long)
    edge_of_entry[table.reshape(-1)] = edges
    builder.place_edge_param(name, edge_of_entry.view(param_shape))


def add_parameter(ctx, node, x, p: ParamValue) -> TensorValue:
    """``x + p``: an embedding of the positions, summed with ``x``."""
    x = _activation(node, x)
    shape = ctx.shape_of(node) or tuple(x.shape)
    table = entry_table(node, x, p, shape)
    builder = ctx.builder
    emb = builder.add_nodes(x.num_neurons, NodeKind.EMBEDDING, layer=1)
    place_tokens(builder, p.name, p.shape, table, emb)
    positions = TensorValue(nodes=emb, shape=tuple(shape), axis=x.axis, source=node)
    return residual_sum(ctx, node, x.with_(shape=tuple(shape)), positions)


def scale_by_parameter(ctx, node, x, p: ParamValue) -> TensorValue:
    """``p * x`` with one value per neuron: a diagonal linear layer."""
    x = _activation(node, x)
    table = entry_table(node, x, p, ctx.shape_of(node))
    if table.shape[0] != 1:
        raise UnsupportedError(f"{describe(node)} scales neurons by parameter {p.name!r} differently at "
                               "different positions; only one scale per neuron is supported")
    builder = ctx.builder
    out = builder.add_nodes(x.num_neurons, NodeKind.SCALE, layer=builder.node_layer(x.nodes) + 1)
    edges = builder.add_edges(x.nodes, out, EdgeType.WEIGHT)
    edge_of_entry = torch.empty(table.numel(), dtype=torch.long)
    edge_of_entry[table.reshape(-1)] = edges
    builder.place_edge_param(p.name, edge_of_entry.view(p.shape))
    builder.tie(x.nodes, out)
    return x.with_(nodes=out, shape=ctx.shape_of(node), source=node)


@register_function(operator.mul, torch.mul, "mul", aten.mul.Tensor)
def _mul(ctx, node, a, b, **kwargs):
    if isinstance(a, ParamValue) and isinstance(b, TensorValue):
        a, b = b, a
    if isinstance(a, TensorValue) and isinstance(b, ParamValue):
        return scale_by_parameter(ctx, node, a, b)
    raise UnsupportedError(
        f"{describe(node)} multiplies {type(a).__name__} by {type(b).__name__}; nngraph supports an activation "
        "times a per-neuron parameter (layer scale). Products of activations (gating) are not supported yet."
    )


@register_function(torch.cat, torch.concat, aten.cat.default)
def _cat(ctx, node, tensors, dim=0, **kwargs):
    """Concatenation along a position axis of activations with the same neurons and parameters."""
    dim = kwargs.get("dim", dim)
    shape = ctx.shape_of(node)
    acts = [t for t in tensors if isinstance(t, TensorValue)]
    if not acts or any(not isinstance(t, (TensorValue, ParamValue)) for t in tensors):
        raise UnsupportedError(f"{describe(node)} concatenates {[type(t).__name__ for t in tensors]}; nngraph "
                               "needs activations (and parameters) only")
    first = _activation(node, acts[0])
    axis = dim % len(shape)
    if axis == first.axis:
        raise UnsupportedError(f"{describe(node)} concatenates along the neuron axis; joining activation "
                               "spaces is not supported yet")
    builder = ctx.builder
    count = first.num_neurons
    out = builder.add_nodes(count, NodeKind.CONCAT,
                            layer=max(builder.node_layer(_activation(node, t).nodes) for t in acts) + 1)
    seen = []
    for t in tensors:
        if isinstance(t, TensorValue):
            if t.num_neurons != count or t.axis - len(t.shape) != first.axis - len(first.shape):
                raise UnsupportedError(f"{describe(node)} concatenates tensors with different neurons or axes")
            if any(torch.equal(t.nodes, s) for s in seen):
                raise UnsupportedError(f"{describe(node)} concatenates a value with itself")
            seen.append(t.nodes)
            builder.add_edges(t.nodes, out, EdgeType.CONCAT, identity=True)
            builder.tie(t.nodes, out)
        else:
            piece = list(shape)
            piece[axis] = t.entries.shape[axis] if t.entries.dim() == len(shape) else 1
            table = entry_table(node, first, t, tuple(piece))
            place_tokens(builder, t.name, t.shape, table, out)
    return TensorValue(nodes=out, shape=shape, axis=first.axis, source=node)
