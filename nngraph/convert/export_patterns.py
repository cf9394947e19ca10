"""Activations that torch.export spells out as arithmetic, found again as one activation.

Hugging Face writes some activations as plain tensor arithmetic (GPT-2's ``gelu_new``:
``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3)))``). Exported, they are a handful of
``mul``/``add``/``pow``/``tanh`` nodes that nngraph would refuse one by one; CLIP's QuickGELU is
``x * sigmoid(1.702 * x)``. :func:`find_activations`
recognises them, so the lifter emits the equivalent ``torch.nn`` activation instead. A pattern
matches only when its inner nodes have no other users, so nothing else reads a partial result.
"""
from __future__ import annotations

import math

import torch
from torch import fx, nn

from ..modules import Swish

aten = torch.ops.aten


def _is(node, target) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target == target


def _close(value, wanted: float, rel: float = 1e-6) -> bool:
    return isinstance(value, (int, float)) and abs(float(value) - wanted) <= rel * abs(wanted)


def _scalar_operand(node, target, wanted: float):
    """``other`` if ``node`` is ``target(other, c)`` or ``target(c, other)`` with ``c == wanted``."""
    if not _is(node, target) or len(node.args) != 2:
        return None
    a, b = node.args
    if isinstance(a, fx.Node) and _close(b, wanted):
        return a
    if isinstance(b, fx.Node) and _close(a, wanted):
        return b
    return None


def _tanh_gelu(final: fx.Node):
    """``(x, inner nodes)`` if ``final`` is GPT-2's tanh-approximated GELU of ``x``."""
    if not _is(final, aten.mul.Tensor) or not all(isinstance(a, fx.Node) for a in final.args):
        return None
    for half_node, one_plus in (final.args, final.args[::-1]):
        x = _scalar_operand(half_node, aten.mul.Tensor, 0.5)
        tanh = _scalar_operand(one_plus, aten.add.Tensor, 1.0)
        if x is None or not _is(tanh, aten.tanh.default):
            continue
        scaled = tanh.args[0]
        inner = _scalar_operand(scaled, aten.mul.Tensor, math.sqrt(2.0 / math.pi))
        if not _is(inner, aten.add.Tensor) or x not in inner.args:
            continue
        cubic = inner.args[1] if inner.args[0] is x else inner.args[0]
        power = _scalar_operand(cubic, aten.mul.Tensor, 0.044715)
        if not _is(power, aten.pow.Tensor_Scalar) or power.args[0] is not x or not _close(power.args[1], 3.0):
            continue
        nodes = [half_node, one_plus, tanh, scaled, inner, cubic, power]
        return x, nodes
    return None


def _swish(final: fx.Node):
    """``(x, inner nodes, beta)`` if ``final`` is ``x * sigmoid(beta * x)``."""
    if not _is(final, aten.mul.Tensor) or not all(isinstance(a, fx.Node) for a in final.args):
        return None
    for x, gate in (final.args, final.args[::-1]):
        if not _is(gate, aten.sigmoid.default):
            continue
        scaled = gate.args[0]
        if not _is(scaled, aten.mul.Tensor) or x not in scaled.args:
            continue
        beta = scaled.args[1] if scaled.args[0] is x else scaled.args[0]
        if isinstance(beta, (int, float)):
            return x, [gate, scaled], float(beta)
    return None


_CASTS = (aten.to.dtype, aten.to.dtype_layout, aten._to_copy.default)


def _through_casts(node):
    while _is(node, _CASTS[0]) or _is(node, _CASTS[1]) or _is(node, _CASTS[2]):
        node = node.args[0]
    return node


def _offset_weight(node, is_param):
    """``(parameter node, offset, inner nodes)`` for a weight read as ``param`` or as ``param + 1`` (Gemma's
    ``1 + weight``), casts allowed around the parameter, else ``None``."""
    offset, inner = 0.0, []
    added = _scalar_operand(node, aten.add.Tensor, 1.0)
    if added is not None:
        offset, inner, node = 1.0, [node], added
    if not isinstance(node, fx.Node) or not is_param(_through_casts(node)):
        return None
    while node is not _through_casts(node):
        inner.append(node)
        node = node.args[0]
    return node, offset, inner


