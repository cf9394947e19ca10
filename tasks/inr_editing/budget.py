"""Parameter budgets of the editing models: counting the parameters a zoo's graphs use, and the head width
that keeps an ensemble editor (``k`` deltas per parameter) at the single-output editor's budget.

The kernel maps of the encoder and the head (:class:`~nngraph.gnn.KernelLinear`,
:class:`~nngraph.gnn.KernelDecoder`) own one row per position of a ``max_kernel_box`` (3x7x7 = 147 by
default); a graph whose kernels are all 1x1 (SIRENs, MLPs) reads and writes only the centre row, and the
other rows never receive a gradient. Counted as parameters they would dominate the budget (the head's
decoder alone grows by ``147 k`` per hidden unit), so the budget matched here counts the parameters the
zoo's kernel shapes reach (``used``); ``total`` counts every trainable entry.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from nngraph.gnn import KernelDecoder, KernelLinear, NodeEdgeHead
from nngraph.gnn.kernel import centred_positions

__all__ = ["kernel_boxes", "parameter_counts", "match_head_dim"]

#: Relative difference allowed between the matched and the reference budget.
TOLERANCE = 0.05


def kernel_boxes(graphs: Iterable) -> list[tuple[int, int, int]]:
    """The distinct kernel shapes ``(depth, height, width)`` of the graphs' edges, sorted."""
    shapes = set()
    for g in graphs:
        ks = getattr(g, "kernel_shape", None)
        if ks is None:
            shapes.add((1, 1, 1))
        else:
            shapes.update(tuple(int(v) for v in row) for row in torch.unique(ks, dim=0).tolist())
    return sorted(shapes)


def _box_rows(module: KernelLinear | KernelDecoder, boxes: list[tuple[int, int, int]]) -> int:
    """How many rows (box positions) of ``module``'s weight kernels of shapes ``boxes`` reach."""
    used = set()
    for box in boxes:
        used.update(centred_positions(box, module.max_kernel_box, torch.device("cpu")).tolist())
    return len(used)


def parameter_counts(model: nn.Module, boxes: list[tuple[int, int, int]]) -> dict[str, int]:
    """``{"total", "used"}``: trainable parameter entries of ``model``, all of them and those that graphs with
    kernels of shapes ``boxes`` reach (rows of unreached box positions left out)."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    unused = 0
    for m in model.modules():
        if isinstance(m, (KernelLinear, KernelDecoder)) and m.weight.requires_grad:
            spare = m.weight.size(0) - _box_rows(m, boxes)  # box positions no kernel reaches
            unused += spare * m.weight.size(1)
            if isinstance(m, KernelDecoder) and m.bias is not None and m.bias.requires_grad:
                unused += spare * m.out_channels  # the decoder's bias is per position too
    return {"total": total, "used": total - unused}


def match_head_dim(reference: nn.Module, head: NodeEdgeHead, num_outputs: int,
                   boxes: list[tuple[int, int, int]], tolerance: float = TOLERANCE) -> tuple[int, dict[str, int]]:
    """The head width at which an editor with ``num_outputs`` deltas has ``reference``'s used budget.

    Args:
        reference: the single-output editor (its encoder and ``head`` are counted).
        head: ``reference``'s :class:`~nngraph.gnn.NodeEdgeHead`; only the head is rebuilt, with
            ``num_outputs`` and candidate widths ``1 .. 4 * hidden_dim``.
        boxes: the zoo's kernel shapes (:func:`kernel_boxes`).

    Returns:
        ``(head_dim, {"total", "used"})``: the width whose used count is closest to the reference's, and
        the counts of the editor built with it.

    Raises:
        ValueError: when no width comes within ``tolerance`` of the reference.
    """
    target = parameter_counts(reference, boxes)
    own = parameter_counts(head, boxes)
    rest = {key: target[key] - own[key] for key in target}  # the encoder's part, the same at every width
    best = None
    with torch.device("meta"):  # counting only: no memory, no random numbers drawn
        for width in range(1, 4 * head.hidden_dim + 1):
            candidate = NodeEdgeHead(head.hidden_dim, head.node_out_dim, head.edge_out.max_kernel_box,
                                     head.init_scale, num_outputs=num_outputs, head_dim=width)
            counts = {key: rest[key] + value for key, value in parameter_counts(candidate, boxes).items()}
            if best is None or abs(counts["used"] - target["used"]) < abs(best[1]["used"] - target["used"]):
                best = (width, counts)
    width, counts = best
    if abs(counts["used"] - target["used"]) > tolerance * target["used"]:
        raise ValueError(f"no head width keeps {num_outputs} outputs within {tolerance:.0%} of the single-output "
                         f"editor's {target['used']} parameters (closest: width {width}, {counts['used']}); "
                         "pass --no-ensemble-match-params to keep the encoder's width")
    return width, counts
