"""Attention written out by hand ("eager"): ``softmax(q @ k^T * scale + mask) @ v`` as separate ops, the
way timm, research code and Hugging Face's ``attn_implementation="eager"`` write it.

A product of two activations is followed only as the two halves of attention:

- ``q @ k.transpose(-2, -1)`` (``matmul``, ``@``, ``bmm``, ``einsum("bhid,bhjd->bhij")``) whose contracted
  axis is the neuron axis of both operands, with one head split (the head axes aligned; a key with
  one head broadcast over the query's heads, or repeated to them, is multi-/grouped-query
  attention) gives attention *scores* (:class:`~nngraph.convert.values.ScoreValue`): positions and
  heads, no neurons;
- ``softmax(scores, key axis) @ v`` (``einsum("bhij,bhjd->bhid")``) with ``v`` split into the same heads
  contracts the key positions with the value's positions and gives one
  :attr:`~nngraph.schema.NodeKind.ATTENDED` neuron per value neuron, with the head nodes, QK_PAIR and
  HEAD_MEMBER edges of :func:`~nngraph.convert.attention.attention_heads`: the graph
  ``scaled_dot_product_attention`` gives for the same model.

Between the two, scores may be multiplied or divided by numbers (the product is the scale on the
QK_PAIR edges, relative to ``1 / sqrt(D)``), receive constant masks (added, ``masked_fill``,
``where``: a ``-inf`` pattern that is ``tril`` makes the heads :attr:`~nngraph.schema.NodeKind.CAUSAL_HEAD`
as ``is_causal`` does; any other constant mask or a mask that is a model input is not recorded, as for
sdpa), one learned per-head bias (a parameter or an activation with one neuron per head, as the sdpa
converter takes it), numbers added (softmax ignores them), casts, eval dropout, and moves that keep
their head, query and key axes whole. Everything else that reads scores is refused by name: a
softmax over another axis, scores returned, added to values or multiplied by anything but a number
or the values, scaled after a learned bias, heads that do not match, a product that contracts a
neuron axis with a position axis, and ``x @ x^T`` (query and key sharing neurons).
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MASKED, attention_heads, blocked_pairs, is_causal_pattern, refuse_constant_mask, score_bias
from .errors import UnsupportedError, describe
from .movement import _MOVES, _SHAPE_ONLY, _expand, _only_along, _reshape
from .registry import accept_merged_heads, register_function, register_score_op
from .values import Opaque, ParamValue, ScoreValue, TensorValue

aten = torch.ops.aten

def _refuse(node, what: str) -> UnsupportedError:
    return UnsupportedError(f"{describe(node)} {what}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ----------------------------------------------------------------------- subscripts


def _matmul_letters(node, na: int, nb: int) -> tuple[str, str, str]:
    """``matmul`` as einsum subscripts (batch axes broadcast from the right)."""
    if na < 2 or nb < 2:
        raise _refuse(node, "multiplies activations with a 1-d operand; nngraph follows matrix products of "
                            "activations only as attention (q @ k^T, then softmax(scores) @ v)")
    batch = "abcdefghijklmnopqrstuvw"[:max(na, nb) - 2]
    return batch[len(batch) - (na - 2):] + "xy", batch[len(batch) - (nb - 2):] + "yz", batch + "xz"


def _einsum_letters(node, equation, operands) -> tuple[str, str, str]:
    equation = equation.replace(" ", "") if isinstance(equation, str) else ""
    if "->" not in equation or "." in equation or len(operands) != 2:
        raise _refuse(node, f"is einsum {equation!r} on {len(operands)} operands; nngraph follows an einsum of "
                            "activations as attention only, with two operands and an explicit output "
                            "('bhid,bhjd->bhij', 'bhij,bhjd->bhid')")
    inputs, out = equation.split("->")
    la, lb = inputs.split(",")
    for letters, t in ((la, operands[0]), (lb, operands[1])):
        shape = t.shape if isinstance(t, (TensorValue, ScoreValue)) else None
        if shape is None or len(letters) != len(shape) or len(set(letters)) != len(letters):
            raise _refuse(node, f"is einsum {equation!r} with repeated or missing subscripts; nngraph follows "
                                "attention einsums with one subscript per axis")
    if len(set(out)) != len(out) or set(out) - set(la) - set(lb):
        raise _refuse(node, f"is einsum {equation!r}, whose output repeats or invents subscripts")
    return la, lb, out


def _activation(node, t, which: str) -> TensorValue:
    if not isinstance(t, TensorValue) or t.nodes is None or t.spatial or t.padded:
        what = ("a model input" if isinstance(t, TensorValue) and t.nodes is None else
                f"parameter {t.name!r} read as data" if isinstance(t, ParamValue) else type(t).__name__)
        raise _refuse(node, f"multiplies with {what} as its {which} operand; nngraph follows products of two "
                            "activations split into heads (attention: q @ k^T, then softmax(scores) @ v)")
    return t


def _broadcast_heads(node, t: TensorValue, heads: int, what: str, merged: int = 1) -> TensorValue:
    """``t`` (one head, no head axis) read by every one of ``heads`` heads: multi-query attention, its key
    broadcast over the heads or expanded to them (Hugging Face's ``repeat_kv`` of one head). Whatever the
    axis lined up with the heads holds (copies, or other positions), each head pairs its neurons with
    the same ``D`` neurons of ``t``, listed once per head. ``merged``: the batch entries merged into the
    other operand's head axis (a key read at every entry of a ``(B * H, T, D)`` query)."""
    if t.heads:
        raise _refuse(node, f"reads a {what} split into {t.heads} heads on axis {t.head_axis} where the "
                            "other operand has its heads on another axis; the heads must match")
    return t.with_(nodes=t.nodes.repeat(heads), heads=heads, merged=merged)


# ----------------------------------------------------------------------- q @ k^T


def scores(ctx, node, q, k, lq: str, lk: str, lo: str) -> ScoreValue:
    """The scores of ``einsum(lq, lk -> lo)(q, k)``, or a refusal naming what does not fit."""
    q, k = _activation(node, q, "first"), _activation(node, k, "second")
    cq, ck = lq[q.axis], lk[k.axis]
    summed = (set(lq) | set(lk)) - set(lo)
    if summed != {cq} or ck != cq:
        roles = {cq: "the first operand's neurons", ck: "the second operand's neurons"}
        named = ", ".join(sorted(roles.get(a, f"positions ({a})") for a in summed)) or "nothing"
        raise _refuse(node, f"multiplies two activations contracting {named}; nngraph follows such a product "
                            "only as attention scores, contracting the neuron axes (head dimensions) of both "
                            "operands and nothing else")
    hq = lq[q.head_axis] if q.heads else None
    if q.heads:
        if hq not in lo:
            raise _refuse(node, "sums the heads of attention scores; nngraph needs one score per head")
        if k.heads and (lk[k.head_axis] != hq or k.heads != q.heads):
            raise _refuse(node, f"multiplies a query of {q.heads} heads (axis {q.head_axis}) with a key of "
                                f"{k.heads} heads (axis {k.head_axis}); query and key must have the same heads "
                                "on aligned axes (repeat grouped key heads first)")
        if k.heads and k.merged != q.merged:
            raise _refuse(node, f"multiplies a query whose head axis holds {q.merged} batch entries times "
                                f"{q.heads} heads with a key whose head axis holds {k.merged} times {k.heads}; "
                                "query and key must merge their heads with the batch the same way")
        if not k.heads:
            if k.num_neurons * q.heads != q.num_neurons:
                raise _refuse(node, f"multiplies a query of {q.heads} heads of {q.num_neurons // q.heads} with a "
                                    f"key of {k.num_neurons} neurons")
            k = _broadcast_heads(node, k, q.heads, "key", q.merged)
    elif k.heads:
        raise _refuse(node, f"multiplies a query without heads with a key split into {k.heads} heads")
    if q.num_neurons != k.num_neurons:
        raise _refuse(node, f"multiplies a query of {q.num_neurons} neurons with a key of {k.num_neurons}")
    if torch.unique(q.nodes).numel() != q.nodes.numel():
        raise _refuse(node, "multiplies a query that shows one head at several entries of its head axis (heads "
                            "repeated, or merged head-major with the batch); nngraph's heads are the query's, "
                            "each once")
    if bool(torch.isin(q.nodes, k.nodes).any()):
        raise _refuse(node, "multiplies an activation with itself (x @ x^T, a Gram matrix); nngraph represents "
                            "scores of queries and keys that are different neurons")
    hk = lk[k.head_axis] if k.heads and k.head_axis >= 0 else hq
    pq = [a for a in lq if a not in lk and a not in (cq, hq)]
    pk = [a for a in lk if a not in lq and a not in (cq, hk)]
    if len(pq) != 1 or len(pk) != 1:
        raise _refuse(node, f"multiplies activations of shapes {tuple(q.shape)} and {tuple(k.shape)} with "
                            f"{len(pq)} and {len(pk)} position axes of their own; attention scores pair one "
                            "query position axis with one key position axis")
    shape = ctx.shape_of(node)
    return ScoreValue(q=q, k=k, heads=q.heads or 1, shape=tuple(shape), head_axis=lo.index(hq) if q.heads else None,
                      query_axis=lo.index(pq[0]), key_axis=lo.index(pk[0]), source=node, merged=q.merged)


# ----------------------------------------------------------------------- softmax(scores) @ v


def attend(ctx, node, s: ScoreValue, v, ls: str, lv: str, lo: str) -> TensorValue:
    """``einsum(ls, lv -> lo)(softmax(scores), v)``: the attended neurons, heads and edges."""
    if not s.softmaxed:
        raise _refuse(node, "multiplies attention scores that went through no softmax with the values (linear "
                            "attention); nngraph represents softmax attention")
    v = _activation(node, v, "second")
    key = ls[s.key_axis]
    vn = lv[v.axis]
    vh = lv[v.head_axis] if v.heads else None
    summed = (set(ls) | set(lv)) - set(lo)
    if summed != {key} or key not in lv or key in (vn, vh):
        raise _refuse(node, "multiplies attention weights with values contracting "
                            f"{'their neurons' if key in (vn, vh) else sorted(summed)}; softmax(scores) @ v "
                            "contracts the key positions of the weights with the positions of the values")
    hl = ls[s.head_axis] if s.head_axis is not None else None
    if hl is not None:
        if v.heads and (vh != hl or v.heads != s.heads):
            raise _refuse(node, f"multiplies attention weights of {s.heads} heads with values of {v.heads} heads "
                                "on another axis; the heads must match")
        if v.heads and v.merged != s.merged:
            raise _refuse(node, f"multiplies attention weights whose head axis holds {s.merged} batch entries "
                                f"times {s.heads} heads with values whose head axis holds {v.merged} times "
                                f"{v.heads}; they must merge their heads with the batch the same way")
        if not v.heads:
            v = _broadcast_heads(node, v, s.heads, "value", s.merged)
    elif v.heads:
        raise _refuse(node, f"multiplies single-head attention weights with values split into {v.heads} heads")
    ql = ls[s.query_axis]
    if ql in lv or ql not in lo or vn not in lo or set(lv) - set(ls) - {vn} or set(ls) - set(lv) - {ql, hl}:
        raise _refuse(node, "multiplies attention weights with values whose axes do not line up as "
                            "softmax(scores) @ v (batch, heads, query positions, value neurons)")
    heads = s.heads
    q, k = s.q.with_(heads=heads), s.k.with_(heads=heads)
    v = v.with_(heads=heads)
    if s.other_mask:
        raise refuse_constant_mask(s.mask_source or node, "a constant mask that adds finite values, differs "
                                   "between batch entries or heads, or has values nngraph cannot read")
    blocked = s.blocked is not None and bool(s.blocked.any())
    causal = blocked and is_causal_pattern(s.blocked)
    if blocked and not causal:
        raise refuse_constant_mask(s.mask_source or node, "a constant mask that is not causal")
    per_head = q.num_neurons // heads
    attended = attention_heads(ctx.builder, q, k, v, s.bias, causal, s.scale * per_head ** 0.5, s.input_mask)
    shape = ctx.shape_of(node)
    if hl is None:
        return TensorValue(nodes=attended, shape=shape, axis=lo.index(vn), source=node)
    return TensorValue(nodes=attended, shape=shape, axis=lo.index(vn), heads=heads, head_axis=lo.index(hl),
                       merged=s.merged, source=node)


# ----------------------------------------------------------------------- the products


def _product(ctx, node, a, b, la: str, lb: str, lo: str):
    if isinstance(a, ScoreValue) and not isinstance(b, ScoreValue):
        return attend(ctx, node, a, b, la, lb, lo)
    if isinstance(a, ScoreValue) or isinstance(b, ScoreValue):
        raise _refuse(node, "multiplies attention scores as a matrix other than softmax(scores) @ values")
    return scores(ctx, node, a, b, la, lb, lo)


_MATMULS = (torch.matmul, operator.matmul, "matmul", torch.bmm, "bmm", aten.matmul.default, aten.bmm.default)
_EINSUMS = (torch.einsum, aten.einsum.default)


@register_function(*_MATMULS)
@register_score_op(*_MATMULS)
def convert_matmul(ctx, node, a, b, **kwargs):
    """``a @ b`` of activations: attention scores, or attention weights times values."""
    if node.target in (torch.bmm, "bmm", aten.bmm.default) and any(
            not hasattr(t, "shape") or t.shape is None or len(t.shape) != 3 for t in (a, b)):
        raise _refuse(node, "is a bmm of operands that are not 3-d")
    if not all(isinstance(t, (TensorValue, ScoreValue)) and t.shape is not None for t in (a, b)):
        _activation(node, a if not isinstance(a, (TensorValue, ScoreValue)) else b, "other")
    la, lb, lo = _matmul_letters(node, len(a.shape), len(b.shape))
    return _product(ctx, node, a, b, la, lb, lo)


accept_merged_heads(*_MATMULS)


@register_function(*_EINSUMS)
@register_score_op(*_EINSUMS)
def convert_einsum(ctx, node, equation, *operands, **kwargs):
    """``einsum(equation, a, b)`` of activations, read as :func:`convert_matmul`."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for t in operands:
        if not isinstance(t, (TensorValue, ScoreValue)):
            _activation(node, t, "other")
    la, lb, lo = _einsum_letters(node, equation, operands)
    return _product(ctx, node, operands[0], operands[1], la, lb, lo)


accept_merged_heads(*_EINSUMS)


# ----------------------------------------------------------------------- scores: scale


def _scaled(node, s: ScoreValue, factor: float) -> ScoreValue:
    if factor == 1.0:
        return s.with_(source=node)
    if s.softmaxed:
        raise _refuse(node, "scales attention weights after the softmax; nngraph represents softmax(scores) @ v")
    if s.bias is not None:
        raise _refuse(node, "scales attention scores after a learned bias was added; the graph records the "
                            "scale of q . k and the bias as it is")
    if factor <= 0 and (s.blocked is not None or s.other_mask):
        raise _refuse(node, f"multiplies masked attention scores by {factor}")
    return s.with_(scale=s.scale * factor, source=node)


@register_score_op(operator.mul, torch.mul, "mul", aten.mul.Tensor, aten.mul.Scalar)
def _score_mul(ctx, node, a, b, **kwargs):
    s, other = (a, b) if isinstance(a, ScoreValue) else (b, a)
    if not _number(other):
        raise _refuse(node, f"multiplies attention scores by {type(other).__name__}; only a number is supported")
    return _scaled(node, s, float(other))


@register_score_op(operator.truediv, torch.div, "div", aten.div.Tensor, aten.div.Scalar)
def _score_div(ctx, node, a, b, **kwargs):
    if not isinstance(a, ScoreValue) or not _number(b) or b == 0 or kwargs.get("rounding_mode") is not None:
        raise _refuse(node, "divides attention scores by something other than a non-zero number")
    return _scaled(node, a, 1.0 / float(b))


# ----------------------------------------------------------------------- scores: masks and biases


def _pattern(s: ScoreValue, values: torch.Tensor) -> torch.Tensor | None:
    return blocked_pairs(values, s.shape, s.query_axis, s.key_axis)


def _block(s: ScoreValue, blocked: torch.Tensor | None) -> ScoreValue:
    """``s`` with the (query, key) pairs ``blocked`` (a bool tensor broadcasting to the scores) set to ``-inf``."""
    pattern = None if blocked is None else _pattern(s, blocked.bool())
    if pattern is None:
        return s.with_(other_mask=True)
    return s.with_(blocked=pattern if s.blocked is None else s.blocked | pattern)


def _known(value) -> torch.Tensor | None:
    if isinstance(value, Opaque):
        value = value.value
    return value if isinstance(value, torch.Tensor) and value.device.type != "meta" else None


def _before_softmax(node, s: ScoreValue, what: str) -> None:
    if s.softmaxed:
        raise _refuse(node, f"{what} attention weights after the softmax; nngraph represents softmax(scores) @ v")


@register_score_op(operator.add, operator.iadd, torch.add, "add", "add_", aten.add.Tensor)
def _score_add(ctx, node, a, b, *args, **kwargs):
    """Scores plus a constant mask, a model-input mask, a number, or one learned per-head bias."""
    if args or kwargs.get("alpha", 1) != 1:
        raise _refuse(node, "adds a scaled tensor to attention scores")
    s, m = (a, b) if isinstance(a, ScoreValue) else (b, a)
    if isinstance(m, ScoreValue):
        raise _refuse(node, "adds two sets of attention scores")
    _before_softmax(node, s, "adds to")
    if tuple(ctx.shape_of(node)) != s.shape:
        raise _refuse(node, f"adds a tensor that broadcasts the scores {s.shape} to {tuple(ctx.shape_of(node))}")
    if _number(m):  # softmax(x + c) = softmax(x)
        return s.with_(source=node)
    if isinstance(m, ParamValue) or (isinstance(m, TensorValue) and m.nodes is not None):
        if s.bias is not None:
            raise _refuse(node, "adds a second learned bias to attention scores; nngraph records one per head")
        if s.merged > 1:
            raise _refuse(node, "adds a learned bias to attention scores whose heads are merged with the batch "
                                "((B * H, T, T)); nngraph reads a per-head bias from (..., H, Tq, Tk) scores")
        if s.head_axis is None or s.head_axis != len(s.shape) - 3:
            raise _refuse(node, f"adds a learned bias to attention scores of shape {s.shape} with their heads on "
                                f"axis {s.head_axis}; nngraph needs (..., H, Tq, Tk) scores")
        bias = score_bias(ctx, node, m, s.q)
        return s.with_(bias=bias, source=node)
    if isinstance(m, TensorValue):  # a mask that is a model input
        return s.with_(input_mask=True, source=node, mask_source=node)
    if not isinstance(m, Opaque) or m.from_activations:
        raise _refuse(node, f"adds {getattr(m, 'description', type(m).__name__)} to attention scores")
    values = _known(m)
    if values is None or not (values.is_floating_point() or values.dtype == torch.bool):
        return s.with_(other_mask=True, source=node, mask_source=node)
    values = values.double()
    blocked = values <= MASKED
    s = _block(s, blocked)
    if bool(((values != 0) & ~blocked).any()):
        s = s.with_(other_mask=True)
    return s.with_(source=node, mask_source=node)


def _fill(ctx, node, s: ScoreValue, cond, fill, invert: bool) -> ScoreValue:
    """``s`` with the entries where ``cond`` (or ``~cond``) holds set to the number ``fill``."""
    _before_softmax(node, s, "masks")
    if isinstance(fill, Opaque) and _known(fill) is not None and _known(fill).numel() == 1:
        fill = float(_known(fill))
    from_activations = (isinstance(cond, TensorValue) and cond.nodes is not None) or \
        (isinstance(cond, Opaque) and cond.from_activations)
    if not _number(fill) or isinstance(cond, (ScoreValue, ParamValue)) or from_activations:
        raise _refuse(node, "masks attention scores with a condition or fill value computed from activations or "
                            "parameters; nngraph supports constant masks filled with a number")
    if tuple(ctx.shape_of(node)) != s.shape:
        raise _refuse(node, f"masks the scores {s.shape} into the shape {tuple(ctx.shape_of(node))}")
    if isinstance(cond, TensorValue):  # a condition that is a model input
        return s.with_(input_mask=True, source=node, mask_source=node)
    values = _known(cond)
    if float(fill) > MASKED or values is None:
        return s.with_(other_mask=True, source=node, mask_source=node)
    values = values.bool()
    return _block(s, ~values if invert else values).with_(source=node, mask_source=node)


@register_score_op(aten.masked_fill.Scalar, aten.masked_fill.Tensor, "masked_fill", "masked_fill_", torch.masked_fill)
def _score_masked_fill(ctx, node, s, cond, fill, **kwargs):
    if not isinstance(s, ScoreValue):
        raise _refuse(node, "uses attention scores as the mask or fill value of masked_fill")
    return _fill(ctx, node, s, cond, fill, invert=False)


@register_score_op(torch.where, aten.where.self, aten.where.ScalarOther, aten.where.ScalarSelf)
def _score_where(ctx, node, cond, a, b, **kwargs):
    if isinstance(a, ScoreValue) and not isinstance(b, ScoreValue):
        return _fill(ctx, node, a, cond, b, invert=True)  # where(cond, s, fill): fill where cond is false
    if isinstance(b, ScoreValue) and not isinstance(a, ScoreValue):
        return _fill(ctx, node, b, cond, a, invert=False)
    raise _refuse(node, "selects between attention scores and another tensor on a condition that is not a constant")


# ----------------------------------------------------------------------- scores: softmax


def _softmax_dim(ctx, node, dim, kwargs):
    if node.op == "call_module":
        return ctx.module_of(node).dim
    return kwargs.get("dim", dim)


def _record_cast(ctx, node, dtype) -> None:
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise _refuse(node, f"casts attention scores to {dtype}")
        ctx.builder.casts.add(dtype)


#: softmax / log_softmax targets, the module last (shared with :mod:`nngraph.convert.softmax`)
SOFTMAX_TARGETS = ("softmax", F.softmax, torch.softmax, aten.softmax.int, aten._softmax.default, nn.Softmax)
LOG_SOFTMAX_TARGETS = ("log_softmax", F.log_softmax, torch.log_softmax, aten.log_softmax.int, aten._log_softmax.default,
                nn.LogSoftmax)


@register_score_op(*SOFTMAX_TARGETS)
def _score_softmax(ctx, node, s, dim=None, *args, **kwargs):
    """Softmax over the key positions: the attention weights."""
    dim = _softmax_dim(ctx, node, dim, kwargs)
    if dim is None:
        raise _refuse(node, "applies softmax to attention scores without naming the dimension")
    if s.softmaxed:
        raise _refuse(node, "applies softmax to attention weights a second time")
    axis = int(dim) % len(s.shape)
    if axis != s.key_axis:
        role = "heads" if axis == s.head_axis else "query positions" if axis == s.query_axis else "batch entries"
        raise _refuse(node, f"applies softmax to attention scores over axis {axis} (their {role}); nngraph "
                            "represents the softmax over the key positions")
    _record_cast(ctx, node, kwargs.get("dtype", args[0] if args and node.target is aten.softmax.int else None))
    return s.with_(softmaxed=True, source=node)


@register_score_op(*LOG_SOFTMAX_TARGETS)
def _score_log_softmax(ctx, node, s, *args, **kwargs):
    raise _refuse(node, "applies log_softmax to attention scores; the heads of the graph mean softmax(scores) @ v, "
                        "and nngraph has no node kind for log-softmax attention")


# ----------------------------------------------------------------------- scores: pass-through and moves


@register_score_op(F.dropout, nn.Dropout, nn.Identity, "contiguous", "clone", "detach", aten.clone.default)
def _score_passthrough(ctx, node, s, *args, **kwargs):
    return s.with_(source=node)


@register_score_op(aten._assert_tensor_metadata.default)
def _score_metadata(ctx, node, *args, **kwargs):
    return Opaque(node.name)  # torch.export's dtype check of the scores: bookkeeping


@register_score_op("to", "float", "double", "type", "type_as", aten.to.dtype, aten.to.dtype_layout,
                   aten._to_copy.default)
def _score_cast(ctx, node, s, *args, **kwargs):
    if not isinstance(s, ScoreValue):
        raise _refuse(node, "casts a tensor to the type of attention scores")
    dtype = kwargs.get("dtype", next((a for a in args if isinstance(a, torch.dtype)), None))
    dtype = {"float": torch.float32, "double": torch.float64}.get(node.target, dtype)
    _record_cast(ctx, node, dtype)
    return s.with_(source=node)


def _axis_after(label: torch.Tensor, size: int) -> int | None:
    """The axis along which ``label`` is ``arange(size)`` and constant elsewhere, if any."""
    for a in range(label.dim()):
        line = _only_along(label, (a,))
        if line is not None and line.numel() == size and torch.equal(line.reshape(-1), torch.arange(size)):
            return a
    return None


def _move_scores(ctx, node, fn, s: ScoreValue, *args, **kwargs) -> ScoreValue:
    """A move of the scores (Swin's ``view`` splitting the batch into windows) that keeps their head,
    query and key axes whole and in order; followed on label tensors as in :mod:`nngraph.convert.movement`."""
    shape = ctx.shape_of(node)
    if fn in (_reshape, _expand) and shape is not None:
        args, kwargs = (tuple(shape),), {}
    if fn in _SHAPE_ONLY and shape is not None and tuple(shape) == s.shape:
        return s.with_(source=node)
    ndim = len(s.shape)
    found = {}
    for role, axis in (("head", s.head_axis), ("query", s.query_axis), ("key", s.key_axis)):
        if axis is None:
            continue
        view = [1] * ndim
        view[axis] = s.shape[axis]
        label = torch.arange(s.shape[axis]).view(view).expand(s.shape).contiguous()
        moved = fn(label, *args, **kwargs)
        found[role] = _axis_after(moved, s.shape[axis])
        if found[role] is None:
            raise _refuse(node, f"moves the {role} axis of attention scores (shape {s.shape} -> "
                                f"{tuple(moved.shape)}) so that it is no longer one whole axis")
    if len(set(found.values())) != len(found):
        raise _refuse(node, "moves attention scores so that their head and position axes cannot be told apart")
    return s.with_(shape=tuple(moved.shape), head_axis=found.get("head"), query_axis=found["query"],
                   key_axis=found["key"], source=node)


def _register_move(target, fn):
    @register_score_op(target)
    def convert(ctx, node, s, *args, **kwargs):
        return _move_scores(ctx, node, fn, s, *args, **kwargs)


for _target, _fn in _MOVES.items():
    _register_move(_target, _fn)


@register_score_op(operator.getitem)
def _score_getitem(ctx, node, obj, index):
    if isinstance(obj, (tuple, list)):
        return obj[index]
    return _move_scores(ctx, node, lambda t: t[index], obj)
