"""Softmax and log-softmax written out by hand, found again as one ``torch.softmax`` / ``torch.log_softmax``.

Models (and Hugging Face's older eager attention paths) spell the numerically stable softmax as
arithmetic::

    e = (x - x.amax(d, keepdim=True)).exp()      # or x.max(d, keepdim=True).values, .detach()ed or not
    p = e / e.sum(d, keepdim=True)               # softmax(x, d)
    l = (x - m) - (x - m).exp().sum(d, keepdim=True).log()   # log_softmax(x, d); also x - x.logsumexp(d, True)
    p = l.exp()                                   # softmax(x, d) (attention weights kept in log space)

:func:`fold_hand_written_softmax` rewrites the traced graph so that each such pattern is one
``torch.softmax(x, dim=d)`` (or ``torch.log_softmax``) node, which the converters handle as they
handle a softmax over the neuron axis (:mod:`nngraph.convert.softmax`) or over the key positions of
attention scores (:mod:`nngraph.convert.eager_attention`), and refuse everywhere else.

A pattern is folded only when it is exactly that function: the shift is the maximum over the
normalised axis of the very tensor it is subtracted from (with ``keepdim``, checked on the traced
shapes, so a broadcast along another axis never matches), numerator and denominator see the same
shift, and the sum runs over the same axis. Anything else is left as written, and the walk refuses
the reduction over the neuron axis (or over attention scores) by name. Inner nodes that other
operations still read stay in the graph for them; the rewritten graph computes what the model does.
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

aten = torch.ops.aten

_EXP = (torch.exp, "exp", aten.exp.default)
_LOG = (torch.log, "log", aten.log.default)
_SUB = (operator.sub, torch.sub, "sub", aten.sub.Tensor)
_DIV = (operator.truediv, torch.div, "div", aten.div.Tensor)
_SUM = (torch.sum, "sum", aten.sum.dim_IntList)
_AMAX = (torch.amax, "amax", aten.amax.default)
_MAX = (torch.max, "max", aten.max.dim)  # (values, indices)
_LOGSUMEXP = (torch.logsumexp, "logsumexp", aten.logsumexp.default)
_DETACH = ("detach", torch.detach, aten.detach.default, aten.alias.default)
_LOG_SOFTMAX = ("log_softmax", F.log_softmax, torch.log_softmax, aten.log_softmax.int, aten._log_softmax.default)


def _calls(node, targets) -> bool:
    return isinstance(node, fx.Node) and node.op in ("call_function", "call_method") and node.target in targets


def _ndim(node) -> int | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    shape = getattr(meta, "shape", None)
    return None if shape is None else len(shape)


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    shape = getattr(meta, "shape", None)
    return None if shape is None else tuple(shape)


def _unary(node, targets) -> fx.Node | None:
    """``x`` if ``node`` is ``target(x)`` with no other arguments."""
    if _calls(node, targets) and len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node):
        return node.args[0]
    return None


def _binary(node, targets) -> tuple[fx.Node, fx.Node] | None:
    """``(a, b)`` if ``node`` is ``target(a, b)`` of two tensors with no other arguments (no ``alpha``,
    no ``rounding_mode``)."""
    if _calls(node, targets) and len(node.args) == 2 and not node.kwargs and \
            all(isinstance(a, fx.Node) for a in node.args):
        return node.args[0], node.args[1]
    return None


def _reduction(node, targets) -> tuple[fx.Node, int] | None:
    """``(x, d)`` if ``node`` is ``target(x, d, keepdim=True)`` over the single axis ``d`` (made
    non-negative) and the traced shapes agree: the result is ``x``'s shape with axis ``d`` of size 1."""
    if not _calls(node, targets) or not isinstance(node.args[0] if node.args else None, fx.Node):
        return None
    names = ("dim", "keepdim")
    if len(node.args) > 3 or set(node.kwargs) - set(names):
        return None  # a dtype, an out tensor: not the plain reduction
    values = dict(zip(names, node.args[1:]))
    values.update(node.kwargs)
    dim, keepdim = values.get("dim"), values.get("keepdim", False)
    if isinstance(dim, (list, tuple)) and len(dim) == 1:
        dim = dim[0]
    x = node.args[0]
    ndim = _ndim(x)
    if not isinstance(dim, int) or isinstance(dim, bool) or keepdim is not True or ndim is None:
        return None
    dim %= ndim
    wanted = list(_shape(x))
    wanted[dim] = 1
    if _calls(node, _MAX):
        return x, dim  # a (values, indices) pair: its shape is checked on the values (see _maximum)
    return (x, dim) if _shape(node) == tuple(wanted) else None


def _peel(node, targets):
    while (inner := _unary(node, targets)) is not None:
        node = inner
    return node


def _maximum(node) -> tuple[fx.Node, int] | None:
    """``(x, d)`` if ``node`` is ``x.amax(d, keepdim=True)`` or ``x.max(d, keepdim=True).values`` /
    ``[0]``, detached or not (``x`` itself may be detached too: the same values)."""
    node = _peel(node, _DETACH)
    found = _reduction(node, _AMAX)
    if found is None and isinstance(node, fx.Node) and node.op == "call_function" and len(node.args) == 2 and (
            (node.target is operator.getitem and node.args[1] == 0) or
            (node.target is getattr and node.args[1] == "values")):
        pair = node.args[0]
        found = _reduction(pair, _MAX)
        if found is not None:
            wanted = list(_shape(found[0]))
            wanted[found[1]] = 1
            if _shape(node) != tuple(wanted):
                found = None
    if found is None:
        return None
    return _peel(found[0], _DETACH), found[1]


