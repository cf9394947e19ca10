"""Sorted-segment aggregation over the doubled (forward + backward) message list of a neural graph.

Scatter-max with autograd costs several times a sorted segment reduction on CPU. The encoder therefore
builds the doubled message list once per batch (:func:`bidirectional_index`), sorts it by the slot each
message is aggregated into, and every layer reduces contiguous segments (:func:`segment_sum`,
:func:`segment_max`, whose backward passes are single gathers).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class BidirectionalIndex(NamedTuple):
    r"""Where each of the :math:`2E` messages of a graph with :math:`N` nodes is read and written.

    Message ``2k`` is the forward message of edge ``k`` (``u -> v``): it reads row ``2u`` of an
    interleaved node table :math:`(2N, H)` (forward projection of ``u``) and is aggregated into slot
    ``2v``. Message ``2k + 1`` is the backward message: it reads row ``2v + 1`` and is aggregated into
    slot ``2u + 1``. So a node table of shape :math:`(N, 2H)` and the aggregate of shape
    :math:`(2N, F)` are both free views of per-node ``[forward | backward]`` layouts.
    """

    src: Tensor  # (2E,) row of the interleaved node table each message reads
    dst: Tensor  # (2E,) slot each message is aggregated into
    perm: Tensor  # (2E,) message order sorted by slot
    inv_perm: Tensor  # (2E,) position of each message in that order
    seg_id: Tensor  # (2E,) dst[perm], non-decreasing
    ptr: Tensor  # (2N + 1,) segment offsets of the sorted messages
    count: Tensor  # (2N, 1) long, messages per slot
    src_perm: Tensor  # (2E,) message order sorted by the row it reads (for the backward of gathers)
    src_seg_id: Tensor  # (2E,) src[src_perm]
    src_ptr: Tensor  # (2N + 1,)


def bidirectional_index(edge_index: Tensor, num_nodes: int) -> BidirectionalIndex:
    """Builds the doubled, slot-sorted message index of ``edge_index`` (see :class:`BidirectionalIndex`)."""
    u, v = edge_index[0], edge_index[1]
    src = torch.stack([2 * u, 2 * v + 1], dim=1).reshape(-1)  # (2E,) interleaved
    dst = torch.stack([2 * v, 2 * u + 1], dim=1).reshape(-1)  # (2E,) interleaved
    seg_id, perm = torch.sort(dst, stable=True)  # (2E,), (2E,)
    inv_perm = torch.empty_like(perm)
    inv_perm[perm] = torch.arange(perm.numel(), device=perm.device)
    count = torch.bincount(dst, minlength=2 * num_nodes)  # (2N,)
    src_seg_id, src_perm = torch.sort(src, stable=True)  # (2E,), (2E,)
    return BidirectionalIndex(src, dst, perm, inv_perm, seg_id, _offsets(count), count.unsqueeze(-1),
                              src_perm, src_seg_id, _offsets(torch.bincount(src, minlength=2 * num_nodes)))


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
        out = torch.segment_reduce(x, "max", offsets=ptr)  # -inf in empty segments
        out = torch.where(torch.isinf(out) & (out < 0), torch.zeros_like(out), out)
        ctx.save_for_backward(x, out, seg_id)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, out, seg_id = ctx.saved_tensors
        mask = x == out.index_select(0, seg_id)  # (M, F): the maxima (ties all receive the gradient)
        return grad.index_select(0, seg_id) * mask, None, None


def segment_sum(x: Tensor, ptr: Tensor, seg_id: Tensor) -> Tensor:
    r"""Sum of each segment ``x[ptr[s]:ptr[s+1]]`` (0 for empty segments).

    Shapes:
        - **input:** :math:`(M, F)` sorted by segment, ``ptr`` :math:`(S + 1,)`, ``seg_id`` :math:`(M,)`
        - **output:** :math:`(S, F)`
    """
    return _SegmentSum.apply(x, ptr, seg_id)


def segment_max(x: Tensor, ptr: Tensor, seg_id: Tensor) -> Tensor:
    r"""Maximum of each segment (0 for empty segments); see :func:`segment_sum`."""
    return _SegmentMax.apply(x, ptr, seg_id)


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, perm: Tensor, ptr: Tensor, seg_id: Tensor) -> Tensor:
        ctx.save_for_backward(perm, ptr, seg_id)
        return table.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        perm, ptr, seg_id = ctx.saved_tensors
        return torch.segment_reduce(grad.index_select(0, perm), "sum", offsets=ptr), None, None, None, None


class _PermuteRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, perm: Tensor, inv_perm: Tensor) -> Tensor:
        ctx.save_for_backward(inv_perm)
        return x.index_select(0, perm)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inv_perm,) = ctx.saved_tensors
        return grad.index_select(0, inv_perm), None, None


def gather_rows(table: Tensor, index: Tensor, perm: Tensor, ptr: Tensor, seg_id: Tensor) -> Tensor:
    r"""``table[index]`` whose backward is a sorted segment sum instead of a scatter-add.

    ``perm`` sorts ``index`` (``seg_id = index[perm]``) and ``ptr`` holds the segment offsets over the
    rows of ``table``.

    Shapes:
        - **input:** ``table`` :math:`(S, F)`, ``index``, ``perm``, ``seg_id`` :math:`(M,)`, ``ptr`` :math:`(S + 1,)`
        - **output:** :math:`(M, F)`
    """
    return _GatherRows.apply(table, index, perm, ptr, seg_id)


def permute_rows(x: Tensor, perm: Tensor, inv_perm: Tensor) -> Tensor:
    r"""``x[perm]`` for a permutation ``perm`` (with inverse ``inv_perm``): backward is a gather too.

    Shapes:
        - **input:** :math:`(M, F)`, ``perm`` and ``inv_perm`` :math:`(M,)`
        - **output:** :math:`(M, F)`
    """
    return _PermuteRows.apply(x, perm, inv_perm)
