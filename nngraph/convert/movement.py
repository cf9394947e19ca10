"""Operations that only move entries of an activation: transpose, permute, view / reshape, flatten,
unflatten, (un)squeeze, expand, select, slice, flip, roll.

Each is converted by running it on two small integer "label" tensors of the value's shape: one holding
every entry's neuron index, one its position (flat index over the other axes). The result tells where
the neurons went:

- on one axis, all of them (maybe reordered: a flip of the feature axis is a relabelling, nothing
  more): a value with its neurons on that axis;
- split over two axes as ``h * D + d`` (a ``(B, T, E)`` tensor viewed as ``(B, T, H, E // H)``): a
  value whose neurons are split into ``H`` heads, which attention reads;
- on one axis, some of them (a slice of the feature axis), or some of every head: the selected
  neurons, and every activation space the selection cuts is marked fixed (no permutation may move
  neurons into or out of the selection); spaces selected whole (one layer's final state out of a
  recurrent stack's ``h_n``, one direction of a bidirectional output) keep their symmetry;
- heads repeated (grouped-query attention's ``repeat_kv``): a head-split value that lists each
  key / value neuron once per query head reading it, for attention to consume;
- cut into equal chunks of the feature axis stacked along a new axis (a fused ``qkv`` projection
  viewed as ``(B, T, 3, H, D)``): a :class:`~nngraph.convert.values.StackedValue` whose chunks are
  activation spaces of their own (as after ``split``), picked by ``unbind`` or indexing;
- mixed with positions (``(B, C, H, W) -> (B, C * H * W)``): the flatten of
  :func:`~nngraph.convert.flatten.flatten_channels`, which gives each neuron its spatial map.

Anything else (neurons spread over positions in another way) is refused by name. Positions never
matter to a permutation of neurons, so every accepted case is function-preserving by construction.
"""
from __future__ import annotations

import torch

from .errors import UnsupportedError, describe
from .positions import (dropped_positions, flip_record, record_positions, reorder_record, roll_record, select_record,
                        slice_record)
from .registry import accept_merged_heads, register_function
from .flatten import flatten_channels
from .values import Opaque, ParamValue, StackedValue, TensorValue

aten = torch.ops.aten


def neuron_labels(x: TensorValue) -> tuple[torch.Tensor, torch.Tensor]:
    """``(neuron, position)`` long tensors of ``x.shape``: the index into ``x.nodes`` of every entry,
    and the flat index of its coordinates on the other axes."""
    shape = tuple(x.shape)
    ndim = len(shape)

    def along(axis: int, size: int) -> torch.Tensor:
        view = [1] * ndim
        view[axis] = size
        return torch.arange(size).view(view)

    if x.heads:
        per_head = shape[x.axis]
        entry = along(x.head_axis, shape[x.head_axis])  # merged heads: entry i is head i % H of batch i // H
        neuron = (entry % x.heads) * per_head + along(x.axis, per_head)
        neuron_axes = {x.head_axis, x.axis}
    else:
        neuron = along(x.axis, shape[x.axis])
        neuron_axes = {x.axis}
    others = [k for k in range(ndim) if k not in neuron_axes]
    position_shape = [1 if k in neuron_axes else shape[k] for k in range(ndim)]
    size = 1
    for k in others:
        size *= shape[k]
    position = torch.arange(size).view(position_shape)
    if x.heads and x.merged > 1:  # the batch entries merged into the head axis are positions too
        position = position * x.merged + entry // x.heads
    return neuron.expand(shape).contiguous(), position.expand(shape).contiguous()


