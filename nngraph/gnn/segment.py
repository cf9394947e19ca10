"""Sorted-segment aggregation over the edges of a neural graph, in both directions.

On CPU, scatter-max with autograd and the scatter-add behind the backward of a gather cost several
times a sorted segment reduction. The encoder therefore sorts the edges by target once per batch
(:func:`edge_order`), builds a :class:`MessageIndex` (:func:`message_index`) and every layer reduces
contiguous segments: forward messages (to the target) are already grouped, backward messages (to the
source) are grouped by one permutation. Gathers of node rows onto edges have a segment-sum backward.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class MessageIndex(NamedTuple):
    r"""Segments of an edge list sorted by target (``dst`` non-decreasing), for :math:`N` nodes.

    Forward messages (``u -> v``, aggregated at ``v``) are in edge order and form the segments
    ``dst_ptr``. Backward messages (aggregated at ``u``) are grouped by ``src_perm``.
    """

    src: Tensor  # (E,) source of every edge
    dst: Tensor  # (E,) target of every edge, non-decreasing
    dst_ptr: Tensor  # (N + 1,) edges of target v are dst_ptr[v]:dst_ptr[v + 1]
    src_perm: Tensor  # (E,) edge order sorted by source
    src_inv: Tensor  # (E,) position of every edge in that order
    src_sorted: Tensor  # (E,) src[src_perm], non-decreasing
    src_ptr: Tensor  # (N + 1,)
    in_degree: Tensor  # (N, 1) long
    out_degree: Tensor  # (N, 1) long


def edge_order(edge_index: Tensor) -> Tensor:
    """Permutation that sorts the edges by target (stable). Shapes: ``(2, E) -> (E,)``."""
    return torch.sort(edge_index[1], stable=True)[1]


def message_index(edge_index: Tensor, num_nodes: int) -> MessageIndex:
    """Builds the :class:`MessageIndex` of an edge list already sorted by target (see :func:`edge_order`)."""
    src, dst = edge_index[0], edge_index[1]
    if dst.numel() > 1 and bool((dst[1:] < dst[:-1]).any()):
        raise ValueError("message_index needs edges sorted by target: reorder them with edge_order(edge_index)")
    in_degree = torch.bincount(dst, minlength=num_nodes)  # (N,)
    out_degree = torch.bincount(src, minlength=num_nodes)  # (N,)
    src_sorted, src_perm = torch.sort(src, stable=True)  # (E,), (E,)
    src_inv = torch.empty_like(src_perm)
    src_inv[src_perm] = torch.arange(src_perm.numel(), device=src_perm.device)
    return MessageIndex(src, dst, _offsets(in_degree), src_perm, src_inv, src_sorted, _offsets(out_degree),
                        in_degree.unsqueeze(-1), out_degree.unsqueeze(-1))


def _offsets(count: Tensor) -> Tensor:
    ptr = count.new_zeros(count.numel() + 1)  # (S + 1,)
    ptr[1:] = torch.cumsum(count, 0)
    return ptr


class _SegmentSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, ptr: Tensor, seg_id: Tensor) -> Tensor:
        ctx.save_for_backward(seg_id)
        return torch.segment_reduce(x, "sum", offsets=ptr)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (seg_id,) = ctx.saved_tensors
        return grad.index_select(0, seg_id), None, None


class _SegmentMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, ptr: Tensor, seg_id: Tensor) -> Tensor:
        # scatter_reduce beats segment_reduce for max on CPU; empty segments keep the initial 0
        index = seg_id.view(-1, *([1] * (x.dim() - 1))).expand_as(x)  # (M, F)
        out = x.new_zeros(ptr.numel() - 1, *x.shape[1:]).scatter_reduce_(0, index, x, "amax", include_self=False)
        ctx.save_for_backward(x, out, seg_id)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, out, seg_id = ctx.saved_tensors
        not_max = x != out.index_select(0, seg_id)  # (M, F): all but the maxima (ties all get the gradient)
        return grad.index_select(0, seg_id).masked_fill_(not_max, 0.0), None, None


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, perm: Tensor | None, ptr: Tensor) -> Tensor:
        ctx.save_for_backward(perm if perm is not None else index, ptr)
        ctx.sorted = perm is None
        return table.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        perm, ptr = ctx.saved_tensors
        grad = grad if ctx.sorted else grad.index_select(0, perm)
        return torch.segment_reduce(grad, "sum", offsets=ptr), None, None, None


class _PermuteRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, perm: Tensor, inv_perm: Tensor) -> Tensor:
        ctx.save_for_backward(inv_perm)
        return x.index_select(0, perm)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inv_perm,) = ctx.saved_tensors
        return grad.index_select(0, inv_perm), None, None


def segment_sum(x: Tensor, ptr: Tensor, seg_id: Tensor) -> Tensor:
    r"""Sum of each segment ``x[ptr[s]:ptr[s+1]]`` (0 for empty segments); ``seg_id[m]`` is the segment of row ``m``.

    Shapes:
        - **input:** :math:`(M, F)` sorted by segment, ``ptr`` :math:`(S + 1,)`, ``seg_id`` :math:`(M,)`
        - **output:** :math:`(S, F)`
    """
    return _SegmentSum.apply(x, ptr, seg_id)


def segment_max(x: Tensor, ptr: Tensor, seg_id: Tensor) -> Tensor:
    r"""Maximum of each segment (0 for empty segments); see :func:`segment_sum`."""
    return _SegmentMax.apply(x, ptr, seg_id)


def gather_rows(table: Tensor, index: Tensor, perm: Tensor | None, ptr: Tensor) -> Tensor:
    r"""``table[index]`` whose backward is a sorted segment sum instead of a scatter-add.

    ``perm`` sorts ``index`` (:obj:`None` if ``index`` is already sorted) and ``ptr`` holds the segment
    offsets of the sorted index over the rows of ``table``.

    Shapes:
        - **input:** ``table`` :math:`(S, F)`, ``index`` and ``perm`` :math:`(M,)`, ``ptr`` :math:`(S + 1,)`
        - **output:** :math:`(M, F)`
    """
    return _GatherRows.apply(table, index, perm, ptr)


def permute_rows(x: Tensor, perm: Tensor, inv_perm: Tensor) -> Tensor:
    r"""``x[perm]`` for a permutation ``perm`` (with inverse ``inv_perm``): its backward is a gather too.

    Shapes:
        - **input:** :math:`(M, F)`, ``perm`` and ``inv_perm`` :math:`(M,)`
        - **output:** :math:`(M, F)`
    """
    return _PermuteRows.apply(x, perm, inv_perm)
