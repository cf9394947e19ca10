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

from typing import Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from .. import schema
from ..blocks import materialize
from ..convert import build_layout
from ..convert.layout import Layout, SymmetryGroup
from ..kernels import entry_edges, kernel_offsets
from .activations import neuron_samples
from .permute import _tuple
from .scale import apply_signs, flippable_nodes

__all__ = ["align", "align_all", "align_graph", "weight_matching"]

#: default ``tol`` of :func:`align`: a relabelling that raises a group's similarity by less than this fraction is
#: not worth a pass. With 0 the descent's tail is long (3-4 s of gains under 1e-6 on a 128-channel ResNet,
#: against 0.7 s) and the barrier no lower (aligned / naive over 3 pairs: 0.258 at 0, 0.249 at 1e-5)
TOLERANCE = 1e-5
_TABLE_ENTRIES = 50_000_000  # keys are looked up in a direct table up to this key range, else searched
_KEEP_ENTRIES = 20_000_000  # up to this many kernel entries, every group's entries are gathered once and kept


def align(reference: nn.Module, model: nn.Module, example_inputs: Sequence[torch.Tensor] | torch.Tensor | None = None,
          max_rounds: int = 30, return_permutation: bool = False, data: torch.Tensor | Sequence | None = None,
          tol: float = TOLERANCE):
    """A copy of ``model`` whose hidden neurons are relabelled (and negated where that is a symmetry) to match
    ``reference`` (weight matching).

    Args:
        reference: the model to match.
        model: a model of the same architecture (same parameter names and shapes, same layout).
        example_inputs: inputs as for :func:`nngraph.to_graph` (made up from the first layer when omitted).
        max_rounds: passes over all symmetry groups at most (it stops when a pass changes nothing).
        tol: a group is relabelled only where that raises its similarity to the reference by more than ``tol``
            times the similarity it has (0: any strict gain, as Git Re-Basin's descent).
        return_permutation: also return the node relabelling ``(N,)`` (old node -> new node of ``model``'s graph)
            and the signs ``(N,)`` (``+-1`` per new node).
        data: inputs (a batch, or a tuple for several model inputs) for **activation matching**: a group's
            neurons are matched by the correlation of their values on ``data`` over every input and position
            (:func:`~nngraph.symmetry.activations.neuron_samples`) instead of their weights; groups whose neurons
            show no values there are matched by weights.

    Returns:
        the aligned copy (the same function as ``model``), and with ``return_permutation`` ``(perm, sign)``.

    Raises:
        ValueError: for models of different architectures, or ``data`` the models cannot run on.
        nngraph.UnsupportedError: for a model the converter refuses.
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
        data = _checked_data(model, data)
        activations = (neuron_samples(reference, data, layout), neuron_samples(model, data, layout))
    # the model's graph blocked: its relabelled copy is then built grid by grid, without sorting the edges
    aligned, perm, sign = align_graph(layout.to_graph(model, compact=True), layout.to_graph(reference), layout,
                                      max_rounds, activations, tol)
    out = layout.from_graph(aligned, model)
    return (out, (perm, sign)) if return_permutation else out


def align_graph(graph, reference, layout: Layout, max_rounds: int = 30, activations=None, tol: float = TOLERANCE):
    """``graph`` relabelled (and negated where the activation is odd) to look like ``reference``, both graphs of
    ``layout``'s architecture; ``probe`` features are dropped (they would need moving too).

    Returns:
        ``(aligned, perm, sign)``: ``perm`` ``(N,)`` maps old node -> new node, ``sign`` ``(N,)`` is ``+-1`` per
        new node.
    """
    plain = graph.clone()
    if "probe" in plain:
        del plain.probe
    perm, sign = weight_matching(layout, reference, plain, max_rounds, activations, tol)
    aligned = layout.permute_graph(plain, perm)
    if bool((sign < 0).any()):
        aligned = apply_signs(aligned, sign.to(graph.x.dtype))
    return aligned, perm, sign


def align_all(graphs: list, reference, layout: Layout, progress: bool = False, desc: str = "aligning") -> list:
    """Every graph of ``graphs`` (one architecture, ``layout``'s) aligned to ``reference`` (:func:`align_graph`)."""
    from tqdm.auto import tqdm

    return [align_graph(g, reference, layout)[0] for g in tqdm(graphs, desc=desc, disable=not progress)]


def weight_matching(layout: Layout, reference, graph, max_rounds: int = 30,
                    activations: tuple[torch.Tensor, torch.Tensor] | None = None,
                    tol: float = TOLERANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(perm, sign)``: the relabelling ``(N,)`` (old node -> new node) and the signs ``(N,)`` per new node that
    make ``graph`` most like ``reference`` (both graphs of ``layout``), by coordinate descent over the symmetry
    groups (module docstring). ``activations``: ``(N, P)`` standardised values of the reference's and of
    ``graph``'s neurons on common inputs, to match groups by instead of weights where they are not zero.

    The relabelled graph is never built during the descent: :class:`_Relabelled` describes it by its entries'
    moved ends and signed values, gathered per group (no sort of the edges per step)."""
    n = layout.num_nodes
    perm, sign = torch.arange(n), torch.ones(n, dtype=torch.float64)
    features = _Features(layout, reference)
    flippable = flippable_nodes(reference)
    if getattr(graph, "edge_blocks", None) is not layout.edge_blocks:  # a blocked graph of this layout: in order
        graph = materialize(graph)
        if not torch.equal(graph.edge_index, layout.edge_index):  # entries in the layout's order, as the reference's
            graph = layout.permute_graph(graph, perm)
    current = _Relabelled(features, graph, perm, sign)
    for _ in range(max_rounds):
        changed = False
        for group in layout.symmetries:
            can_flip = group.block_size is None and bool(flippable[group.rows].all())
            step = _best_group_step(group, features, current, layout, can_flip, _moved(activations, perm, sign), tol)
            if step is None:
                continue
            changed = True
            move, flips = step
            moved_sign = torch.empty_like(sign)
            moved_sign[move] = sign  # the signs travel with their neurons
            perm, sign = move[perm], moved_sign * flips
            current = _Relabelled(features, graph, perm, sign)  # the next group reads the graph as relabelled so far
        if not changed:
            break
    return perm, sign


class _Features:
    """Per node, the sparse description weight matching compares: node features, and for every edge entry the
    (other end, kernel position, edge type) key with its value, for incoming and outgoing edges. The reference's
    side of every group's comparison is computed once and kept."""

    def __init__(self, layout: Layout, reference):
        src, dst = layout.edge_index
        self.num_nodes = layout.num_nodes
        self.entries = entry_edges(layout.kernel_shape, layout.num_entries)  # (W,) edge of every kernel entry
        position = torch.arange(layout.num_entries) - kernel_offsets(layout.kernel_shape)[self.entries]  # (W,)
        kind = layout.edge_type[self.entries]
        self.entry_src, self.entry_dst = src[self.entries], dst[self.entries]  # (W,)
        span = int(position.max()) + 1 if position.numel() else 1
        types = int(layout.edge_type.max()) + 1 if layout.edge_type.numel() else 1
        # an entry's key seen from one end: other end * kinds + its (kernel position, edge type) part; entries
        # with equal keys are compared
        self.kinds = span * types
        self.local = position * types + kind  # (W,) in [0, kinds)
        # the entries at each node, as a node's incoming (by dst) and outgoing (by src) runs: a group's entries
        # are gathered instead of masked out of all W
        self._runs = {incoming: _runs(ends, self.num_nodes)
                      for incoming, ends in ((True, self.entry_dst), (False, self.entry_src))}
        self._entries: dict[tuple, tuple] = {}
        self._values: dict[int, tuple] = {}
        self._sums: dict[tuple, tuple] = {}
        self.reference = _Relabelled(self, reference)

    def values_of(self, graph) -> torch.Tensor:
        """``(W,)``: ``graph``'s entries in float64, one tensor per graph (what the kept sums are keyed by)."""
        kept = self._values.get(id(graph.edge_attr))
        if kept is None or kept[0] is not graph.edge_attr:
            kept = self._values[id(graph.edge_attr)] = (graph.edge_attr, graph.edge_attr[:, 0].double())
        return kept[1]

    def entries_of(self, nodes: torch.Tensor, incoming: bool, values: torch.Tensor):
        """The entries whose head (``incoming``) or tail is one of ``nodes`` ``(K,)`` (original labels): their
        ``(src, dst, values, local)`` ``(E,)`` in the original labels. Kept per node set: a group's permutations
        map its nodes onto themselves, so every step of the descent asks for the same set."""
        ordered = torch.sort(nodes).values
        slot = (id(values), incoming, ordered.numel(), int(ordered[0]) if ordered.numel() else -1)
        kept = self._entries.get(slot)
        if kept is not None and kept[0] is values and torch.equal(kept[1], ordered):
            return kept[2]
        order, start = self._runs[incoming]
        first, count = start[ordered], start[ordered + 1] - start[ordered]  # (K,), (K,)
        total = int(count.sum())
        offset = torch.arange(total) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)  # (E,)
        sub = order[torch.repeat_interleave(first, count) + offset]  # (E,)
        found = (self.entry_src[sub], self.entry_dst[sub], values[sub], self.local[sub])
        if self.local.numel() <= _KEEP_ENTRIES:  # ~64 bytes per entry and graph kept
            self._entries[slot] = (values, ordered, found)
        return found

    def similarity(self, rows: torch.Tensor, current, satellites: torch.Tensor | None = None,
                   block_size: int | None = None) -> torch.Tensor:
        """``(C, C)``: ``S[i, j]`` how much column ``i`` of the reference's rows looks like column ``j`` of the
        current graph's (a graph in the layout's order, or a :class:`_Relabelled` one), summed over the rows
        (``satellites`` ``(S, C // block_size)``: nodes that move with the blocks, such as attention heads)."""
        if not isinstance(current, _Relabelled):
            current = _Relabelled(self, current)
        c = rows.shape[1]
        mine_x = self.reference.x[rows].transpose(0, 1).reshape(c, -1)  # (C, R * F)
        s = mine_x @ current.x[rows].transpose(0, 1).reshape(c, -1).T  # (C, C)
        column = torch.full((self.num_nodes,), -1, dtype=torch.long)
        column[rows.reshape(-1)] = torch.arange(c).repeat(rows.shape[0])  # node -> its column in the group
        block = None  # satellite -> the block it moves with
        if satellites is not None:
            block = torch.full((self.num_nodes,), -1, dtype=torch.long)
            block[satellites.reshape(-1)] = torch.arange(satellites.shape[1]).repeat(satellites.shape[0])
        for incoming in (True, False):
            keys, a = self._summed(self.reference.values, rows, incoming, column, block, block_size)
            if keys.numel() == 0:
                continue
            moved = self._moved_sums(a, keys, current, rows, incoming, column, block, block_size)
            if moved is not None:
                s += moved
                continue
            key, cols, values = self._side(*current.touching(rows.reshape(-1), incoming), column, block, block_size)
            at = self._row_of(keys, key)
            hit = at >= 0  # keys the reference lacks add nothing
            b = torch.zeros(keys.numel(), c, dtype=torch.float64)
            b.index_put_((at[hit], cols[hit]), values[hit], accumulate=True)
            s += a.T @ b
        return s

    def _moved_sums(self, a, keys, current, rows, incoming: bool, column, block, block_size):
        """``(C, C)``: the entries' part of the similarity from the current graph's sums in its own labels
        (``B`` ``(K', C)``, kept), moved by the relabelling as whole rows and columns: ``A[rows of the moved
        keys]^T B``, columns moved and signed. ``None`` where that does not hold (keys inside the group or its
        blocks, or signs that differ within a column): the caller sums entry by entry."""
        own_keys, b = self._summed(current.values, rows, incoming, column, block, block_size)
        if own_keys.numel() == 0:
            return torch.zeros(rows.shape[1], rows.shape[1], dtype=torch.float64)
        moved = current.perm[rows]  # (R, C): where each node of the group went
        first = moved[0]  # (C,)
        if bool(own_keys[0] < 0) or not bool((column[moved] == column[first]).all()) or \
                not bool((current.sign[moved] == current.sign[first]).all()):
            return None
        other = current.perm[torch.div(own_keys, self.kinds, rounding_mode="floor")]  # (K',) new labels
        at = self._row_of(keys, other * self.kinds + own_keys % self.kinds)  # (K',) reference row, -1 if none
        weight = (at >= 0).double() * current.sign[other]  # (K',)
        m = (a[at.clamp(min=0)] * weight.unsqueeze(1)).T @ b  # (C, C): reference column i, own column j
        # own column j is now column column[first[j]]
        return torch.zeros_like(m).index_add_(1, column[first], m * current.sign[first])

    def _row_of(self, keys: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``(E,)``: the row of each ``key`` in the sorted ``keys`` ``(K,)``, ``-1`` where absent; a direct
        table over the key range (keys lie in ``[-2 kinds, N kinds)``) when that is small, else a binary search."""
        low = 2 * self.kinds
        if (self.num_nodes + 2) * self.kinds <= _TABLE_ENTRIES:
            table = torch.full(((self.num_nodes + 2) * self.kinds,), -1, dtype=torch.long)
            table[keys + low] = torch.arange(keys.numel())
            return table[key + low]
        at = torch.searchsorted(keys, key).clamp(max=keys.numel() - 1)
        return torch.where(keys[at] == key, at, -1)

    def _summed(self, values, rows, incoming: bool, column, block, block_size):
        """``(keys (K,) sorted, sums (K, C))``: a graph's entries (``values`` ``(W,)``, in the layout's labels) at
        one end of ``rows``, summed per key and column; kept per graph, group and direction."""
        slot = (id(values), id(rows), incoming)
        kept = self._sums.get(slot)
        if kept is not None and kept[0] is values and kept[1] is rows:
            return kept[2]
        src, dst, entry_values, local = self.entries_of(rows.reshape(-1), incoming, values)
        end, other = (dst, src) if incoming else (src, dst)
        key, cols, entry_values = self._side(end, other, entry_values, local, column, block, block_size)
        keys, index = torch.unique(key, return_inverse=True)
        sums = torch.zeros(keys.numel(), rows.shape[1], dtype=torch.float64)
        sums.index_put_((index, cols), entry_values, accumulate=True)
        self._sums[slot] = (values, rows, (keys, sums))
        return keys, sums

    def _side(self, end, other, values, local, column, block, block_size):
        """Entries with an end in the group (``end``, ``other``, ``values``, ``local`` ``(E,)``): their
        ``(keys, columns, values)``, each ``(E',)``."""
        key = other * self.kinds + local
        # an entry between two neurons of the group (a norm's identity edge from the neuron it normalizes) moves
        # with both ends: compared as "to its own column", skipped if it joins two columns
        inside = column[other] >= 0
        key = torch.where(inside, -1 - local, key)
        mine = ~inside | (column[other] == column[end])
        if block is not None:  # an edge from a head to its member: compared as "from its own block's"
            held = mine & (block[other] >= 0)
            key = torch.where(held, -1 - self.kinds - local, key)
            mine = mine & (~held | (block[other] == column[end] // block_size))
        return key[mine], column[end[mine]], values[mine]


class _Relabelled:
    """A graph in the layout's edge order, relabelled by ``perm`` (old node -> new node) and negated by ``sign``
    (per new node), described without building it: node features ``x`` ``(N, F)``, and its entries touching a
    set of nodes on demand (:meth:`touching`)."""

    def __init__(self, features: _Features, graph, perm: torch.Tensor | None = None,
                 sign: torch.Tensor | None = None):
        n = features.num_nodes
        self.features = features
        self.values = features.values_of(graph)  # (W,) in the original labelling
        self.perm = torch.arange(n) if perm is None else perm
        self.sign = torch.ones(n, dtype=torch.float64) if sign is None else sign
        self.inverse = torch.empty_like(self.perm)
        self.inverse[self.perm] = torch.arange(n)
        self.x = graph.x.double()[self.inverse]  # (N, F): new node v holds old node inverse[v]
        self.x[:, schema.BIAS] *= self.sign

    def touching(self, nodes: torch.Tensor, incoming: bool):
        """The entries whose head (``incoming``) or tail is one of ``nodes`` (new labels): ``(end, other,
        values, local)``, each ``(E,)``, with ends in the new labels and values signed as :func:`apply_signs`
        signs them (``sign[src] * sign[dst]``)."""
        src, dst, values, local = self.features.entries_of(self.inverse[nodes], incoming, self.values)
        src, dst = self.perm[src], self.perm[dst]
        values = values * self.sign[src] * self.sign[dst]
        return (dst, src, values, local) if incoming else (src, dst, values, local)


def _runs(ends: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order (W,), start (N + 1,))``: entries sorted by ``ends``; node ``v``'s are ``order[start[v]:start[v+1]]``."""
    order = torch.argsort(ends, stable=True)
    start = torch.zeros(num_nodes + 1, dtype=torch.long)
    start[1:] = torch.cumsum(torch.bincount(ends, minlength=num_nodes), 0)
    return order, start


def _best_group_step(group: SymmetryGroup, features: _Features, current, layout: Layout,
                     can_flip: bool, activations=None, tol: float = 0.0) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(move (N,), flips (N,))``: the relabelling of one group (and, where ``can_flip``, the signs of its new
    columns) that best matches the reference, or ``None`` if it raises the group's score by no more than
    ``tol`` times its size. ``activations``: the reference's
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
    now = s.diagonal().sum()
    gain = (s[torch.arange(c), cols] * (1.0 - 2.0 * negate.double())).sum() - now
    if bool(gain <= tol * now.abs()):  # no longer worth a step (tol 0: no strict improvement)
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


def _checked_data(model: nn.Module, data) -> tuple[torch.Tensor, ...]:
    """``data`` as a tuple of batches, after checking that two of its samples run through ``model``."""
    data = _tuple(data)
    if not data or not all(isinstance(d, torch.Tensor) and d.dim() > 0 for d in data):
        raise ValueError(f"align: data must be a batch tensor or a tuple of them, got "
                         f"{[type(d).__name__ for d in data]}")
    if len({d.shape[0] for d in data}) != 1:
        raise ValueError(f"align: the data's batches differ in size: {[tuple(d.shape) for d in data]}")
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(*(d[:2] for d in data))
    except Exception as err:  # any failure of the user's forward: said in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"align: data of shapes {[tuple(d.shape) for d in data]} does not run through "
                         f"{type(model).__name__}: {first}") from err
    finally:
        model.train(was_training)
    return data


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


