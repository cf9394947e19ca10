"""Operations that move or combine activations without weights of their own: residual sums,
flattening, tuple indexing, and pass-through ops (dropout, identity, ...)."""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import UnsupportedError, describe
from .flatten import flatten_channels
from .movement import move
from .parameters import add_parameter
from .positions import index_records, record_positions
from .registry import accept_merged_heads, register_function, register_module
from .residual import residual_sum
from .values import OffsetParam, Opaque, ParamValue, StackedValue, TensorValue

# ----------------------------------------------------------------------- pass-through


def _passthrough(ctx, node, x, *args, **kwargs):
    return x


register_module(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
                passthrough=True)(_passthrough)
register_function(F.dropout, "contiguous", "clone", "detach", passthrough=True)(_passthrough)
accept_merged_heads(nn.Dropout, nn.Identity, F.dropout, "contiguous", "clone", "detach")

_aten = torch.ops.aten


@register_function("to", "float", "double", "type_as", _aten.to.dtype, _aten.to.dtype_layout, _aten._to_copy.default,
                   _aten.type_as.default, passthrough=True)
def _cast(ctx, node, x, *args, **kwargs):
    """A cast keeps the neurons; a cast to a non-floating dtype (rounding) is refused."""
    dtype = kwargs.get("dtype", next((a for a in args if isinstance(a, torch.dtype)), None))
    if dtype is not None and not dtype.is_floating_point and isinstance(x, TensorValue) and x.nodes is not None:
        raise UnsupportedError(f"{describe(node)} casts an activation to {dtype}")
    if dtype is not None and dtype.is_floating_point and isinstance(x, TensorValue):
        ctx.builder.casts.add(dtype)  # the model computes in this precision in places (verify's tolerance)
    return x


accept_merged_heads("to", "float", "double", "type_as", _aten.to.dtype, _aten.to.dtype_layout, _aten._to_copy.default,
                    _aten.type_as.default)


@register_function(_aten._assert_tensor_metadata.default)
def _assert_metadata(ctx, node, *args, **kwargs):
    return Opaque(node.name)


@register_function("size", "dim")
def _size(ctx, node, x, *args, **kwargs):
    """A size of a tensor: a constant whose value is known from the traced shapes."""
    shape = getattr(x, "shape", None)
    if shape is None:
        return Opaque(node.name)
    if node.target == "dim":
        return Opaque(node.name, value=len(shape))
    dim = kwargs.get("dim", args[0] if args else None)
    return Opaque(node.name, value=torch.Size(shape) if dim is None else int(shape[dim]))


@register_function(getattr)
def _getattr(ctx, node, obj, name, *args):
    if name in ("shape", "dtype", "device", "ndim"):
        shape = getattr(obj, "shape", None)
        value = None if shape is None or name in ("dtype", "device") else \
            torch.Size(shape) if name == "shape" else len(shape)
        return Opaque(node.name, value=value)
    raise UnsupportedError(f"{describe(node)} reads attribute {name!r} of an activation; only shape-like attributes are supported")


# ----------------------------------------------------------------------- sums (residual_sum: .residual)


@register_function(operator.add, operator.iadd, torch.add, "add", "add_")
def _add(ctx, node, a, b, *args, **kwargs):
    plain = not args and kwargs.get("alpha", 1) == 1  # a + b, not a + alpha * b
    param = next((v for v in (a, b) if isinstance(v, ParamValue)), None)
    other = b if param is a else a
    if plain and param is not None:
        if isinstance(other, Opaque) and isinstance(other.value, torch.Tensor) and other.value.is_floating_point() \
                and not other.from_activations:
            return OffsetParam(param, other.value)  # a learned score bias plus a constant mask (Swin)
        return add_parameter(ctx, node, other, param)
    if not (isinstance(a, TensorValue) and isinstance(b, TensorValue)) or not plain:
        raise UnsupportedError(
            f"{describe(node)} adds a constant or a scaled tensor to an activation; only sums of two "
            "activations (residual connections) are supported"
        )
    return residual_sum(ctx, node, a, b)


# ----------------------------------------------------------------------- flatten (flatten_channels: .flatten)


@register_module(nn.Flatten, passthrough=True)
def _flatten_module(ctx, node, x):
    module = ctx.module_of(node)
    if module.start_dim != 1 or module.end_dim != -1:
        raise UnsupportedError(f"{describe(node)}: only Flatten(start_dim=1, end_dim=-1) is supported")
    return flatten_channels(ctx, node, x)


# ----------------------------------------------------------------------- tuples and indexing


@register_function(operator.getitem)
def _getitem(ctx, node, obj, index):
    if isinstance(obj, (tuple, list)):
        item = obj[index]  # the element's consumers are this node's, not the tuple's
        return item.with_(source=node) if isinstance(item, TensorValue) else item
    if isinstance(obj, Opaque):
        return Opaque(node.name)
    if isinstance(obj, ParamValue):
        return _index_parameter(node, obj, index)
    if not isinstance(obj, (TensorValue, StackedValue)):
        raise UnsupportedError(f"{describe(node)} indexes {obj!r}")
    return _index_tensor(ctx, node, obj, index)