def _rms_norm(final: fx.Node, is_param):
    """``(x, inner nodes, weight node, eps, offset)`` if ``final`` is ``(offset + weight) * (x * rsqrt(mean(x ** 2,
    -1) + eps))`` (LLaMA's and T5's RMSNorm, offset 0; Gemma's, offset 1; casts to float32 and back may sit in
    between)."""
    if not _is(final, aten.mul.Tensor):
        return None
    for read, normed in (final.args, final.args[::-1]):
        weighted = _offset_weight(read, is_param) if isinstance(normed, fx.Node) else None
        if weighted is None:
            continue
        weight, offset, weight_inner = weighted
        inner = list(weight_inner)
        body = normed
        while body is not _through_casts(body):
            inner.append(body)
            body = body.args[0]
        if not _is(body, aten.mul.Tensor):
            continue
        for x, rsqrt in (body.args, body.args[::-1]):
            if not (_is(rsqrt, aten.rsqrt.default) and isinstance(x, fx.Node)):
                continue
            shifted = rsqrt.args[0]
            mean = _scalar_operand(shifted, aten.add.Tensor, shifted.args[1]) if _is(shifted, aten.add.Tensor) else None
            eps = shifted.args[1] if mean is not None else None
            if not (_is(mean, aten.mean.dim) and list(mean.args[1]) in ([-1],) and (mean.args[2:3] == (True,)
                                                                                  or mean.kwargs.get("keepdim"))):
                continue
            square = mean.args[0]
            if not (_is(square, aten.pow.Tensor_Scalar) and _through_casts(square.args[0]) is _through_casts(x)
                    and _close(square.args[1], 2.0)):
                continue
            if square.args[0] is not x and set(square.args[0].users) == {square}:
                inner.append(square.args[0])  # T5 casts the input to float32 for the variance only
            return x, inner + [body, rsqrt, shifted, mean, square], weight, float(eps), offset
    return None


def _bookkeeping_users(nodes) -> set[fx.Node]:
    """Users of ``nodes`` that only assert metadata (dtype checks torch.export inserts)."""
    return {u for n in nodes for u in n.users if _is(u, aten._assert_tensor_metadata.default)}


def find_norms(graph: fx.Graph, is_param) -> tuple[dict[fx.Node, tuple[fx.Node, fx.Node, float, float]], set[fx.Node]]:
    """``({final node: (input, weight node, eps, offset)}, inner nodes)`` for every RMSNorm written as arithmetic
    (``offset``: 1 where the weight is read as ``1 + weight``)."""
    found, skip = {}, set()
    for node in graph.nodes:
        match = _rms_norm(node, is_param)
        if match is None:
            continue
        x, inner, weight, eps, offset = match
        asserts = _bookkeeping_users(inner)
        if any(set(n.users) - (set(inner) | {node} | asserts) for n in inner):
            continue
        found[node] = (x, weight, eps, offset)
        skip.update(inner)
        skip.update(asserts)
    return found, skip


def find_activations(graph: fx.Graph) -> tuple[dict[fx.Node, tuple[fx.Node, nn.Module]], set[fx.Node]]:
    """``({final node: (input, activation module)}, inner nodes to skip)`` for every activation of
    the graph written as arithmetic."""
    found: dict[fx.Node, tuple[fx.Node, nn.Module]] = {}
    skip: set[fx.Node] = set()
    for node in graph.nodes:
        match = _tanh_gelu(node)
        if match is not None:
            (x, inner), activation = match, nn.GELU(approximate="tanh")
        elif (swish := _swish(node)) is not None:
            x, inner, beta = swish
            activation = Swish(beta)
        else:
            continue
        asserts = _bookkeeping_users(inner)
        users_inside = set(inner) | {node} | asserts
        if any(set(n.users) - users_inside for n in inner):
            continue  # a partial result is read elsewhere: keep the arithmetic (and refuse it)
        found[node] = (x, activation)
        skip.update(inner)
        skip.update(asserts)
    return found, skip


def _l2_normalize(final: fx.Node):
    """``(x, inner nodes, p, dim, eps)`` if ``final`` is ``F.normalize(x, p, dim, eps)`` as torch.export spells it:
    ``x / expand_as(clamp_min(linalg_vector_norm(x, p, [dim], keepdim=True), eps), x)``."""
    if not _is(final, aten.div.Tensor) or not all(isinstance(a, fx.Node) for a in final.args):
        return None
    x, expanded = final.args
    if not (_is(expanded, aten.expand_as.default) and expanded.args[1] is x):
        return None
    clamped = expanded.args[0]
    if not (_is(clamped, aten.clamp_min.default) and isinstance(clamped.args[1], (int, float))):
        return None
    norm = clamped.args[0]
    if not (_is(norm, aten.linalg_vector_norm.default) and norm.args[0] is x and len(norm.args) >= 4
            and norm.args[3] is True and isinstance(norm.args[2], (list, tuple)) and len(norm.args[2]) == 1):
        return None
    return x, [expanded, clamped, norm], float(norm.args[1]), int(norm.args[2][0]), float(clamped.args[1])


def find_normalizes(graph: fx.Graph) -> tuple[dict[fx.Node, tuple[fx.Node, float, int, float]], set[fx.Node]]:
    """``({final node: (input, p, dim, eps)}, inner nodes)`` for every ``F.normalize`` export spelled out."""
    found, skip = {}, set()
    for node in graph.nodes:
        match = _l2_normalize(node)
        if match is None:
            continue
        x, inner, p, dim, eps = match
        asserts = _bookkeeping_users(inner)
        if any(set(n.users) - (set(inner) | {node} | asserts) for n in inner):
            continue
        found[node] = (x, p, dim, eps)
        skip.update(inner)
        skip.update(asserts)
    return found, skip