def _only_along(t: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor | None:
    """``t`` restricted to ``axes`` (index 0 elsewhere) if ``t`` depends on those axes only."""
    index = tuple(slice(None) if k in axes else slice(0, 1) for k in range(t.dim()))
    part = t[index]
    return part if torch.equal(part.expand_as(t), t) else None


def _independent_of(t: torch.Tensor, axes: tuple[int, ...]) -> bool:
    index = tuple(slice(0, 1) if k in axes else slice(None) for k in range(t.dim()))
    return torch.equal(t[index].expand_as(t), t)


def locate_neurons(ctx, node, x: TensorValue, neuron: torch.Tensor, position: torch.Tensor) -> TensorValue | None:
    """The value an op produced from ``x``, given the op applied to ``x``'s label tensors; ``None``
    if the neurons are mixed with positions."""
    count = x.num_neurons
    shape = tuple(neuron.shape)
    for k in range(neuron.dim()):
        line = _only_along(neuron, (k,))
        if line is None or not _independent_of(position, (k,)):
            continue
        line = line.reshape(-1)
        if line.numel() == count and torch.equal(torch.sort(line).values, torch.arange(count)):
            return TensorValue(nodes=x.nodes[line], shape=shape, axis=k, source=node)
        if line.numel() == torch.unique(line).numel():  # a selection of neurons
            ctx.builder.fix_partial_rows(x.nodes[line])
            return TensorValue(nodes=x.nodes[line], shape=shape, axis=k, source=node)
    for h in range(neuron.dim()):
        for d in range(neuron.dim()):
            if h == d or shape[h] == 1 or shape[d] == 1:
                continue
            table = _only_along(neuron, (h, d))
            if table is None or not _independent_of(position, (d,)):
                continue
            # a head repeated (repeat_kv) sits at different positions of the copy: only that case may
            # have positions that vary along the head axis
            whole = _independent_of(position, (h, d))
            table = table.reshape(shape[h], shape[d]) if h < d else table.reshape(shape[d], shape[h]).t()
            flat = table.reshape(-1)  # (H * D,) neuron indices, head-major
            heads = TensorValue(nodes=x.nodes[flat], shape=shape, axis=d, heads=shape[h], head_axis=h, source=node)
            if whole and flat.numel() == count and torch.equal(flat, torch.arange(count)):
                return heads
            if whole and torch.unique(flat).numel() == flat.numel():  # a selection within heads (rotary's halves)
                ctx.builder.fix_partial_rows(x.nodes[flat])
                return heads
            merged = _merged_heads(table, position, h, count)
            if merged is not None:  # (B, H, T, D) -> (B * H, T, D): batch entries and heads on one axis
                rows, times = merged
                return TensorValue(nodes=x.nodes[rows.reshape(-1)], shape=shape, axis=d, heads=rows.shape[0],
                                   head_axis=h, merged=times, source=node)
            if x.heads and _repeats_heads(table, count // x.heads):  # grouped-query attention's repeat_kv
                return heads
    return None


def _merged_heads(table: torch.Tensor, position: torch.Tensor, axis: int, count: int
                  ) -> tuple[torch.Tensor, int] | None:
    """``(rows, M)`` if ``table`` ``(M * H, D)`` lists all ``count`` neurons as ``H = count // D`` heads merged
    batch-major with ``M > 1`` batch entries into ``axis``: row ``i`` is head ``i % H`` (``rows``, ``(H, D)``,
    a permutation of the neurons), and the positions along ``axis`` depend on the batch entry ``i // H``
    only, and do vary with it (copies of the heads at the same positions are ``repeat_kv``'s repeated heads,
    not merged batch entries). ``None`` otherwise."""
    size, per = table.shape
    if per == 0 or count % per:
        return None
    heads = count // per
    if heads < 1 or size <= heads or size % heads:
        return None
    rows = table[:heads]
    if not torch.equal(torch.sort(rows.reshape(-1)).values, torch.arange(count)) or \
            not torch.equal(table, rows.repeat(size // heads, 1)):
        return None
    p = position.movedim(axis, 0)
    p = p.reshape(size // heads, heads, *p.shape[1:])  # (M, H, ...)
    if not torch.equal(p[:, :1].expand_as(p), p) or torch.equal(p[:1].expand_as(p), p):
        return None
    return rows, size // heads


def _repeats_heads(table: torch.Tensor, per_head: int) -> bool:
    """Whether every row of ``table`` ``(H, D)`` is one whole head ``r * D + arange(D)``."""
    if table.shape[1] != per_head:
        return False
    starts = table[:, :1]
    return bool((starts % per_head == 0).all()) and torch.equal(table - starts, torch.arange(per_head).expand_as(table))


def move(ctx, node, fn, x, *args, positions_recorded: bool = False, **kwargs):
    """Convert ``fn(x, *args, **kwargs)``, an op that only moves entries of ``x``. A move that drops
    positions is refused unless the caller recorded which (``positions_recorded``, see
    :mod:`nngraph.convert.positions`)."""
    shape = ctx.shape_of(node)
    if isinstance(x, Opaque):  # moving a constant (position ids, a mask) gives a constant
        return Opaque(node.name)
    if isinstance(x, ParamValue):  # a parameter read as data: follow which entry goes where
        if fn in (_reshape, _expand) and shape is not None:
            args, kwargs = (tuple(shape),), {}
        return ParamValue(x.name, x.shape, fn(x.entries, *args, **kwargs))
    if isinstance(x, StackedValue):
        return move_stack(ctx, node, fn, x, *args, **kwargs)
    if not isinstance(x, TensorValue):
        raise UnsupportedError(f"{describe(node)} expects a tensor, got {x!r}")
    if x.nodes is None:  # a model input: its neurons are made where a layer first reads it
        if shape is None and x.shape is not None:  # one item of a tuple (unbind): its shape from the move
            shape = tuple(fn(torch.zeros(x.shape, dtype=torch.bool), *args, **kwargs).shape)
        return TensorValue(nodes=None, shape=shape, source=x.source, pending=x.pending)
    if shape is not None and tuple(shape) == tuple(x.shape) and fn in _SHAPE_ONLY:
        return x.with_(source=node)
    if x.spatial:
        return flatten_channels(ctx, node, x)
    if fn in (_reshape, _expand) and shape is not None:  # sizes may be computed from x.shape (Opaque here)
        args, kwargs = (tuple(shape),), {}
    neuron, before = neuron_labels(x)
    neuron, position = fn(neuron, *args, **kwargs), fn(before, *args, **kwargs)
    if not positions_recorded and x.merged == 1 and dropped_positions(before, position):
        raise UnsupportedError(
            f"{describe(node)} drops positions of a tensor of shape {tuple(x.shape)} (neurons on axis {x.axis}) "
            "in a way nngraph does not record, so two such picks would give one graph; it records integer "
            "indices and start:stop:step slices of position axes (x[:, 0], x[:, 1:], select, unbind)"
        )
    moved = locate_neurons(ctx, node, x, neuron, position)
    if moved is not None:
        return moved
    stacked = _locate_stack(ctx, node, x, neuron, position)
    if stacked is not None:
        return stacked
    if x.axis == 1 and not x.heads and shape is not None and len(shape) == 2 and len(x.shape) > 2:
        return flatten_channels(ctx, node, x)
    raise UnsupportedError(
        f"{describe(node)} turns a tensor of shape {tuple(x.shape)} (neurons on axis {x.axis}) into "
        f"{tuple(shape)} with the neurons spread over positions; nngraph follows neurons that stay on "
        "one axis, split into heads over two, or are flattened with their spatial positions from axis 1."
    )


def _locate_stack(ctx, node, x: TensorValue, neuron: torch.Tensor, position: torch.Tensor) -> StackedValue | None:
    """The moved ``x`` as equal chunks of its neurons stacked along one axis, each chunk laid out the
    same way (on one axis or split into heads), if that is what the labels show; ``None`` otherwise."""
    count = x.num_neurons
    for s in range(neuron.dim()):
        size = neuron.shape[s]
        if size <= 1 or count % size:
            continue
        per = count // size
        first = neuron.select(s, 0)
        if int(first.min()) != 0 or int(first.max()) != per - 1 or torch.unique(first).numel() != per:
            continue
        if not all(torch.equal(neuron.select(s, i) - i * per, first) and
                   torch.equal(position.select(s, i), position.select(s, 0)) for i in range(1, size)):
            continue
        parts = []
        for i in range(size):
            part = x.with_(nodes=x.nodes[i * per:(i + 1) * per])
            located = locate_neurons(ctx, node, part, first, position.select(s, 0))
            if located is None:
                break
            parts.append(located)
        else:
            ctx.builder.split_class(x.nodes, [per] * size)
            return StackedValue(parts=tuple(parts), shape=tuple(neuron.shape), axis=s, source=node)
    return None


def _along(shape: tuple[int, ...], axis: int) -> torch.Tensor:
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return torch.arange(shape[axis]).view(view).expand(shape).contiguous()


def move_stack(ctx, node, fn, x: StackedValue, *args, **kwargs):
    """A move of stacked spaces: the stack axis kept whole (permute, transpose) gives stacked spaces, one
    entry of it picked (``qkv[0]``, ``select``) gives that space; anything else is refused."""
    if fn in (_reshape, _expand) or fn in _SHAPE_ONLY:
        shape = ctx.shape_of(node)
        if shape is not None and tuple(shape) == tuple(x.shape):
            return x
        raise UnsupportedError(f"{describe(node)} reshapes stacked activation spaces {tuple(x.shape)} (stack axis "
                               f"{x.axis}); nngraph follows them through permutes and picking one of them")
    count = x.shape[x.axis]
    stack = fn(_along(x.shape, x.axis), *args, **kwargs)
    axis = next((a for a in range(stack.dim()) if stack.shape[a] == count and torch.equal(
        stack.movedim(a, 0).reshape(count, -1), torch.arange(count)[:, None].expand(count, stack[0].numel()
                                                                                   if stack.dim() else 1))), None)
    picked = torch.unique(stack)
    if axis is None and picked.numel() != 1:
        raise UnsupportedError(f"{describe(node)} moves stacked activation spaces {tuple(x.shape)} so that the "
                               "stack axis is neither kept whole nor one of its entries picked")
    parts = []
    for i, part in enumerate(x.parts):
        if axis is None and i != int(picked):
            continue
        neuron, position = neuron_labels(part)  # part.shape
        full_n = neuron.unsqueeze(x.axis).expand(x.shape)
        full_p = position.unsqueeze(x.axis).expand(x.shape)
        moved_n, moved_p = fn(full_n, *args, **kwargs), fn(full_p, *args, **kwargs)
        if axis is not None:
            moved_n, moved_p = moved_n.select(axis, 0), moved_p.select(axis, 0)
        located = locate_neurons(ctx, node, part, moved_n.contiguous(), moved_p.contiguous())
        if located is None:
            raise UnsupportedError(f"{describe(node)} moves stacked activation spaces so that neurons spread over "
                                   "positions")
        parts.append(located)
    if axis is None:
        return parts[0]
    return StackedValue(parts=tuple(parts), shape=tuple(stack.shape), axis=axis, source=node)


@register_function("unbind", torch.unbind, aten.unbind.int)
def _unbind(ctx, node, x, dim=0, **kwargs):
    """``unbind`` of the stack axis of stacked spaces (timm's ``q, k, v = qkv.unbind(0)``), of the head axis of
    a head-split value (each head a space of its own, as after ``split``), or of a position axis."""
    dim = kwargs.get("dim", dim)
    if isinstance(x, Opaque):
        return Opaque(node.name)
    shape = getattr(x, "shape", None)
    if shape is None:
        raise UnsupportedError(f"{describe(node)} unbinds a {type(x).__name__}")
    dim = dim % len(shape)
    if isinstance(x, StackedValue) and dim == x.axis:
        return tuple(p.with_(source=node) for p in x.parts)
    if isinstance(x, TensorValue) and x.nodes is not None and x.heads and dim == x.head_axis:
        per = x.num_neurons // x.heads
        ctx.builder.split_class(x.nodes, [per] * x.heads)
        rest = [s for k, s in enumerate(shape) if k != dim]
        return tuple(TensorValue(nodes=x.nodes[i * per:(i + 1) * per], shape=tuple(rest),
                                 axis=x.axis - (x.axis > dim), source=node) for i in range(x.heads))
    index = (slice(None),) * dim
    if isinstance(x, TensorValue) and (x.nodes is None or dim != x.axis):  # positions: one pick each
        return tuple(move(ctx, node, lambda t, i=i: t[index + (i,)],
                          record_positions(ctx, node, x, [select_record(dim, i, shape[dim], len(shape))],
                                           own_neurons=True), positions_recorded=True)
                     for i in range(shape[dim]))
    return tuple(move(ctx, node, lambda t, i=i: t[index + (i,)], x) for i in range(shape[dim]))


def _reshape(t, *shape, **kwargs):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (list, tuple, torch.Size)) else shape
    return t.reshape(*shape)


def _expand(t, *sizes, **kwargs):
    sizes = sizes[0] if len(sizes) == 1 and isinstance(sizes[0], (list, tuple, torch.Size)) else sizes
    return t.expand(*sizes)


def _flip(t, *dims, **kwargs):
    dims = kwargs.get("dims", dims[0] if len(dims) == 1 else dims)
    return torch.flip(t, (dims,) if isinstance(dims, int) else tuple(dims))


def _permute(t, *dims, **kwargs):
    dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (list, tuple)) else dims
    return t.permute(*dims)


_MOVES = {
    "transpose": torch.transpose, torch.transpose: torch.transpose, aten.transpose.int: torch.transpose,
    "permute": _permute, torch.permute: _permute, aten.permute.default: _permute,
    "view": _reshape, "reshape": _reshape, torch.reshape: _reshape,
    aten.view.default: _reshape, aten.reshape.default: _reshape, aten._unsafe_view.default: _reshape,
    "unsqueeze": torch.unsqueeze, torch.unsqueeze: torch.unsqueeze, aten.unsqueeze.default: torch.unsqueeze,
    "squeeze": torch.squeeze, torch.squeeze: torch.squeeze, aten.squeeze.dim: torch.squeeze,
    aten.squeeze.dims: torch.squeeze,
    "expand": _expand, aten.expand.default: _expand,
    "movedim": torch.movedim, torch.movedim: torch.movedim,
    "unflatten": torch.unflatten, torch.unflatten: torch.unflatten,
    aten.select.int: torch.select, "select": torch.select, torch.select: torch.select,
    aten.slice.Tensor: aten.slice.Tensor,
    "flip": _flip, torch.flip: _flip, aten.flip.default: _flip,
    "roll": torch.roll, torch.roll: torch.roll, aten.roll.default: torch.roll,
    aten.alias.default: lambda t: t,
    # repeats: a head repeated for several query heads (grouped-query attention) is followed as above
    "repeat_interleave": torch.repeat_interleave, torch.repeat_interleave: torch.repeat_interleave,
    aten.repeat_interleave.self_int: torch.repeat_interleave,
    "repeat": lambda t, *sizes: t.repeat(*sizes), aten.repeat.default: lambda t, sizes: t.repeat(*sizes),
}
_SHAPE_ONLY = {_reshape, _expand, torch.unsqueeze, torch.squeeze, torch.unflatten}


def _position_pick(x, fn, args, kwargs):
    """The records of ``select`` / ``aten.slice`` of a position axis of ``x`` (``None`` for other moves)."""
    if fn not in (torch.select, aten.slice.Tensor) or not isinstance(x, TensorValue) or x.shape is None:
        return None
    names = ("dim", "index") if fn is torch.select else ("dim", "start", "end", "step")
    defaults = {"dim": 0, "start": None, "end": None, "step": 1}
    values = {**defaults, **dict(zip(names, args)), **kwargs}
    ndim = len(x.shape)
    dim = int(values["dim"]) % ndim
    if x.nodes is not None and (dim == x.axis or (x.heads and dim == x.head_axis)):
        return []  # a pick of neurons: followed on the labels
    if fn is torch.select:
        return [select_record(dim, int(values["index"]), x.shape[dim], ndim)]
    record = slice_record(dim, slice(values["start"], values["end"], values["step"]), x.shape[dim], ndim)
    return [] if record is None else [record]


def _axis_permutation(x, fn, args, kwargs) -> list:
    """The record of a transpose / permute / movedim that changes the order of ``x``'s position axes, the
    first axis (the batch axis by convention: ``(B, T, E) -> (T, B, E)`` for a ``batch_first=False`` layer is
    not a change of the function's definition) and axes of size 1 left out; empty otherwise."""
    shape = tuple(x.shape)
    ndim = len(shape)
    axes = [k for k in range(1, ndim) if k not in x.neuron_axes and shape[k] > 1]
    if len(axes) < 2:
        return []
    where = []
    for k in axes:  # the output axis each input position axis went to: the one its labels vary along
        view = [1] * ndim
        view[k] = shape[k]
        moved = fn(torch.arange(shape[k]).view(view).expand(shape), *args, **kwargs)
        where.append(next(j for j in range(moved.dim()) if moved.shape[j] > 1 and
                          not torch.equal(moved.narrow(j, 0, 1).expand_as(moved), moved)))
    order = sorted(range(len(axes)), key=lambda i: where[i])  # the position axes in their new order
    if order == list(range(len(axes))):
        return []
    return [reorder_record(order, [shape[k] for k in axes])]


def _position_reorder(x, fn, args, kwargs) -> list:
    """The records of ``flip`` / ``roll`` of position axes of ``x`` and of transposes that reorder them
    (empty for other moves, and for a flip or roll of the neuron axis, which only relabels the neurons)."""
    if not isinstance(x, TensorValue) or x.shape is None:
        return []
    if fn in (torch.transpose, _permute, torch.movedim) and x.merged == 1:
        return _axis_permutation(x, fn, args, kwargs)
    if fn not in (_flip, torch.roll):
        return []
    ndim = len(x.shape)
    neurons = x.neuron_axes
    if fn is _flip:
        dims = kwargs.get("dims", args[0] if len(args) == 1 else args)
        dims = sorted({int(d) % ndim for d in ((dims,) if isinstance(dims, int) else dims)})
        return [flip_record(d, x.shape[d], ndim) for d in dims if d not in neurons]
    shifts = kwargs.get("shifts", args[0] if args else 0)
    dims = kwargs.get("dims", args[1] if len(args) > 1 else None)
    if dims is None:  # a roll of the flattened tensor: followed on the labels (it mixes neurons with positions)
        return []
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    records = [roll_record(int(d) % ndim, int(s), x.shape[int(d) % ndim], ndim) for s, d in zip(shifts, dims)
               if int(d) % ndim not in neurons]
    return [r for r in records if r is not None]


def _register(target, fn):
    @register_function(target, passthrough=True)
    def convert(ctx, node, x, *args, **kwargs):
        records = _position_pick(x, fn, args, kwargs)
        if records:
            x = record_positions(ctx, node, x, records)
        reordered = _position_reorder(x, fn, args, kwargs)
        if reordered:
            x = record_positions(ctx, node, x, reordered)
        return move(ctx, node, fn, x, *args, positions_recorded=records is not None, **kwargs)


for _target, _fn in _MOVES.items():
    _register(_target, _fn)
accept_merged_heads(*_MOVES)  # followed on label tensors, merged heads included


@register_function(torch.flatten, "flatten", aten.flatten.using_ints, passthrough=True)
def _flatten_function(ctx, node, x, start_dim=1, end_dim=-1):
    """``flatten(x, 1)`` of a feature map gives each channel its spatial map (a flatten head); any
    other flatten is a movement."""
    if isinstance(x, TensorValue) and x.nodes is not None and start_dim == 1 and end_dim == -1 and x.axis == 1:
        return flatten_channels(ctx, node, x)
    return move(ctx, node, torch.flatten, x, start_dim, end_dim)



@register_function("split", torch.split, aten.split.Tensor, aten.split_with_sizes.default,
                   "chunk", torch.chunk, aten.chunk.default)
def _split(ctx, node, x, sizes, dim=0, **kwargs):
    """``split`` / ``chunk`` of the feature axis: each chunk is an activation space of its own (the
    q, k, v of a fused projection). Splitting positions is refused: the chunks would share neurons."""
    if isinstance(x, Opaque):
        return Opaque(node.name)
    if not isinstance(x, TensorValue) or x.nodes is None or x.heads or x.spatial:
        raise UnsupportedError(f"{describe(node)}: only splitting the feature axis of an activation is supported")
    dim = kwargs.get("dim", dim)
    axis = dim % len(x.shape)
    if axis != x.axis:
        raise UnsupportedError(
            f"{describe(node)} splits axis {axis} of a tensor whose neurons are on axis {x.axis}; the chunks "
            "would share neurons, which nngraph does not follow yet"
        )
    count = x.num_neurons
    metas = node.meta.get("tensor_meta")
    if isinstance(metas, (tuple, list)) and all(hasattr(m, "shape") for m in metas):
        sizes = [int(m.shape[axis]) for m in metas]  # the sizes as run (they may come from x.shape)
    elif node.target in ("chunk", torch.chunk, aten.chunk.default):
        step = -(-count // sizes)
        sizes = [min(step, count - i) for i in range(0, count, step)]
    elif isinstance(sizes, int):
        sizes = [min(sizes, count - i) for i in range(0, count, sizes)]
    sizes = [int(s) for s in sizes]
    ctx.builder.split_class(x.nodes, sizes)
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    out = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        shape = list(x.shape)
        shape[axis] = stop - start
        out.append(TensorValue(nodes=x.nodes[start:stop], shape=tuple(shape), axis=axis, source=node))
    return tuple(out)
