"""Reading the edge kernels of a neural graph (see :mod:`nngraph.schema`).

Every edge carries its own kernel, of shape ``kernel_shape[e] = (depth, height, width)``; the
kernels are stored one after another, in edge order and flattened in C order, as the rows of
``edge_attr`` ``(W, 1)``. Nothing is padded, and no offsets are stored: they follow from the
shapes, so graphs of any architectures concatenate into a valid batch with a plain PyG
``DataLoader``. When every kernel is ``1x1`` (MLPs, SIRENs), ``W == E`` and row ``e`` is edge
``e``'s weight.

Imports only torch: shared by the converters, the encoder and the tasks.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "KERNEL_SHAPE_DTYPE",
    "edge_kernels",
    "entry_edges",
    "expand_to_entries",
    "kernel_groups",
    "kernel_offsets",
    "kernel_sizes",
    "reorder_kernels",
]

#: dtype of ``kernel_shape``: 4 bytes a side (a ViT-B graph has 86M edges)
KERNEL_SHAPE_DTYPE = torch.int32


def kernel_sizes(kernel_shape: Tensor) -> Tensor:
    """``(E,)`` long: the number of entries of every edge's kernel."""
    return kernel_shape.prod(1, dtype=torch.long)


def kernel_offsets(kernel_shape: Tensor) -> Tensor:
    """``(E,)`` long: the row of ``edge_attr`` where every edge's kernel starts."""
    sizes = kernel_sizes(kernel_shape)
    return sizes.cumsum(0) - sizes


def entry_edges(kernel_shape: Tensor, num_entries: int | None = None) -> Tensor:
    """``(W,)`` long: the edge every row of ``edge_attr`` belongs to."""
    num_edges = kernel_shape.size(0)
    if num_entries == num_edges:
        return torch.arange(num_edges, device=kernel_shape.device)
    return torch.repeat_interleave(torch.arange(num_edges, device=kernel_shape.device), kernel_sizes(kernel_shape),
                                   output_size=num_entries)


def expand_to_entries(values: Tensor, kernel_shape: Tensor, num_entries: int) -> Tensor:
    """Per-edge ``values`` ``(E, ...)`` repeated for every entry of the edge's kernel: ``(W, ...)``.

    Returns ``values`` itself when every kernel is ``1x1`` (``num_entries == E``)."""
    if num_entries == values.size(0):
        return values
    return torch.repeat_interleave(values, kernel_sizes(kernel_shape), dim=0, output_size=num_entries)


def reorder_kernels(edge_attr: Tensor, kernel_shape: Tensor | None, order: Tensor) -> Tensor:
    """The kernels of edges ``order`` ``(E',)``, one after another: ``edge_attr`` rows of the graph
    whose edge ``j`` is edge ``order[j]`` of this one (``kernel_shape=None``: every kernel is 1x1)."""
    if kernel_shape is None or edge_attr.size(0) == kernel_shape.size(0):
        return edge_attr[order]
    sizes = kernel_sizes(kernel_shape)[order]  # (E',)
    starts = kernel_offsets(kernel_shape)[order]  # (E',)
    new_starts = sizes.cumsum(0) - sizes
    total = int(sizes.sum())
    # row r of the result belongs to new edge j = edge_of[r], at position r - new_starts[j] of its kernel
    edge_of = torch.repeat_interleave(torch.arange(order.numel(), device=order.device), sizes, output_size=total)
    rows = torch.arange(total, device=order.device) - new_starts[edge_of] + starts[edge_of]
    return edge_attr[rows]


def kernel_groups(kernel_shape: Tensor, num_entries: int) -> list[tuple[tuple[int, int, int], Tensor, Tensor]]:
    """The edges of every kernel shape, with the rows of ``edge_attr`` their kernels occupy.

    Returns:
        ``[(shape, edges, rows), ...]`` with ``edges`` ``(E_s,)`` and ``rows`` ``(E_s, K_s)`` long,
        ``K_s = prod(shape)``: ``edge_attr[rows]`` is ``(E_s, K_s, C)``, the kernels of those edges.
        Shapes in increasing order.
    """
    if num_entries == kernel_shape.size(0):  # every kernel is 1x1
        edges = torch.arange(num_entries, device=kernel_shape.device)
        return [((1, 1, 1), edges, edges.view(-1, 1))]
    shapes, inverse = torch.unique(kernel_shape, dim=0, return_inverse=True)  # (S, 3), (E,)
    offsets = kernel_offsets(kernel_shape)
    out = []
    for s, shape in enumerate(shapes.tolist()):
        edges = torch.nonzero(inverse == s).view(-1)  # (E_s,)
        k = shape[0] * shape[1] * shape[2]
        rows = offsets[edges].unsqueeze(1) + torch.arange(k, device=kernel_shape.device)  # (E_s, K_s)
        out.append((tuple(shape), edges, rows))
    return out


def edge_kernels(edge_attr: Tensor, kernel_shape: Tensor) -> tuple[Tensor, ...]:
    """Every edge's kernel as a view of ``edge_attr`` at its own shape: ``(depth, height, width, C)``
    for edge ``e`` (slow for big graphs: a Python tuple of ``E`` views; for tests and inspection)."""
    pieces = torch.split(edge_attr, kernel_sizes(kernel_shape).tolist())
    return tuple(p.view(*shape, -1) for p, shape in zip(pieces, kernel_shape.tolist()))
