"""The weight space of one architecture: which entries of its neural graph hold parameters, as a flat vector.

A generator works on the parameter entries of graphs that share one layout. :class:`WeightSpace` reads them
out of a layout with :meth:`~nngraph.convert.Layout.gather_params` (so it knows exactly the entries
``from_graph`` reads back, and their tensor), flattens graphs into ``(B, D)`` vectors and writes vectors back
into graphs, with every other entry (identity edges, unused feature columns) kept at the template's constants.
Its :attr:`~WeightSpace.fingerprint` names the structure, so a graph of another architecture is refused in one line.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from nngraph.convert import GraphMismatchError, build_layout, to_graph
from nngraph.schema import NODE_FEATURE_DIM

__all__ = ["WeightSpace", "STRUCTURE_FIELDS"]

#: The graph fields that describe the architecture (everything but the weights ``x`` and ``edge_attr``).
STRUCTURE_FIELDS = ("edge_index", "edge_type", "kernel_shape", "node_type", "node_kind", "io_position", "layer",
                    "act", "act_args", "conv_args", "pool", "pool_args", "norm_eps", "op_code")
#: The fields the encoder reads per node / per edge, repeated per graph in a batch.
_NODE_FIELDS = ("node_type", "node_kind", "io_position", "layer", "act", "act_args", "conv_args", "pool",
                "pool_args", "norm_eps", "op_code")


def _structure_of(graph: Data) -> dict[str, Tensor]:
    missing = [k for k in ("x", "edge_index", "edge_attr", "node_type") if getattr(graph, k, None) is None]
    if missing:
        raise GraphMismatchError(f"the template has no {missing}: give a graph of nngraph.to_graph or the module")
    return {k: graph[k].detach().cpu() for k in STRUCTURE_FIELDS if k in graph}


def _fingerprint(num_nodes: int, structure: dict[str, Tensor]) -> str:
    """16 hex digits of the sha256 of the structure (float fields as float32, so the dtype does not matter)."""
    digest = hashlib.sha256(str(num_nodes).encode())
    for key in sorted(structure):
        value = structure[key]
        value = value.to(torch.float32) if value.is_floating_point() else value.to(torch.int64)
        digest.update(key.encode() + str(tuple(value.shape)).encode() + value.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _describe(num_nodes: int, structure: dict[str, Tensor]) -> str:
    edges = structure["edge_index"].shape[1] if "edge_index" in structure else 0
    return f"{num_nodes} nodes, {edges} edges"


class WeightSpace:
    r"""The parameter entries of one architecture's neural graph, as a flat vector of length :math:`D`.

    Entry :math:`j` of the vector is entry ``entries[j]`` of a graph's features concatenated as
    ``cat(x.view(-1), edge_attr.view(-1))`` (``N * 5 + W`` values), and belongs to parameter tensor
    ``names[groups[j]]``. Build one with :meth:`of` (from a module) or :meth:`from_layout`.

    Args:
        template (Data): a graph of the architecture (its structure is kept; its weights are not).
        entries (Tensor): :math:`(D,)` long, positions of the parameter entries in the concatenated features.
        groups (Tensor): :math:`(D,)` long, the parameter tensor of every entry.
        names (sequence of str): the parameter names, one per group.
        dtype (torch.dtype, optional): of the graphs :meth:`graphs` writes. (default: the template's)

    Shapes:
        - :meth:`flatten`: graphs (or a batch of them) -> :math:`(B, D)`
        - :meth:`graphs`: :math:`(B, D)` -> ``B`` graphs
        - :meth:`features`: :math:`(B, D)` -> ``x`` :math:`(B N, 5)`, ``edge_attr`` :math:`(B W, 1)`;
          :meth:`read` is its inverse on the parameter entries
    """

    def __init__(self, template: Data, entries: Tensor, groups: Tensor, names: Sequence[str],
                 dtype: torch.dtype | None = None):
        self.num_nodes = int(template.num_nodes)
        self.dtype = template.x.dtype if dtype is None else dtype  # of the graphs it writes
        self.structure = _structure_of(template)
        self.num_entries = int(template.edge_attr.numel())  # W
        self.input_spec = getattr(template, "input_spec", None)
        self.entries = entries.long()
        self.groups = groups.long()
        self.names = tuple(names)
        base = torch.cat([template.x.detach().reshape(-1), template.edge_attr.detach().reshape(-1)])  # (N * F + W,)
        base = base.to(torch.float64).clone()
        base[self.entries] = 0.0  # the constants (identity edges hold 1); parameter entries are written per graph
        self.base = base
        self.fingerprint = _fingerprint(self.num_nodes, self.structure)
        self._batches: dict[int, dict[str, Tensor]] = {}

    # ------------------------------------------------------------ construction
    @classmethod
    def of(cls, module: nn.Module, example_inputs: Sequence[Tensor] | Tensor | None = None) -> "WeightSpace":
        """The weight space of ``module``'s architecture (its layout built with :func:`nngraph.build_layout`)."""
        if isinstance(example_inputs, Tensor):
            example_inputs = (example_inputs,)
        layout = build_layout(module, example_inputs)
        return cls.from_layout(layout, layout.to_graph(module))

    @classmethod
    def from_layout(cls, layout, template: Data) -> "WeightSpace":
        """The parameter entries that ``layout.gather_params`` reads back (one group per parameter tensor).

        Every entry's position is read by gathering position markers: node entry ``k`` of ``x.view(-1)`` holds
        ``k``, kernel entry ``q`` holds ``-(q + 1)`` (float64 is exact for these integers)."""
        n, w, f = layout.num_nodes, layout.num_entries, NODE_FEATURE_DIM
        x_marks = torch.arange(n * f, dtype=torch.float64).view(n, f)  # (N, F)
        e_marks = -(torch.arange(w, dtype=torch.float64) + 1).view(w, 1)  # (W, 1)
        entries, groups, names = [], [], []
        for name, marks in layout.gather_params(x_marks, e_marks).items():  # {name: (1, *shape)}
            marks = marks.reshape(-1).long()  # (numel,)
            entries.append(torch.where(marks >= 0, marks, n * f + (-marks - 1)))
            groups.append(torch.full_like(marks, len(names)))
            names.append(name)
        if not names:
            raise ValueError("the architecture has no parameters to generate")
        entries, groups = torch.cat(entries), torch.cat(groups)  # (D,), (D,)
        if torch.unique(entries).numel() != entries.numel():
            raise ValueError("two parameters share a graph entry; the layout is not one this generator can invert")
        return cls(template, entries, groups, names)

    # ------------------------------------------------------------ sizes and checks
    @property
    def dim(self) -> int:
        """:math:`D`, the number of generated values per model."""
        return int(self.entries.numel())

    @property
    def num_groups(self) -> int:
        return len(self.names)

    @property
    def num_edges(self) -> int:
        return int(self.structure["edge_index"].shape[1])

    def check(self, graph: Data | nn.Module, what: str = "the template") -> None:
        """Raise :class:`~nngraph.GraphMismatchError` (one line) unless ``graph`` (or the module's graph) has this
        space's structure. A module is converted with the inputs :func:`nngraph.to_graph` makes up from its first
        layer; pass its graph instead when it needs other example inputs."""
        if isinstance(graph, nn.Module):
            graph = to_graph(graph)
        if not isinstance(graph, Data):
            raise TypeError(f"{what} must be a neural graph (torch_geometric Data) or an nn.Module, "
                            f"got {type(graph).__name__}")
        structure = _structure_of(graph)
        if _fingerprint(int(graph.num_nodes), structure) != self.fingerprint:
            raise GraphMismatchError(
                f"{what} ({_describe(int(graph.num_nodes), structure)}) is not the architecture this generator was "
                f"fitted on ({_describe(self.num_nodes, self.structure)}, fingerprint {self.fingerprint}); fit a "
                "generator on graphs of that architecture")

    # ------------------------------------------------------------ graphs <-> vectors
    def flatten(self, graphs: Sequence[Data] | Data) -> Tensor:
        """The parameter entries of ``graphs`` (a list of graphs of this space, or one batch of them): ``(B, D)``."""
        if isinstance(graphs, Data) and getattr(graphs, "num_graphs", None) is None:
            graphs = [graphs]
        if isinstance(graphs, Data):  # a Batch
            b = int(graphs.num_graphs)
            feats = torch.cat([graphs.x.reshape(b, -1), graphs.edge_attr.reshape(b, -1)], dim=1)  # (B, N * F + W)
        else:
            feats = torch.stack([torch.cat([g.x.reshape(-1), g.edge_attr.reshape(-1)]) for g in graphs])
        if feats.shape[1] != self.base.numel():
            raise GraphMismatchError(f"graphs of {feats.shape[1]} feature entries; this space's have {self.base.numel()}")
        return feats[:, self.entries.to(feats.device)]  # (B, D)

    def _full(self, flat: Tensor) -> Tensor:
        """``(B, N * F + W)``: the constants with ``flat`` ``(B, D)`` written into the parameter entries."""
        if flat.dim() != 2 or flat.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (B, {self.dim}), got {tuple(flat.shape)}")
        full = self.base.to(flat.device, flat.dtype).expand(flat.shape[0], -1).clone()  # (B, N * F + W)
        return full.index_copy(1, self.entries.to(flat.device), flat)

    def features(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(B N, 5)`` and ``edge_attr`` ``(B W, 1)`` of the ``B`` graphs whose parameters are ``flat`` (differentiable)."""
        full = self._full(flat)
        b, nf = flat.shape[0], self.num_nodes * NODE_FEATURE_DIM
        x = full[:, :nf].reshape(b * self.num_nodes, NODE_FEATURE_DIM)  # (B, N * F) -> (B N, F)
        edge_attr = full[:, nf:].reshape(b * self.num_entries, 1)  # (B, W) -> (B W, 1)
        return x, edge_attr

    def read(self, x: Tensor, edge_attr: Tensor) -> Tensor:
        """The parameter entries of batched features ``x`` ``(B N, 5)``, ``edge_attr`` ``(B W, 1)``: ``(B, D)``."""
        b = x.shape[0] // self.num_nodes
        feats = torch.cat([x.reshape(b, -1), edge_attr.reshape(b, -1)], dim=1)  # (B, N * F + W)
        return feats[:, self.entries.to(x.device)]  # (B, D)

    def graphs(self, flat: Tensor) -> list[Data]:
        """``B`` neural graphs with the template's structure and the parameters ``flat`` ``(B, D)``; ``from_graph``
        turns each into a module of the architecture."""
        full = self._full(flat.detach()).cpu().to(self.dtype)
        nf = self.num_nodes * NODE_FEATURE_DIM
        out = []
        for row in full:
            g = Data(x=row[:nf].view(self.num_nodes, NODE_FEATURE_DIM).clone(),  # (N, F)
                     edge_attr=row[nf:].view(self.num_entries, 1).clone(),  # (W, 1)
                     **{k: v.clone() for k, v in self.structure.items()}, num_nodes=self.num_nodes)
            for key in ("act_args", "conv_args", "pool_args", "norm_eps"):  # float fields in the weights' dtype
                if key in g:
                    g[key] = g[key].to(g.x.dtype)
            if self.input_spec is not None:
                g.input_spec = self.input_spec
            out.append(g)
        return out

    def batch_fields(self, num_graphs: int, device: torch.device | None = None) -> dict[str, Tensor]:
        """The structure of a batch of ``num_graphs`` graphs as the encoder's tensor call reads it (cached):
        ``edge_index`` ``(2, B E)`` offset per graph, ``batch_index`` ``(B N,)``, node fields repeated."""
        if num_graphs not in self._batches:
            n, e = self.num_nodes, self.num_edges
            s = self.structure
            shift = (torch.arange(num_graphs) * n).repeat_interleave(e)  # (B E,)
            fields = {"edge_index": s["edge_index"].repeat(1, num_graphs) + shift,  # (2, B E)
                      "edge_type": s["edge_type"].repeat(num_graphs),
                      "kernel_shape": s["kernel_shape"].repeat(num_graphs, 1),  # (B E, 3)
                      "batch_index": torch.arange(num_graphs).repeat_interleave(n)}  # (B N,)
            for key in _NODE_FIELDS:
                if key in s:
                    fields[key] = s[key].repeat(num_graphs, *[1] * (s[key].dim() - 1))  # (B N, ...)
            if len(self._batches) > 8:
                self._batches.clear()
            self._batches[num_graphs] = fields
        fields = self._batches[num_graphs]
        return fields if device is None else {k: v.to(device) for k, v in fields.items()}

    # ------------------------------------------------------------ storage
    def state(self) -> dict:
        """Plain tensors, strings and lists (``torch.load(weights_only=True)`` reads them)."""
        return {"num_nodes": self.num_nodes, "structure": dict(self.structure), "num_entries": self.num_entries,
                "input_spec": self.input_spec, "entries": self.entries, "groups": self.groups,
                "names": list(self.names), "base": self.base, "fingerprint": self.fingerprint,
                "dtype": str(self.dtype).replace("torch.", "")}

    @classmethod
    def from_state(cls, state: dict) -> "WeightSpace":
        """The space :meth:`state` describes."""
        base = state["base"]
        nf = state["num_nodes"] * NODE_FEATURE_DIM
        template = Data(x=base[:nf].view(-1, NODE_FEATURE_DIM), edge_attr=base[nf:].view(-1, 1),
                        **state["structure"], num_nodes=state["num_nodes"])
        if state.get("input_spec") is not None:
            template.input_spec = state["input_spec"]
        dtype = getattr(torch, state["dtype"], None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"the stored weight space names no floating dtype ({state['dtype']!r})")
        space = cls(template, state["entries"], state["groups"], state["names"], dtype)
        if space.fingerprint != state["fingerprint"]:
            raise ValueError("the stored weight space does not match its fingerprint")
        return space

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(dim={self.dim}, tensors={self.num_groups}, nodes={self.num_nodes}, "
                f"edges={self.num_edges}, fingerprint={self.fingerprint})")
