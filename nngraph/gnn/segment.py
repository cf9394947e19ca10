"""Aggregation and messages over the edges of a neural graph, with hand-written backward passes.

On the CPU a training step of the encoder is bound by memory traffic over edge-sized tensors
(:math:`E \\times H`), not by arithmetic. The ops here do in one autograd node what a composition of
PyTorch ops does in several, and keep fewer edge-sized tensors for the backward:

- :func:`segment_aggregate`: mean / max / min / std per segment (scatter-add, scatter-max) in one op;
- :func:`film_message`: ``act(table[index] * gamma + beta)``, re-gathering ``table[index]`` in the
  backward instead of keeping it.

:func:`message_index` holds what every layer of the encoder needs about the edge list (computed once).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class MessageIndex(NamedTuple):
    r"""Sources, targets and degrees of an edge list over :math:`N` nodes (see :func:`message_index`)."""

    src: Tensor  # (E,) source of every edge
    dst: Tensor  # (E,) target of every edge
    in_degree: Tensor  # (N, 1) long
    out_degree: Tensor  # (N, 1) long


def message_index(edge_index: Tensor, num_nodes: int) -> MessageIndex:
    """Builds the :class:`MessageIndex` of an edge list. Shapes: ``(2, E) -> MessageIndex``."""
    src, dst = edge_index[0], edge_index[1]
    in_degree = torch.bincount(dst, minlength=num_nodes).unsqueeze(-1)  # (N, 1)
    out_degree = torch.bincount(src, minlength=num_nodes).unsqueeze(-1)  # (N, 1)
    return MessageIndex(src, dst, in_degree, out_degree)


AGGREGATORS = ("mean", "max", "min", "std")


def check_aggregators(aggregators) -> tuple[str, ...]:
    """The aggregator names as a tuple; ``ValueError`` naming the choices if one is unknown or none is given."""
    unknown = [a for a in aggregators if a not in AGGREGATORS]
    if unknown or not aggregators:
        raise ValueError(f"Could not resolve aggregators {unknown or list(aggregators)} among choices "
                         f"{list(AGGREGATORS)}")
    return tuple(aggregators)


class _Aggregate(torch.autograd.Function):
    """Autograd of the composed ops keeps ``x * x`` and gathers once per aggregator; here the backward is
    ``dx = a[seg] + x * b[seg] + [x = max] g_max[seg] + [x = min] g_min[seg]`` from small per-segment tables.
    """

    @staticmethod
    def forward(ctx, x: Tensor, seg_id: Tensor, inv_count: Tensor, aggregators: tuple[str, ...]) -> Tensor:
        S = inv_count.size(0)
        out, saved = [], {}
        if "mean" in aggregators or "std" in aggregators:
            mean = x.new_zeros(S, *x.shape[1:]).index_add_(0, seg_id, x).mul_(inv_count)  # (S, F)
            saved["mean"] = mean
        if "std" in aggregators:
            var = x.new_zeros(S, *x.shape[1:]).index_add_(0, seg_id, x * x).mul_(inv_count).sub_(mean * mean)
            saved["positive"] = var > 0  # (S, F): where the clamp lets the gradient through
            saved["std"] = var.clamp_(min=0.0).add_(1e-6).sqrt_()  # (S, F)
        index = seg_id.view(-1, *([1] * (x.dim() - 1))).expand_as(x)  # (M, F)
        for name in aggregators:
            if name in ("max", "min"):
                saved[name] = x.new_zeros(S, *x.shape[1:]).scatter_reduce_(  # (S, F), 0 for empty segments
                    0, index, x, "a" + name, include_self=False)
            out.append(saved[name])
        ctx.names, ctx.aggregators = list(saved), aggregators
        ctx.save_for_backward(x, seg_id, inv_count, *saved.values())
        return torch.cat(out, dim=-1)  # (S, len(aggregators) * F)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, seg_id, inv_count, *values = ctx.saved_tensors
        saved = dict(zip(ctx.names, values))
        grads = dict(zip(ctx.aggregators, grad.chunk(len(ctx.aggregators), dim=-1)))  # each (S, F)
        a = grads["mean"] * inv_count if "mean" in grads else None  # (S, F)
        dx = None
        if "std" in grads:
            b = (grads["std"] * inv_count / saved["std"]).mul_(saved["positive"])  # (S, F): d std / dx = b (x - mean)
            a = -b * saved["mean"] if a is None else a - b * saved["mean"]
            dx = torch.addcmul(a.index_select(0, seg_id), x, b.index_select(0, seg_id))  # (M, F)
        elif a is not None:
            dx = a.index_select(0, seg_id)  # (M, F)
        for name in ("max", "min"):
            if name in grads:  # every row equal to the extremum gets the gradient (ties included)
                hit = x == saved[name].index_select(0, seg_id)  # (M, F)
                part = torch.where(hit, grads[name].index_select(0, seg_id), 0.0)  # (M, F)
                dx = part if dx is None else dx.add_(part)
        return dx, None, None, None


def segment_aggregate(x: Tensor, seg_id: Tensor, inv_count: Tensor, aggregators=("mean", "max", "std")) -> Tensor:
    r"""Concatenated ``aggregators`` (any of ``"mean"``, ``"max"``, ``"min"``, ``"std"``) of the rows of ``x``
    per segment, in one autograd node. Rows need not be sorted by segment.

    ``std`` is :math:`\sqrt{\max(\operatorname{mean}(x^2) - \operatorname{mean}(x)^2,\, 0) + 10^{-6}}`.
    Empty segments give 0 (``std``: :math:`10^{-3}`). At a maximum or minimum shared by several rows,
    every one of them gets the gradient.

    Args:
        x (Tensor): rows to aggregate.
        seg_id (Tensor): segment of every row.
        inv_count (Tensor): ``1 / rows`` of every segment (1 for empty segments).
        aggregators (sequence of str): which aggregations, in output order.

    Shapes:
        - **input:** ``x`` :math:`(M, F)`, ``seg_id`` :math:`(M,)` long, ``inv_count`` :math:`(S, 1)`
        - **output:** :math:`(S, \text{len(aggregators)} \cdot F)`
    """
    return _Aggregate.apply(x, seg_id, inv_count, check_aggregators(aggregators))


def inverse_count(count: Tensor, dtype: torch.dtype) -> Tensor:
    """``1 / count`` with empty segments at 1, as :func:`segment_aggregate` takes it. Shapes: ``(S, 1) -> (S, 1)``."""
    return 1.0 / count.to(dtype).clamp(min=1.0)


class _FiLMMessage(torch.autograd.Function):
    """``act(table[index] * gamma + beta)``; keeps the pre-activation, not the gathered rows."""

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, gamma: Tensor, beta: Tensor, act: nn.Module) -> Tensor:
        pre = torch.addcmul(beta, table.index_select(0, index), gamma)  # (E, H)
        ctx.act = act
        ctx.save_for_backward(table, index, gamma, pre)
        return act(pre)  # (E, H)

    @staticmethod
    def backward(ctx, grad: Tensor):
        table, index, gamma, pre = ctx.saved_tensors
        if isinstance(ctx.act, nn.SiLU):
            d_pre = torch.ops.aten.silu_backward(grad, pre)  # (E, H)
        else:  # any other activation: differentiate it again
            with torch.enable_grad():
                pre_ = pre.detach().requires_grad_()
                (d_pre,) = torch.autograd.grad(ctx.act(pre_), pre_, grad)
        rows = table.index_select(0, index)  # (E, H): gathered again rather than kept
        d_gamma = d_pre * rows if ctx.needs_input_grad[2] else None
        d_table = None
        if ctx.needs_input_grad[0]:
            d_rows = torch.mul(d_pre, gamma, out=rows)  # (E, H), reuses the gathered rows' memory
            d_table = torch.zeros_like(table).index_add_(0, index, d_rows)  # (N, H)
        return d_table, None, d_gamma, d_pre, None


def film_message(table: Tensor, index: Tensor, gamma: Tensor, beta: Tensor, act: nn.Module) -> Tensor:
    r"""FiLM-modulated messages :math:`\sigma(\mathbf{t}_{\text{index}[e]} \odot \boldsymbol{\gamma}_e + \boldsymbol{\beta}_e)`
    in one autograd node (``act`` is any activation module; :class:`~torch.nn.SiLU` has a fast path).

    Shapes:
        - **input:** ``table`` :math:`(N, H)`, ``index`` :math:`(E,)` long, ``gamma`` and ``beta`` :math:`(E, H)`
        - **output:** :math:`(E, H)`
    """
    return _FiLMMessage.apply(table, index, gamma, beta, act)