def _base(node: fx.Node, dim: int) -> tuple[fx.Node, bool]:
    """``(x, True)`` if ``node`` is ``x - max(x, dim)`` (the stable shift over ``dim``), else ``(node, False)``."""
    pair = _binary(node, _SUB)
    if pair is not None:
        x, m = pair
        found = _maximum(m)
        if found is not None and found[1] == dim and found[0] is _peel(x, _DETACH) and \
                _shape(x) is not None and _shape(node) == _shape(x):
            return x, True
    return node, False


def _same_softmax_input(a: fx.Node, b: fx.Node, dim: int) -> fx.Node | None:
    """The tensor ``x`` whose softmax over ``dim`` is ``exp(a) / sum(exp(b), dim)`` (or whose log-softmax
    is ``a - log(sum(exp(b), dim))``): ``a`` and ``b`` are both ``x``, or both ``x`` shifted by its
    maximum over ``dim``. ``None`` if they differ (another tensor, or one shifted and not the other)."""
    (xa, shifted_a), (xb, shifted_b) = _base(a, dim), _base(b, dim)
    if a is b:
        return xa
    if xa is xb and shifted_a == shifted_b:
        return xa
    return None


def _softmax_of(node) -> tuple[fx.Node, int] | None:
    """``(x, d)`` if ``node`` is ``exp(a) / exp(b).sum(d, keepdim=True)`` that equals ``softmax(x, d)``."""
    pair = _binary(node, _DIV)
    if pair is None:
        return None
    numerator, total = pair
    a = _unary(numerator, _EXP)
    found = _reduction(total, _SUM)
    if a is None or found is None:
        return None
    b, dim = _unary(found[0], _EXP), found[1]
    if b is None or _ndim(a) is None or _shape(node) != _shape(a):
        return None
    x = _same_softmax_input(a, b, dim)
    return None if x is None else (x, dim)


def _log_softmax_of(node) -> tuple[fx.Node, int] | None:
    """``(x, d)`` if ``node`` is ``a - log(exp(b).sum(d, keepdim=True))`` or ``a - logsumexp(b, d, True)``
    that equals ``log_softmax(x, d)``."""
    pair = _binary(node, _SUB)
    if pair is None:
        return None
    a, total = pair
    found = _reduction(total, _LOGSUMEXP)
    if found is not None:
        b, dim = found
    else:
        summed = _reduction(_unary(total, _LOG), _SUM)
        if summed is None or _unary(summed[0], _EXP) is None:
            return None
        b, dim = _unary(summed[0], _EXP), summed[1]
    if _shape(node) != _shape(a) or _ndim(a) is None:
        return None
    x = _same_softmax_input(a, b, dim)
    return None if x is None else (x, dim)


def _exp_of_log_softmax(gm: fx.GraphModule, node) -> tuple[fx.Node, int] | None:
    """``(x, d)`` if ``node`` is ``exp(log_softmax(x, d))``, which is ``softmax(x, d)``."""
    inner = _unary(node, _EXP)
    if not isinstance(inner, fx.Node) or not isinstance(inner.args[0] if inner.args else None, fx.Node):
        return None
    x = inner.args[0]
    if inner.op == "call_module":
        module = gm.get_submodule(inner.target)
        if type(module) is not nn.LogSoftmax or len(inner.args) != 1 or inner.kwargs or module.dim is None:
            return None
        dim = module.dim
    elif _calls(inner, _LOG_SOFTMAX):
        if inner.target is aten._log_softmax.default:
            if len(inner.args) != 3 or inner.args[2] is not False:
                return None  # half_to_float: a cast as well
            dim = inner.args[1]
        else:
            if len(inner.args) > 2 or set(inner.kwargs) - {"dim", "dtype", "_stacklevel"} or \
                    inner.kwargs.get("dtype") is not None:
                return None  # a dtype: a cast as well
            dim = inner.kwargs.get("dim", inner.args[1] if len(inner.args) > 1 else None)
    else:
        return None
    ndim = _ndim(x)
    if not isinstance(dim, int) or ndim is None:
        return None
    return x, dim % ndim


def _replace(gm: fx.GraphModule, node: fx.Node, fn, x: fx.Node, dim: int) -> None:
    """Replace ``node`` by ``fn(x, dim=dim)`` and drop the pattern's nodes nothing reads any more."""
    graph = gm.graph
    with graph.inserting_before(node):
        new = graph.call_function(fn, (x,), {"dim": dim})
    new.meta = {**node.meta, "written_out": node.meta.get("written_out", node.name)}  # error messages name it
    node.replace_all_uses_with(new)
    erased: set[fx.Node] = set()
    dead = [node]
    while dead:
        n = dead.pop()
        if n.graph is not graph or n.op not in ("call_function", "call_method") or n in erased:
            continue
        unread = [u for u in n.users if u.target is operator.getitem and not u.users]  # max's unused indices
        if len(unread) != len(n.users):
            continue
        for u in unread:
            graph.erase_node(u)
            erased.add(u)
        inputs = n.all_input_nodes
        graph.erase_node(n)
        erased.add(n)
        dead.extend(inputs)


def fold_hand_written_softmax(gm: fx.GraphModule) -> int:
    """Rewrite every hand-written (log-)softmax of ``gm`` (traced, with ``meta['tensor_meta']`` shapes)
    into one ``torch.softmax`` / ``torch.log_softmax`` node, in place. Returns how many were folded."""
    folded = 0
    for matcher, fn in ((_log_softmax_of, torch.log_softmax), (lambda n: _exp_of_log_softmax(gm, n), torch.softmax),
                        (_softmax_of, torch.softmax)):
        for node in list(gm.graph.nodes):
            if node.graph is not gm.graph or node not in gm.graph.nodes:
                continue
            found = matcher(node)
            if found is not None:
                _replace(gm, node, fn, *found)
                folded += 1
    if folded:
        gm.graph.lint()
        gm.recompile()
    return folded