def _index_parameter(node, p, index):
    """A parameter indexed in forward (``table[index]``, Swin's relative-position bias): the parameter read
    as data, each entry where the indexing puts it. Index tensors must be constants of known value."""
    items = index if isinstance(index, tuple) else (index,)
    resolved = []
    for item in items:
        if isinstance(item, Opaque):
            if not isinstance(item.value, torch.Tensor):
                raise UnsupportedError(f"{describe(node)} indexes parameter {p.name!r} with a tensor whose values "
                                       "nngraph does not know")
            item = item.value.long() if not item.value.dtype == torch.bool else item.value
        elif isinstance(item, TensorValue):
            raise UnsupportedError(f"{describe(node)} indexes parameter {p.name!r} with an activation")
        resolved.append(item)
    entries = p.entries[tuple(resolved) if isinstance(index, tuple) else resolved[0]]
    return ParamValue(p.name, p.shape, entries)


def _index_tensor(ctx, node, x, index) -> TensorValue:
    """Basic and list indexing, converted as a movement (see :mod:`nngraph.convert.movement`):
    ``x[:, 0]`` on a sequence keeps the neurons, the picked position recorded on them
    (:mod:`nngraph.convert.positions`); a slice of the neuron axis selects neurons and fixes
    their activation space; a list on it reorders them."""
    if not isinstance(x, TensorValue) or x.shape is None:
        return move(ctx, node, lambda t: t[index], x)
    records, complete = index_records(x, index)
    x = record_positions(ctx, node, x, records)
    return move(ctx, node, lambda t: t[index], x, positions_recorded=complete)


accept_merged_heads(operator.getitem)  # indexing is a movement


@register_function(F.pad, _aten.constant_pad_nd.default)
def _pad(ctx, node, x, pad, mode="constant", value=None, **kwargs):
    """Zeros added around the positions of a feature map, for the convolution that reads it (TF-style
    "same" padding). Padding the feature axis, another mode or value are refused."""
    mode, value = kwargs.get("mode", mode), kwargs.get("value", value)
    if isinstance(x, Opaque):
        return Opaque(node.name)
    if not isinstance(x, TensorValue) or x.heads or x.spatial or x.padded:
        raise UnsupportedError(f"{describe(node)} pads a {type(x).__name__}; only one zero padding of an activation "
                               "or model input is supported")
    pad = tuple(int(p) for p in pad)
    if not any(pad):
        return x.with_(shape=ctx.shape_of(node), source=node)
    if x.nodes is None:  # a model input: the convolution reading it checks the padded axes are positions
        if mode != "constant" or value not in (None, 0, 0.0) or any(p < 0 for p in pad):
            raise UnsupportedError(f"{describe(node)} pads a model input with mode {mode!r}, value {value}")
        return x.with_(padded=pad, shape=ctx.shape_of(node), source=node)
    padded_axes = {len(x.shape) - 1 - i for i in range(len(pad) // 2) if pad[2 * i] or pad[2 * i + 1]}
    if mode != "constant" or (value not in (None, 0, 0.0)) or x.axis in padded_axes or any(p < 0 for p in pad):
        raise UnsupportedError(
            f"{describe(node)} pads axes {sorted(padded_axes)} by {list(pad)} with mode {mode!r}, value {value}; "
            f"nngraph supports zero padding of positions (the neurons are on axis {x.axis}) read by a convolution"
        )
    return x.with_(padded=pad, shape=ctx.shape_of(node), source=node)


@register_function(torch.where, _aten.where.ScalarOther, _aten.where.self, _aten.masked_fill.Scalar, "masked_fill")
def _where(ctx, node, *args, **kwargs):
    """Entries of an activation replaced by a number where a constant condition holds (a mask turned into
    ``-inf`` scores): the same neurons. A condition that varies along the neurons fixes them (it treats
    neurons differently); a condition computed from activations is refused. The mask itself is not in
    the graph."""
    if node.target in (_aten.masked_fill.Scalar, "masked_fill"):
        (x, cond, fill), cond_node = args[:3], node.args[1]
    else:
        (cond, x, fill), cond_node = args[:3], node.args[0]
    if isinstance(fill, TensorValue) or isinstance(cond, TensorValue) or not isinstance(x, TensorValue) \
            or (isinstance(cond, Opaque) and cond.from_activations) or x.nodes is None:
        raise UnsupportedError(
            f"{describe(node)} selects between {type(x).__name__} and {type(fill).__name__} on a "
            f"{type(cond).__name__} condition; nngraph supports an activation masked by a constant condition"
        )
    cond_shape = ctx.shape_of(cond_node) if isinstance(cond_node, fx.Node) else None
    shape = ctx.shape_of(node)
    if cond_shape is None or len(cond_shape) < len(shape) - x.axis or \
            cond_shape[x.axis - len(shape)] != 1:
        ctx.builder.fix(x.nodes)  # the condition may differ between neurons
    return x.with_(shape=shape, source=node)
