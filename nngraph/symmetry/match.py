"""Aligning models by their symmetries (weight matching).

:func:`align` relabels a model's hidden neurons to match a reference of the same architecture by weight
  matching (Ainsworth et al., *Git Re-Basin*, ICLR 2023): coordinate descent over the symmetry groups, each step a
  linear assignment on the similarity of the neurons' features and of their incoming and outgoing weights
  (whole kernels), computed from the sparse edge lists (no ``N x N`` matrix); block groups (attention heads)
  are matched block to block, then within blocks. Where a group's neurons may also be negated (an odd
  activation, :func:`~nngraph.symmetry.scale.flippable_nodes`), a pair's score is the similarity's absolute value
  and its sign says whether to negate. The result computes exactly the function of the model.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..convert import build_layout
from ..convert.layout import Layout, SymmetryGroup
from ..kernels import entry_edges, kernel_offsets
from .activations import neuron_samples
from .permute import _tuple
from .scale import apply_signs, flippable_nodes

__all__ = ["align", "align_all", "align_graph", "weight_matching"]


def align(reference: nn.Module, model: nn.Module, example_inputs: Sequence[torch.Tensor] | torch.Tensor | None = None,
          max_rounds: int = 30, return_permutation: bool = False, data: torch.Tensor | Sequence | None = None):
    """A copy of ``model`` whose hidden neurons are relabelled (and negated where that is a symmetry) to match
    ``reference`` (weight matching).

    Args:
        reference: the model to match.
        model: a model of the same architecture (same parameter names and shapes, same layout).
        example_inputs: inputs as for :func:`nngraph.to_graph` (made up from the first layer when omitted).
        max_rounds: passes over all symmetry groups at most (it stops when a pass changes nothing).
        return_permutation: also return the node relabelling ``(N,)`` (old node -> new node of ``model``'s graph)
            and the signs ``(N,)`` (``+-1`` per new node).
        data: inputs (a batch, or a tuple for several model inputs) for **activation matching**: a group's
            neurons are matched by the correlation of their values on ``data`` over every input and position
            (:func:`~nngraph.symmetry.activations.neuron_samples`) instead of their weights; groups whose neurons
            show no values there are matched by weights.

    Returns:
        the aligned copy (the same function as ``model``), and with ``return_permutation`` ``(perm, sign)``.

    Raises:
        ValueError: for models of different architectures.
    """
    inputs = _tuple(example_inputs)
    _check_same_architecture(reference, model)
    layout = build_layout(model, inputs)
    other = build_layout(reference, inputs)
    if other is not layout and not _same_structure(other, layout):
        raise ValueError("align: the two models convert to different graphs (another architecture or other "
                         "constants); alignment needs one architecture")
    activations = None
    if data is not None:
        data = _tuple(data)
        activations = (neuron_samples(reference, data, layout), neuron_samples(model, data, layout))
    aligned, perm, sign = align_graph(layout.to_graph(model), layout.to_graph(reference), layout, max_rounds,
                                      activations)
    out = layout.from_graph(aligned, model)
    return (out, (perm, sign)) if return_permutation else out


def align_graph(graph, reference, layout: Layout, max_rounds: int = 30, activations=None):
    """``graph`` relabelled (and negated where the activation is odd) to look like ``reference``, both graphs of
    ``layout``'s architecture; ``probe`` features are dropped (they would need moving too).

    Returns:
        ``(aligned, perm, sign)``: ``perm`` ``(N,)`` maps old node -> new node, ``sign`` ``(N,)`` is ``+-1`` per
        new node.
    """
    plain = graph.clone()
    if "probe" in plain:
        del plain.probe
    perm, sign = weight_matching(layout, reference, plain, max_rounds, activations)
    return apply_signs(layout.permute_graph(plain, perm), sign.to(graph.x.dtype)), perm, sign


def align_all(graphs: list, reference, layout: Layout, progress: bool = False, desc: str = "aligning") -> list:
    """Every graph of ``graphs`` (one architecture, ``layout``'s) aligned to ``reference`` (:func:`align_graph`)."""
    from tqdm.auto import tqdm

    return [align_graph(g, reference, layout)[0] for g in tqdm(graphs, desc=desc, disable=not progress)]


def weight_matching(layout: Layout, reference, graph, max_rounds: int = 30,
                    activations: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(perm, sign)``: the relabelling ``(N,)`` (old node -> new node) and the signs ``(N,)`` per new node that
    make ``graph`` most like ``reference`` (both graphs of ``layout``), by coordinate descent over the symmetry
    groups (module docstring). ``activations``: ``(N, P)`` standardised values of the reference's and of
    ``graph``'s neurons on common inputs, to match groups by instead of weights where they are not zero."""
    n = layout.num_nodes
    perm, sign = torch.arange(n), torch.ones(n, dtype=torch.float64)
    features = _Features(layout, reference)
    flippable = flippable_nodes(reference)
    relabel = lambda: apply_signs(layout.permute_graph(graph, perm), sign.to(graph.x.dtype))  # noqa: E731
    current = relabel()
    for _ in range(max_rounds):
        changed = False
        for group in layout.symmetries:
            can_flip = group.block_size is None and bool(flippable[group.rows].all())
            step = _best_group_step(group, features, current, layout, can_flip, _moved(activations, perm, sign))
            if step is None:
                continue
            changed = True
            move, flips = step
            moved_sign = torch.empty_like(sign)
            moved_sign[move] = sign  # the signs travel with their neurons
            perm, sign = move[perm], moved_sign * flips
            current = relabel()  # only after a change: the next group reads the graph as relabelled so far
        if not changed:
            break
    return perm, sign


class _Features:
    """Per node, the sparse description weight matching compares: node features, and for every edge entry the
    (other end, kernel position, edge type) key with its value, for incoming and outgoing edges."""

    def __init__(self, layout: Layout, reference):
        src, dst = layout.edge_index
        self.num_nodes = layout.num_nodes
        entries = entry_edges(layout.kernel_shape, layout.num_entries)  # (W,) edge of every kernel entry
        position = torch.arange(layout.num_entries) - kernel_offsets(layout.kernel_shape)[entries]  # (W,)
        kind = layout.edge_type[entries]
        self.entry_src, self.entry_dst = src[entries], dst[entries]  # (W,)
        span = int(position.max()) + 1 if position.numel() else 1
        types = int(layout.edge_type.max()) + 1 if layout.edge_type.numel() else 1
        # a key per (other end, kernel position, edge type): entries with equal keys are compared
        self.in_key = (self.entry_src * span + position) * types + kind
        self.out_key = (self.entry_dst * span + position) * types + kind
        self.kinds = span * types  # key % kinds: the (kernel position, edge type) part of a key
        self.reference = self._values(reference)
        self.reference_x = reference.x.double()

    @staticmethod
    def _values(graph) -> torch.Tensor:
        return graph.edge_attr[:, 0].double()

    def similarity(self, rows: torch.Tensor, current, satellites: torch.Tensor | None = None,
                   block_size: int | None = None) -> torch.Tensor:
        """``(C, C)``: ``S[i, j]`` how much column ``i`` of the reference's rows looks like column ``j`` of the
        current graph's, summed over the rows (``satellites`` ``(S, C // block_size)``: nodes that move with
        the blocks, such as attention heads)."""
        c = rows.shape[1]
        mine_x = self.reference_x[rows].transpose(0, 1).reshape(c, -1)  # (C, R * F)
        s = mine_x @ current.x.double()[rows].transpose(0, 1).reshape(c, -1).T  # (C, C)
        values = self._values(current)
        column = torch.full((self.num_nodes,), -1, dtype=torch.long)
        column[rows.reshape(-1)] = torch.arange(c).repeat(rows.shape[0])  # node -> its column in the group
        block = torch.full((self.num_nodes,), -1, dtype=torch.long)  # satellite -> the block it moves with
        if satellites is not None:
            block[satellites.reshape(-1)] = torch.arange(satellites.shape[1]).repeat(satellites.shape[0])
        for end, other, key in ((self.entry_dst, self.entry_src, self.in_key),
                                (self.entry_src, self.entry_dst, self.out_key)):
            mine = column[end] >= 0  # entries touching the group's nodes at this end
            # an entry between two neurons of the group (a norm's identity edge from the neuron it normalizes)
            # moves with both ends: compared as "to its own column", skipped if it joins two columns
            inside = mine & (column[other] >= 0)
            key = torch.where(inside, -1 - key % self.kinds, key)
            mine = mine & (~inside | (column[other] == column[end]))
            if satellites is not None:  # an edge from a head to its member: compared as "from its own block's"
                held = mine & (block[other] >= 0)
                key = torch.where(held, -1 - self.kinds - key % self.kinds, key)
                mine = mine & (~held | (block[other] == column[end] // block_size))
            if not bool(mine.any()):
                continue
            keys, index = torch.unique(key[mine], return_inverse=True)
            cols = column[end[mine]]
            a = torch.zeros(keys.numel(), c, dtype=torch.float64)
            b = torch.zeros(keys.numel(), c, dtype=torch.float64)
            a.index_put_((index, cols), self.reference[mine], accumulate=True)
            b.index_put_((index, cols), values[mine], accumulate=True)
            s += a.T @ b
        return s


def _best_group_step(group: SymmetryGroup, features: _Features, current, layout: Layout,
                     can_flip: bool, activations=None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(move (N,), flips (N,))``: the relabelling of one group (and, where ``can_flip``, the signs of its new
    columns) that best matches the reference, or ``None`` if it changes nothing. ``activations``: the reference's
    and the current graph's ``(N, P)`` neuron values, compared instead of weights where the group has any."""
    s = features.similarity(group.rows, current, group.satellites, group.block_size)  # (C, C)
    if activations is not None:
        ref, cur = activations
        act = sum((ref[row] @ cur[row].T).double() for row in group.rows)  # (C, C): correlations summed over the rows
        if bool(act.abs().gt(0).any()):  # else no values there (queries, keys): weights alone
            s = act + 1e-3 * s / s.abs().max().clamp_min(1e-300)  # the weights break ties (dead neurons)
    c = s.shape[0]
    block_cols = None
    if group.block_size is None:
        cols = _assignment(s.abs() if can_flip else s)
    else:
        size = group.block_size
        blocks = c // size
        tiles = s.reshape(blocks, size, blocks, size).permute(0, 2, 1, 3)  # (B, B, size, size)
        inner = [[_assignment(tiles[p, q]) for q in range(blocks)] for p in range(blocks)]
        score = torch.tensor([[float(tiles[p, q][torch.arange(size), inner[p][q]].sum()) for q in range(blocks)]
                              for p in range(blocks)], dtype=torch.float64)
        block_cols = _assignment(score)  # reference block p takes current block block_cols[p]
        cols = torch.cat([block_cols[p] * size + inner[p][int(block_cols[p])] for p in range(blocks)])
    negate = (s[torch.arange(c), cols] < 0) if can_flip else torch.zeros(c, dtype=torch.bool)  # (C,)
    if torch.equal(cols, torch.arange(c)) and not bool(negate.any()):
        return None
    move = torch.arange(layout.num_nodes)
    move[group.rows[:, cols].reshape(-1)] = group.rows.reshape(-1)  # the current column cols[i] moves to column i
    if group.satellites is not None and block_cols is not None:
        move[group.satellites[:, block_cols].reshape(-1)] = group.satellites.reshape(-1)
    flips = torch.ones(layout.num_nodes, dtype=torch.float64)
    flips[group.rows[:, negate].reshape(-1)] = -1.0
    return move, flips


def _moved(activations, perm: torch.Tensor, sign: torch.Tensor):
    """The reference's values and the current graph's (``graph``'s relabelled by ``perm``, negated by ``sign``)."""
    if activations is None:
        return None
    ref, mine = activations
    current = torch.empty_like(mine)
    current[perm] = mine
    return ref, current * sign.unsqueeze(1).to(current.dtype)


def _assignment(score: torch.Tensor) -> torch.Tensor:
    """``(C,)``: the column of ``score`` each row takes in the assignment of largest total score."""
    rows, cols = linear_sum_assignment(score.numpy(), maximize=True)
    return torch.as_tensor(cols)[torch.argsort(torch.as_tensor(rows))]


def _check_same_architecture(reference: nn.Module, model: nn.Module) -> None:
    a = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if type(reference) is not type(model) or a != b:
        diff = sorted(set(a.items()) ^ set(b.items()))[:3]
        raise ValueError(f"align: {type(reference).__name__} and {type(model).__name__} are not one architecture "
                         f"(parameters differ: {diff})")


def _same_structure(a: Layout, b: Layout) -> bool:
    return a.num_nodes == b.num_nodes and torch.equal(a.edge_index, b.edge_index) and \
        torch.equal(a.node_kind, b.node_kind)


