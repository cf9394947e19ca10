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
from .errors import UnsupportedError, describe
from .registry import register_function
from .residual import residual_sum
from .values import Opaque, ParamValue, TensorValue

aten = torch.ops.aten


def _activation(node, x) -> TensorValue:
    if not isinstance(x, TensorValue) or x.nodes is None or x.heads or x.spatial:
        raise UnsupportedError(
            f"{describe(node)} combines a parameter with {'a model input' if isinstance(x, TensorValue) else x!r}; "
            "nngraph follows parameters combined with activations whose neurons lie on one axis (a constant added "
            "to a parameter, such as a shifted-window attention mask added to a position bias, is not followed)"
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


def scale_by_constant(ctx, node, x, factor: float) -> TensorValue:
    """``factor * x``: new neurons with one SCALE edge each carrying ``factor`` (1 is a no-op)."""
    x = _activation(node, x) if not (isinstance(x, TensorValue) and x.heads) else x
    if factor == 1.0:
        return x.with_(shape=ctx.shape_of(node), source=node)
    builder = ctx.builder
    out = builder.add_nodes(x.num_neurons, NodeKind.CONSTANT_SCALE, layer=builder.node_layer(x.nodes) + 1)
    builder.add_edges(x.nodes, out, EdgeType.SCALE, constant=factor)
    builder.tie(x.nodes, out)
    return x.with_(nodes=out, shape=ctx.shape_of(node), source=node)


def product(ctx, node, a: TensorValue, b: TensorValue) -> TensorValue:
    """``a * b`` of two activations with their neurons on the same axis (broadcasting positions:
    squeeze-excitation's ``x * s``, GLU, SwiGLU): new PRODUCT neurons with a FACTOR edge from each
    operand's neuron; one permutation acts on all three, as for a sum."""
    a, b = _activation(node, a), _activation(node, b)
    if a.num_neurons != b.num_neurons or a.axis - len(a.shape) != b.axis - len(b.shape):
        raise UnsupportedError(
            f"{describe(node)} multiplies a tensor of shape {tuple(a.shape)} (neurons on axis {a.axis}) with one of "
            f"shape {tuple(b.shape)} (neurons on axis {b.axis}); a product needs the same neurons on the same axis"
        )
    if torch.equal(a.nodes, b.nodes):
        raise UnsupportedError(f"{describe(node)} multiplies a value by itself (x * x); write x ** 2 as an "
                               "activation nngraph knows, or refuse")
    builder = ctx.builder
    layer = max(builder.node_layer(a.nodes), builder.node_layer(b.nodes)) + 1
    out = builder.add_nodes(a.num_neurons, NodeKind.PRODUCT, layer=layer)
    builder.add_edges(torch.cat([a.nodes, b.nodes]), torch.cat([out, out]), EdgeType.FACTOR, identity=True)
    builder.tie(a.nodes, out)
    builder.tie(b.nodes, out)
    shape = ctx.shape_of(node)
    return TensorValue(nodes=out, shape=shape, axis=(a.axis - len(a.shape)) % len(shape), source=node)


def modulate(ctx, node, x: TensorValue) -> TensorValue:
    """``x * c`` with ``c`` a constant tensor computed in forward (rotary embeddings' cos and sin):
    new MODULATED neurons with a MODULATE edge each, tied to ``x`` and fixed. ``c`` may vary along
    the neurons, which breaks their permutation symmetry, and is not in the graph."""
    if not isinstance(x, TensorValue) or x.nodes is None or x.spatial:
        raise UnsupportedError(f"{describe(node)} multiplies a constant by {x!r}")
    builder = ctx.builder
    out = builder.add_nodes(x.num_neurons, NodeKind.MODULATED, layer=builder.node_layer(x.nodes) + 1)
    builder.add_edges(x.nodes, out, EdgeType.MODULATE, identity=True)
    builder.fix(x.nodes)
    builder.fix(out)
    return x.with_(nodes=out, shape=ctx.shape_of(node), source=node)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@register_function(operator.mul, torch.mul, "mul", aten.mul.Tensor, aten.mul.Scalar)
def _mul(ctx, node, a, b, **kwargs):
    if isinstance(a, ParamValue) and isinstance(b, TensorValue) or (_number(a) and isinstance(b, TensorValue)):
        a, b = b, a
    if isinstance(a, TensorValue) and isinstance(b, ParamValue):
        return scale_by_parameter(ctx, node, a, b)
    if isinstance(a, TensorValue) and _number(b):
        return scale_by_constant(ctx, node, a, float(b))
    if isinstance(a, TensorValue) and isinstance(b, TensorValue):
        return product(ctx, node, a, b)
    if isinstance(a, Opaque) and isinstance(b, TensorValue):
        a, b = b, a
    if isinstance(a, TensorValue) and isinstance(b, Opaque) and isinstance(b.value, torch.Tensor) \
            and b.value.numel() == 1 and b.value.is_floating_point():
        return scale_by_constant(ctx, node, a, float(b.value))  # a constant of one entry (Gemma's embed_scale)
    if isinstance(a, TensorValue) and isinstance(b, Opaque) and not b.from_activations:
        return modulate(ctx, node, a)
    raise UnsupportedError(
        f"{describe(node)} multiplies {type(a).__name__} by {type(b).__name__}; nngraph supports products of "
        "activations, an activation times a number, and an activation times a per-neuron parameter"
    )


@register_function(operator.truediv, torch.div, "div", aten.div.Tensor, aten.div.Scalar)
def _div(ctx, node, a, b, **kwargs):
    if isinstance(a, TensorValue) and _number(b) and b != 0 and kwargs.get("rounding_mode") is None:
        return scale_by_constant(ctx, node, a, 1.0 / float(b))
    raise UnsupportedError(f"{describe(node)} divides {type(a).__name__} by {type(b).__name__}; only division of "
                           "an activation by a number is supported")


@register_function(operator.neg, torch.neg, "neg", aten.neg.default)
def _neg(ctx, node, x, **kwargs):
    return scale_by_constant(ctx, node, x, -1.0)


@register_function(operator.sub, torch.sub, "sub", aten.sub.Tensor)
def _sub(ctx, node, a, b, alpha=1, **kwargs):
    if isinstance(a, TensorValue) and isinstance(b, TensorValue) and alpha == 1:
        return residual_sum(ctx, node, a, b, sign=-1.0)
    raise UnsupportedError(f"{describe(node)} subtracts {type(b).__name__} from {type(a).__name__}; only the "
                           "difference of two activations is supported")


@register_function(torch.cat, torch.concat, aten.cat.default)
def _cat(ctx, node, tensors, dim=0, **kwargs):
    """Concatenation along a position axis of activations with the same neurons and parameters."""
    dim = kwargs.get("dim", dim)
    shape = ctx.shape_of(node)
    acts = [t for t in tensors if isinstance(t, TensorValue)]
    if not acts or any(not isinstance(t, (TensorValue, ParamValue)) for t in tensors):
        raise UnsupportedError(f"{describe(node)} concatenates {[type(t).__name__ for t in tensors]}; nngraph "
                               "needs activations (and parameters) only")
    axis = dim % len(shape)
    if all(isinstance(t, TensorValue) and t.nodes is not None for t in tensors) and axis == acts[0].axis:
        return _join(ctx, node, tensors, shape)
    first = _activation(node, acts[0])
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


def _join(ctx, node, tensors: list[TensorValue], shape) -> TensorValue:
    if not any(t.heads for t in tensors):
        return _concat_features(ctx, node, tensors, shape)
    return _join_heads(ctx, node, tensors, shape)


def _concat_features(ctx, node, tensors: list[TensorValue], shape) -> TensorValue:
    """``cat`` of activations along the neuron axis (DenseNet, Swin's patch merging): a block of new
    CONCAT neurons per operand, each with an identity CONCAT edge from its operand neuron and tied to
    it, so every operand keeps its own symmetry (the same value twice gives two blocks, as Swin's four
    position offsets do). Which block came first needs no record: the order of the neurons along an axis
    is a labelling, and everything that reads the joined neurons shows it (the next layer's weights sit
    on the edges from each block, an output's ``io_position``, a split's or a head view's chunks), so
    ``cat([a, b])`` and ``cat([b, a])`` under the same weights give different graphs (tested in
    ``tests/convert/test_positions.py``)."""
    first = tensors[0]
    if any(t.axis - len(t.shape) != first.axis - len(first.shape) or t.spatial for t in tensors):
        raise UnsupportedError(f"{describe(node)} joins activations whose neurons lie on different axes")
    builder = ctx.builder
    blocks = []
    for t in tensors:
        out = builder.add_nodes(t.num_neurons, NodeKind.CONCAT, layer=builder.node_layer(t.nodes) + 1)
        builder.add_edges(t.nodes, out, EdgeType.CONCAT, identity=True)
        builder.tie(t.nodes, out)
        blocks.append(out)
    return TensorValue(nodes=torch.cat(blocks), shape=shape, axis=(first.axis - len(first.shape)) % len(shape),
                       source=node)


def _join_heads(ctx, node, tensors: list[TensorValue], shape) -> TensorValue:
    """``cat`` along the neuron axis: the output's neurons are the operands' neurons side by side
    (per head when the operands are split into heads, as rotary's ``rotate_half`` is). Conservative:
    every operand's activation space is fixed."""
    first = tensors[0]
    if any(t.heads != first.heads or t.axis != first.axis or t.head_axis != first.head_axis or t.spatial
           for t in tensors):
        raise UnsupportedError(f"{describe(node)} joins activations with different head splits or axes")
    joined = torch.cat([t.nodes for t in tensors])
    if torch.unique(joined).numel() != joined.numel():
        raise UnsupportedError(f"{describe(node)} concatenates a value with itself along the neuron axis; "
                               "the same neuron at two places would give parallel edges")
    for t in tensors:
        ctx.builder.fix(t.nodes)
    if first.heads:
        tables = [t.nodes.view(first.heads, -1) for t in tensors]  # (H, D_i) each
        nodes = torch.cat(tables, dim=1).reshape(-1)  # (H * sum D_i,)
    else:
        nodes = torch.cat([t.nodes for t in tensors])
    return first.with_(nodes=nodes, shape=shape, source=node)


@register_function(aten.index.Tensor)
def _index(ctx, node, x, indices, **kwargs):
    """A parameter gathered by a constant index table (Swin's relative-position bias): the parameter read
    as data, its entries where the table puts them. Anything else indexed this way is refused."""
    tables = [None if i is None else i.value if isinstance(i, Opaque) else False for i in indices]
    if not isinstance(x, ParamValue) or any(t is False or (t is None and i is not None)
                                            for t, i in zip(tables, indices)):
        raise UnsupportedError(f"{describe(node)} indexes {type(x).__name__} with tensors whose values nngraph "
                               "does not know; only a parameter gathered by a constant index table is supported")
    index = tuple(slice(None) if t is None else t.long() for t in tables)
    return ParamValue(x.name, x.shape, x.entries[index])
