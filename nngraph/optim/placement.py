"""Where the entries of a model's trainable parameters sit in its neural graph, both ways.

A neural graph holds every parameter entry in one *slot*: a node feature (``x[node, column]``, slots
``0 .. 5N - 1`` in row-major order) or a kernel entry (row ``r`` of ``edge_attr``, slot ``5N + r``). A
:class:`GraphPlacement` turns a table of per-entry features into per-slot tables (``scatter``) and per-slot
outputs back into per-entry ones (``gather``), with the index tensors the layout records for every
parameter (:attr:`nngraph.convert.Layout.node_placements` / ``edge_placements``), so that the two are exact
inverses on the parameters' entries.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from nngraph.convert import Layout, UnsupportedError, build_layout
from nngraph.schema import NODE_FEATURE_DIM

from .roles import entry_roles

__all__ = ["GraphPlacement", "parameter_names", "place"]


def parameter_names(model: nn.Module, params: Iterable[Tensor], who: str) -> list[str]:
    """The name in ``model`` of every tensor of ``params`` (the first, for a tied one).

    Raises:
        ValueError: one line, for a tensor that is no parameter of ``model``.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: params must be tensors, got a {type(p).__name__} at position {i}")
        if id(p) not in names:
            raise ValueError(f"{who}: the tensor at position {i} of params (shape {tuple(p.shape)}) is not a parameter "
                             f"of the {type(model).__name__} it optimizes; pass only model parameters (its graph has "
                             "no place for others)")
        out.append(names[id(p)])
    return out


class GraphPlacement:
    r"""The slots of the entries of some parameters of a model in its neural graph.

    The parameters are concatenated in the given order into :math:`P` entries (each flattened in C
    order). Every entry has one slot it is read from (``read_slots``); a tied parameter is written to
    each of its places.

    Args:
        layout: the model's :class:`~nngraph.convert.Layout`.
        names: the parameters, by their name in the model (``named_parameters()``).
        aliases: for a tied parameter, its other names (``named_parameters(remove_duplicate=False)``).

    Attributes:
        num_slots: :math:`S = 5N + W`.
        write_slots, write_entries: ``(Q,)`` long: entry ``write_entries[q]`` goes to slot ``write_slots[q]``.
        read_slots: ``(P,)`` long: the slot every entry is read from.

    Raises:
        ValueError: one line, for a parameter the layout places nowhere.
    """

    def __init__(self, layout: Layout, names: Sequence[str], aliases: dict[str, Sequence[str]] | None = None):
        self.num_nodes, self.num_entries_graph = layout.num_nodes, layout.num_entries
        node_slots = layout.num_nodes * NODE_FEATURE_DIM
        self.num_slots = node_slots + layout.num_entries
        places: dict[str, list] = {}
        for p in layout.node_placements:
            places.setdefault(p.name, []).append((p.nodes * NODE_FEATURE_DIM + p.column, p.read_back))
        for p in layout.edge_placements:
            places.setdefault(p.name, []).append((node_slots + p.positions, p.read_back))
        aliases = aliases or {}
        writes, sources, reads, offset = [], [], [], 0
        self.sizes = []
        for name in names:
            found = [pl for n in (name, *aliases.get(name, ())) for pl in places.get(n, ())]
            readable = [slots for slots, read in found if read]
            if not readable:
                raise ValueError(f"parameter {name!r} has no place in the model's neural graph (the layout places "
                                 f"{len(places)} tensors); optimize it with another optimizer")
            size = readable[0].numel()
            entries = torch.arange(offset, offset + size)
            for slots, _ in found:
                writes.append(slots.reshape(-1))
                sources.append(entries)
            reads.append(readable[0].reshape(-1))
            self.sizes.append(size)
            offset += size
        empty = torch.zeros(0, dtype=torch.long)
        self.write_slots = torch.cat(writes) if writes else empty  # (Q,)
        self.write_entries = torch.cat(sources) if sources else empty  # (Q,)
        self.read_slots = torch.cat(reads) if reads else empty  # (P,)
        self.names = tuple(names)
        self._roles: Tensor | None = None  # (P, 3), found by the first call of roles()

    def roles(self, graph) -> Tensor:
        """``(P, 3)`` long: every entry's role in ``graph`` (:func:`~nngraph.optim.roles.entry_roles`), computed once.

        A role is made of node kinds and edge types, which relabelling leaves unchanged, so the roles found in one
        labelling of the graph hold for the entries in every other (:meth:`relabelled` keeps them)."""
        if self._roles is None:
            self._roles = entry_roles(graph, self.read_slots)
        return self._roles

    @property
    def node_slots(self) -> int:
        """``5N``: slots ``0 .. 5N - 1`` are node features."""
        return self.num_nodes * NODE_FEATURE_DIM

    def scatter(self, entries: Tensor) -> tuple[Tensor, Tensor]:
        """The per-entry table ``entries`` written into the graph's slots (zeros where no entry is).

        Shapes:
            - **entries:** :math:`(P, C)`
            - **output:** node table :math:`(N, 5, C)`, kernel-entry table :math:`(W, C)`
        """
        table = entries.new_zeros(self.num_slots, entries.shape[1])  # (S, C)
        table = table.index_copy(0, self.write_slots.to(entries.device), entries[self.write_entries.to(entries.device)])
        node = table[:self.node_slots].view(self.num_nodes, NODE_FEATURE_DIM, -1)  # (5N, C) -> (N, 5, C)
        return node, table[self.node_slots:]  # (N, 5, C), (W, C)

    def gather(self, node: Tensor, edge: Tensor) -> Tensor:
        """Every entry's row of the per-slot outputs (the inverse of :meth:`scatter` on the entries).

        Shapes:
            - **node:** :math:`(N, 5, K)`; **edge:** :math:`(W, K)`
            - **output:** :math:`(P, K)`
        """
        table = torch.cat([node.reshape(self.node_slots, -1), edge])  # (N, 5, K) -> (5N, K); (S, K)
        return table[self.read_slots.to(table.device)]  # (P, K)

    def relabelled(self, node_map: Tensor, entry_map: Tensor) -> "GraphPlacement":
        """The placement in a relabelled graph: node ``v`` is node ``node_map[v]``, kernel entry ``r`` is
        entry ``entry_map[r]`` (see :func:`nngraph.optim.relabel.relabel_graph`)."""
        slot_map = torch.cat([
            (node_map.unsqueeze(1) * NODE_FEATURE_DIM + torch.arange(NODE_FEATURE_DIM)).reshape(-1),  # (N, 5) -> (5N,)
            self.node_slots + entry_map])  # (S,)
        out = object.__new__(GraphPlacement)
        out.__dict__.update(self.__dict__)
        out.write_slots, out.read_slots = slot_map[self.write_slots], slot_map[self.read_slots]
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self.sizes)} parameters, {int(self.read_slots.numel())} entries, "
                f"{self.num_slots} slots)")


