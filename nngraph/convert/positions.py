"""Positions picked out of an activation, or reordered: ``x[:, 0]`` (a class token read), ``x[:, -1]`` (the last step),
``x[:, 1:]`` (the patch tokens), ``select`` / ``slice`` / ``unbind`` of a position axis.

The neurons stay the same (a position is not a neuron), so without a record ``x[:, 0]`` and ``x[:, -1]``
would give one graph for two functions. Each pick is recorded on the neurons it reads, as a pooling is
(``pool`` / ``pool_args``, see :class:`~nngraph.schema.Pool`): :attr:`~nngraph.schema.Pool.SELECT` for one
index, :attr:`~nngraph.schema.Pool.SLICE` for a ``start:stop:step`` range that is not the whole axis, with
the dimension counted from the end, the index or range at the traced size and whether it was written
counted from the end. A value also used unpicked elsewhere gets fresh tied :attr:`~nngraph.schema.NodeKind.POOL`
neurons for the pick (:func:`~nngraph.convert.pool.record_pool`); a pick of a model input is kept on the
value until the layer that reads it makes its input neurons. Positions dropped any other way (a list or
mask index of a position axis) are refused by :func:`~nngraph.convert.movement.move`.

A transpose / permute / movedim that changes the order of position axes (the first axis, by convention the
batch, left out) is recorded as :attr:`~nngraph.schema.Pool.REORDER` (the new order and the axes' sizes). A flip or
a roll of a position axis keeps every position but changes the function (``x.flip(1)[:, 0]`` reads
the last token), so it is recorded the same way (:attr:`~nngraph.schema.Pool.FLIP`,
:attr:`~nngraph.schema.Pool.ROLL`); a flip or roll of the neuron axis is a relabelling and needs no record.
"""
from __future__ import annotations

import torch

from ..schema import POOL_ARGS, Pool
from .pool import record_pool
from .values import TensorValue

#: one record: (kind, pool_args by name)
Record = tuple[Pool, dict[str, float]]


def select_record(dim: int, index: int, size: int, ndim: int) -> Record:
    """The record of ``x.select(dim, index)`` on an axis of ``size`` entries of an ``ndim``-d tensor."""
    return Pool.SELECT, {"kernel_d": float(dim % ndim - ndim), "kernel_h": float(index % size),
                         "kernel_w": float(size), "stride_d": float(index < 0)}


def slice_record(dim: int, item: slice, size: int, ndim: int) -> Record | None:
    """The record of ``x[..., item]`` on dimension ``dim`` (``None`` if it keeps the whole axis in order)."""
    start, stop, step = item.indices(size)
    count = len(range(start, stop, step))
    if step == 1 and start == 0 and count == size:
        return None
    written_start = item.start is not None and item.start < 0
    written_stop = item.stop is not None and item.stop < 0
    return Pool.SLICE, {"kernel_d": float(dim % ndim - ndim), "kernel_h": float(start if count else 0),
                        "kernel_w": float(count), "stride_d": float(step), "stride_h": float(size),
                        "stride_w": float(written_start), "padding_d": float(written_stop)}


def flip_record(dim: int, size: int, ndim: int) -> Record:
    """The record of ``x.flip(dim)`` on an axis of ``size`` entries of an ``ndim``-d tensor."""
    return Pool.FLIP, {"kernel_d": float(dim % ndim - ndim), "kernel_w": float(size)}


def roll_record(dim: int, shift: int, size: int, ndim: int) -> Record | None:
    """The record of ``torch.roll(x, shift, dim)`` (``None`` for a shift by a multiple of the size)."""
    if shift % size == 0:
        return None
    return Pool.ROLL, {"kernel_d": float(dim % ndim - ndim), "kernel_h": float(shift % size),
                       "kernel_w": float(size)}


#: position axes a REORDER record describes (its columns: the order, then one size per axis)
MAX_REORDERED_AXES = 7


def reorder_record(order: list[int], sizes: list[int]) -> Record:
    """The record of position axes of ``sizes`` moved into ``order`` (``order[i]``: the old index of the axis now
    at place ``i``) by a transpose / permute / movedim: the order as decimal digits in ``kernel_d``, the sizes
    in the columns after it.

    Raises:
        ValueError: for more than :data:`MAX_REORDERED_AXES` position axes.
    """
    if len(order) > MAX_REORDERED_AXES:
        raise ValueError(f"a reorder of {len(order)} position axes (nngraph records at most {MAX_REORDERED_AXES})")
    args = {"kernel_d": float(int("".join(str(i + 1) for i in order)))}
    for name, size in zip(POOL_ARGS[1:], sizes):
        args[name] = float(size)
    return Pool.REORDER, args


def index_records(x: TensorValue, index) -> tuple[list[Record], bool]:
    """``(records, complete)`` for ``x[index]``: one record per integer or slice of a position axis, and
    whether every item on a position axis was one of those (a list or tensor index is not)."""
    items = index if isinstance(index, tuple) else (index,)
    ndim = len(x.shape)
    consumed = sum(0 if item is None or item is Ellipsis else 1 for item in items)
    dims, dim = [], 0
    for item in items:
        if item is Ellipsis:
            dim += ndim - consumed
        elif item is None:
            continue
        else:
            dims.append((dim, item))
            dim += 1
    neuron_axes = x.neuron_axes
    records, complete = [], True
    for dim, item in dims:
        if dim in neuron_axes:
            continue
        if isinstance(item, bool) or not isinstance(item, (int, slice)):
            complete = False
        elif isinstance(item, int):
            records.append(select_record(dim, item, x.shape[dim], ndim))
        elif all(v is None or isinstance(v, int) for v in (item.start, item.stop, item.step)):
            record = slice_record(dim, item, x.shape[dim], ndim)
            if record is not None:
                records.append(record)
        else:
            complete = False
    return records, complete


def record_positions(ctx, node, x: TensorValue, records: list[Record], own_neurons: bool = False) -> TensorValue:
    """``x`` with ``records`` recorded on its neurons (on fresh tied neurons if ``x`` is used elsewhere or
    ``own_neurons``: one of several picks of one value, as ``unbind`` makes); kept on a model input."""
    if not records:
        return x
    if x.nodes is None:
        return x.with_(pending=x.pending + tuple(records))
    kind, args = records[0]
    x = record_pool(ctx, node, x, kind, args, own_neurons=own_neurons)
    for kind, args in records[1:]:
        x = record_pool(ctx, node, x, kind, args, own_neurons=False, in_place=True)
    return x


def dropped_positions(position: torch.Tensor, moved: torch.Tensor) -> bool:
    """Whether the move that turned the position labels ``position`` into ``moved`` dropped some positions."""
    return torch.unique(moved).numel() < torch.unique(position).numel()
