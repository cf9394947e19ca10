"""Slow, obvious references for nngraph.symmetry: dense ``N x N`` weight matrices and the per-group similarity
of weight matching written with them (MLPs and INRs: one value per edge)."""
from __future__ import annotations

import torch


def dense_weights(graph) -> torch.Tensor:
    """``(N, N)`` float64: ``A[u, v]`` is the value on the edge ``u -> v`` (0 where there is none)."""
    n = graph.num_nodes
    if graph.edge_attr.size(0) != graph.edge_index.size(1):
        raise ValueError("alignment supports graphs whose edges carry one value each (MLPs, INRs), "
                         f"this one has {graph.edge_attr.size(0)} entries on {graph.edge_index.size(1)} edges")
    a = torch.zeros(n, n, dtype=torch.float64)
    a[graph.edge_index[0], graph.edge_index[1]] = graph.edge_attr[:, 0].double()
    return a


def group_similarity(a_ref: torch.Tensor, b_ref: torch.Tensor, a_oth: torch.Tensor, b_oth: torch.Tensor,
                     rows: torch.Tensor) -> torch.Tensor:
    """``(C, C)``: ``S[i, j]`` = how much column ``i`` of the reference's group looks like column ``j`` of
    the other graph's, summed over the group's rows: bias products plus the dot products of incoming and
    of outgoing weights (both graphs in the reference's current labelling).

    Shapes:
        - ``a_*`` :math:`(N, N)` dense weights, ``b_*`` :math:`(N,)` biases, ``rows`` :math:`(R, C)` nodes.
    """
    s = torch.zeros(rows.shape[1], rows.shape[1], dtype=torch.float64)
    for row in rows:  # R is small: the activation spaces one permutation acts on
        s += torch.outer(b_ref[row], b_oth[row])  # (C, C)
        s += a_ref[:, row].T @ a_oth[:, row]  # incoming: (C, N) @ (N, C)
        s += a_ref[row] @ a_oth[row].T  # outgoing: (C, N) @ (N, C)
    return s
