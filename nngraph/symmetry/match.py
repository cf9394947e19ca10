"""Symmetries of any converted model as a library feature: sample them, apply them, align models by them.

A model's neural graph knows its permutation symmetries exactly (:attr:`nngraph.convert.Layout.symmetries`:
hidden neurons, attention heads and norm groups as blocks, tied spaces), for every architecture the converter
handles. This module uses them:

- :func:`random_permutation` draws one (``(N,)`` old node -> new node) and :func:`permute_model` applies it to a
  model (the same function, relabelled), :class:`RandomPermutation` to graphs as a PyG transform;
- :func:`align` relabels a model's hidden neurons to match a reference of the same architecture by weight
  matching (Ainsworth et al., *Git Re-Basin*, ICLR 2023): coordinate descent over the symmetry groups, each step a
  linear assignment on the similarity of the neurons' features and of their incoming and outgoing weights
  (whole kernels), computed from the sparse edge lists (no ``N x N`` matrix); block groups (attention heads)
  are matched block to block, then within blocks. The result computes exactly the function of the model.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from .convert import build_layout
from .convert.layout import Layout, SymmetryGroup
from .kernels import entry_edges, kernel_offsets

__all__ = ["RandomPermutation", "align", "permute_model", "random_permutation"]


def random_permutation(layout: Layout, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(N,)``: a random symmetry of ``layout``'s model as a node relabelling (old node ``i`` -> ``perm[i]``),
    composed over every symmetry group."""
    return layout.random_node_permutation(generator)


def permute_model(model: nn.Module, perm: torch.Tensor, example_inputs: Sequence[torch.Tensor] | None = None,
                  layout: Layout | None = None) -> nn.Module:
    """A copy of ``model`` whose hidden neurons are relabelled by ``perm`` (a symmetry: the same function)."""
    layout = layout or build_layout(model, _tuple(example_inputs))
    return layout.from_graph(layout.permute_graph(layout.to_graph(model), perm), model)


class RandomPermutation:
    """PyG transform: a graph relabelled by a fresh random symmetry of its model at every call (augmentation).

    Args:
        layout: the layout of the graphs' architecture (:func:`nngraph.build_layout`).
        generator: random source (default: torch's global one).
    """

    def __init__(self, layout: Layout, generator: torch.Generator | None = None):
        self.layout, self.generator = layout, generator

    def __call__(self, graph):
        return self.layout.permute_graph(graph, self.layout.random_node_permutation(self.generator))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.layout.symmetries)} symmetry groups)"


def align(reference: nn.Module, model: nn.Module, example_inputs: Sequence[torch.Tensor] | torch.Tensor | None = None,
          max_rounds: int = 30, return_permutation: bool = False):
    """A copy of ``model`` whose hidden neurons are relabelled to match ``reference`` (weight matching).

    Args:
        reference: the model to match.
        model: a model of the same architecture (same parameter names and shapes, same layout).
        example_inputs: inputs as for :func:`nngraph.to_graph` (made up from the first layer when omitted).
        max_rounds: passes over all symmetry groups at most (it stops when a pass changes nothing).
        return_permutation: also return the node relabelling ``(N,)`` (old node -> new node of ``model``'s graph).

    Returns:
        the aligned copy (the same function as ``model``), and with ``return_permutation`` the relabelling.

    Raises:
        ValueError: for models of different architectures.
    """
    inputs = _tuple(example_inputs)
    _check_same_architecture(reference, model)
    layout = build_layout(model, inputs)
    if build_layout(reference, inputs) is not layout and not _same_structure(build_layout(reference, inputs), layout):
        raise ValueError("align: the two models convert to different graphs (another architecture or other "
                         "constants); alignment needs one architecture")
    ref, graph = layout.to_graph(reference), layout.to_graph(model)
    perm = weight_matching(layout, ref, graph, max_rounds)
    aligned = layout.from_graph(layout.permute_graph(graph, perm), model)
    return (aligned, perm) if return_permutation else aligned


def weight_matching(layout: Layout, reference, graph, max_rounds: int = 30) -> torch.Tensor:
    """``(N,)`` the relabelling (old node -> new node) of ``graph`` that makes it most like ``reference`` (both
    graphs of ``layout``), by coordinate descent over the symmetry groups (module docstring)."""
    n = layout.num_nodes
    perm = torch.arange(n)
    features = _Features(layout, reference)
    for _ in range(max_rounds):
        changed = False
        current = layout.permute_graph(graph, perm)  # in the layout's edge order, like the reference
        for group in layout.symmetries:
            step = _best_group_permutation(group, features, current, layout)
            if step is None:
                continue
            changed = True
            perm = step[perm]
            current = layout.permute_graph(graph, perm)
        if not changed:
            break
    return perm


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


def _best_group_permutation(group: SymmetryGroup, features: _Features, current, layout: Layout) -> torch.Tensor | None:
    """The relabelling ``(N,)`` of one group that best matches the reference, or ``None`` if it is the identity."""
    s = features.similarity(group.rows, current, group.satellites, group.block_size)  # (C, C)
    c = s.shape[0]
    if group.block_size is None:
        cols = _assignment(s)
        block_cols = None
    else:
        size = group.block_size
        blocks = c // size
        tiles = s.reshape(blocks, size, blocks, size).permute(0, 2, 1, 3)  # (B, B, size, size)
        inner = [[_assignment(tiles[p, q]) for q in range(blocks)] for p in range(blocks)]
        score = torch.tensor([[float(tiles[p, q][torch.arange(size), inner[p][q]].sum()) for q in range(blocks)]
                              for p in range(blocks)], dtype=torch.float64)
        block_cols = _assignment(score)  # reference block p takes current block block_cols[p]
        cols = torch.cat([block_cols[p] * size + inner[p][int(block_cols[p])] for p in range(blocks)])
    if torch.equal(cols, torch.arange(c)):
        return None
    step = torch.arange(layout.num_nodes)
    # the current column cols[i] moves to column i
    step[group.rows[:, cols].reshape(-1)] = group.rows.reshape(-1)
    if group.satellites is not None and block_cols is not None:
        step[group.satellites[:, block_cols].reshape(-1)] = group.satellites.reshape(-1)
    return step


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


def _tuple(example_inputs):
    return (example_inputs,) if isinstance(example_inputs, torch.Tensor) else example_inputs