def place(model: nn.Module, params: Sequence[Tensor], example_inputs: Sequence[Tensor] | None = None,
          who: str = "LearnedOptimizer"):
    """``(graph, placement)``: ``model``'s neural graph (from the layout cache) and the slots of ``params``.

    Raises:
        UnsupportedError: one line, for a model the converter refuses.
        ValueError: one line, for a tensor of ``params`` that is not a parameter of ``model``.
    """
    names = parameter_names(model, params, who)
    if isinstance(example_inputs, Tensor):
        example_inputs = (example_inputs,)
    try:
        layout = build_layout(model, None if example_inputs is None else tuple(example_inputs))
    except (UnsupportedError, ValueError, TypeError, RuntimeError) as err:
        first = str(err).strip().split("\n")[0]
        first = first if len(first) <= 300 else first[:297] + "..."
        hint = "" if example_inputs is not None else "; pass example_inputs= if it needs inputs of other shapes"
        raise UnsupportedError(f"{who} cannot place the parameters of {type(model).__name__}, which nngraph cannot "
                               f"convert ({first}){hint}; PerParameterMLPOptimizer needs no graph") from None
    aliases: dict[str, list[str]] = {}
    first_name = {id(p): n for n, p in model.named_parameters()}
    for n, p in model.named_parameters(remove_duplicate=False):
        if first_name.get(id(p), n) != n:
            aliases.setdefault(first_name[id(p)], []).append(n)
    graph = layout.to_graph(model)
    return graph, GraphPlacement(layout, names, aliases)
