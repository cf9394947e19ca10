"""Weight matching: relabel (and, for odd activations, sign-flip) one model's hidden neurons to resemble another's.

Two models of one architecture trained apart put their features on different neurons; interpolating their
weights entry by entry (weight-space MixUp) then mixes unrelated neurons. Aligning first (Ainsworth et al.,
"Git Re-Basin", 2023; Shamsian et al., "Improved Generalization of Weight Space Networks via Augmentations",
2024) makes the mix meaningful. An alignment is a symmetry of the model, so the aligned graph is the same
function (tested in float64).

The search is coordinate descent over the layout's symmetry groups: with every other group fixed, the best
relabelling of one group is a linear assignment on the similarity of the neurons' biases and of their incoming
and outgoing weights (``scipy.optimize.linear_sum_assignment``). Where a group's neurons may also be negated
(odd activation, see :func:`tasks.augment.flippable_nodes`), a pair's score is the similarity's absolute value
and its sign says whether to negate.

Scope: graphs whose edges each carry one value (MLPs, INRs; not conv kernels) and groups without blocks
(not attention heads). Anything else raises ``ValueError``.
"""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from nngraph import schema

from .augment import apply_signs, flippable_nodes

__all__ = ["align_to", "align_all", "dense_weights", "group_similarity"]


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


def align_to(graph, reference, layout, max_rounds: int = 20):
    """``graph`` relabelled (and sign-flipped where the activation is odd) to look like ``reference``.

    Both are graphs of one architecture, ``layout`` that architecture's
    (:func:`nngraph.build_layout`); the result is a graph of the same function as ``graph`` in
    ``layout``'s node and edge order. ``probe`` features are not carried (they would need moving too).

    Returns:
        ``(aligned, perm, sign)``: ``perm`` ``(N,)`` maps old node -> new node, ``sign`` ``(N,)`` is
        ``+-1`` per new node.
    """
    for group in layout.symmetries:
        if group.block_size is not None:
            raise ValueError("alignment of block-structured groups (attention heads, norm groups) is not "
                             "supported")
    a_ref, b_ref = dense_weights(reference), reference.x[:, schema.BIAS].double()
    a_oth, b_oth = dense_weights(graph), graph.x[:, schema.BIAS].double()
    n = graph.num_nodes
    flippable = flippable_nodes(graph)
    inverse = torch.arange(n)  # new node -> old node
    sign = torch.ones(n, dtype=torch.float64)  # per new node
    for _ in range(max_rounds):
        changed = False
        for group in layout.symmetries:
            # the other graph in the current labelling: node v of it is old node inverse[v], times sign[v]
            a_cur = a_oth[inverse][:, inverse] * torch.outer(sign, sign)  # (N, N)
            b_cur = b_oth[inverse] * sign  # (N,)
            s = group_similarity(a_ref, b_ref, a_cur, b_cur, group.rows)  # (C, C)
            can_flip = bool(flippable[group.rows].all())
            score = s.abs() if can_flip else s
            ref_col, oth_col = linear_sum_assignment(score.numpy(), maximize=True)
            cols = torch.as_tensor(oth_col)[torch.argsort(torch.as_tensor(ref_col))]  # (C,) ref col -> cur col
            flips = torch.where(s[torch.arange(len(cols)), cols] < 0, -1.0, 1.0).double() if can_flip \
                else torch.ones(len(cols), dtype=torch.float64)
            if torch.equal(cols, torch.arange(len(cols))) and bool((flips > 0).all()):
                continue
            changed = True
            for row in group.rows:  # (C,) nodes
                inverse[row], sign[row] = inverse[row[cols]].clone(), sign[row[cols]] * flips
        if not changed:
            break
    perm = torch.empty_like(inverse)
    perm[inverse] = torch.arange(n)  # old node -> new node
    plain = graph.clone()
    if "probe" in plain:
        del plain.probe
    aligned = apply_signs(layout.permute_graph(plain, perm), sign.to(graph.x.dtype))
    return aligned, perm, sign


def align_all(graphs: list, reference, layout, progress: bool = False, desc: str = "aligning") -> list:
    """Every graph of ``graphs`` (one architecture, ``layout``'s) aligned to ``reference`` (:func:`align_to`)."""
    from tqdm.auto import tqdm

    return [align_to(g, reference, layout)[0] for g in tqdm(graphs, desc=desc, disable=not progress)]
