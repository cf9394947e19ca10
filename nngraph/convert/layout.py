"""The frozen record of where every parameter entry of a model lives in its neural graph.

``Layout.to_graph`` scatters parameters into node and edge features with the same index tensors
that ``Layout.from_graph`` gathers them back with, which is what makes the inverse exact.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch_geometric.data import Data

from ..schema import ACT_ARGS_DIM, CONV_ARGS_DIM, MAX_POOLS, NODE_FEATURE_DIM, POOL_ARGS_DIM
from .errors import GraphMismatchError


@dataclass(frozen=True)
class NodePlacement:
    """Parameter ``name`` (flattened) lives in ``x[nodes, column]``; ``nodes`` is ``(numel,)``."""

    name: str
    nodes: torch.Tensor
    column: int
    #: ``False`` for the second and later places of a shared parameter: written by ``to_graph``,
    #: not read back (the first place is)
    read_back: bool = True


@dataclass(frozen=True)
class EdgePlacement:
    """Parameter ``name`` (flattened) lives at ``edge_attr.view(-1)[positions]``; ``(numel,)``."""

    name: str
    positions: torch.Tensor
    read_back: bool = True  # as for NodePlacement


@dataclass(frozen=True)
class SymmetryGroup:
    """Neurons that one permutation acts on.

    ``rows`` ``(R, C)``: every row is an activation space; one permutation of ``0..C-1`` is applied
    to all rows. With ``block_size`` set, only permutations that keep contiguous blocks of that size
    together are symmetries (within-block shuffles and block shuffles), and ``satellites``
    ``(S, C // block_size)`` are nodes (attention heads, norm groups) that move with their block.
    """

    rows: torch.Tensor
    block_size: int | None = None
    satellites: torch.Tensor | None = None

    def sample(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A random symmetry as ``(old_nodes, new_nodes)``: node ``old_nodes[i]`` moves to ``new_nodes[i]``."""
        num = self.rows.shape[1]
        if self.block_size is None:
            perm = torch.randperm(num, generator=generator)
        else:
            blocks = num // self.block_size
            block_perm = torch.randperm(blocks, generator=generator)
            within = torch.stack([torch.randperm(self.block_size, generator=generator) for _ in range(blocks)])
            perm = (block_perm.unsqueeze(1) * self.block_size + within).reshape(-1)  # (C,)
        old = [self.rows[:, perm].reshape(-1)]  # neuron perm[i] takes place i
        new = [self.rows.reshape(-1)]
        if self.satellites is not None:
            old.append(self.satellites[:, block_perm].reshape(-1))
            new.append(self.satellites.reshape(-1))
        return torch.cat(old), torch.cat(new)


@dataclass(frozen=True)
class Layout:
    """Structure of a neural graph and where every parameter entry lives in it.

    Build one with :func:`nngraph.convert.build_layout`; it depends only on the architecture, so
    one layout serves every model of a zoo that shares it.
    """

    num_nodes: int
    edge_index: torch.Tensor  # (2, E)
    edge_type: torch.Tensor  # (E,)
    node_type: torch.Tensor  # (N,)
    node_kind: torch.Tensor  # (N,)
    io_position: torch.Tensor  # (N,)
    layer: torch.Tensor  # (N,)
    act: torch.Tensor  # (N,)
    kernel_box: tuple[int, int, int]
    identity_positions: torch.Tensor  # flat positions in edge_attr that hold a constant 1
    node_placements: tuple[NodePlacement, ...]
    edge_placements: tuple[EdgePlacement, ...]
    symmetries: tuple[SymmetryGroup, ...]
    module_nodes: dict[str, torch.Tensor] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32
    #: fx value name -> (nodes, neuron axis, flattened spatial extent), in graph order (probe features)
    value_nodes: dict[str, tuple[torch.Tensor, int, tuple[int, ...]]] = field(default_factory=dict)
    #: the traced fx graph (``None`` for models reached through torch.export)
    fx_graph: object = None
    #: ``((shape, dtype), ...)`` of the example inputs the model was traced with (``None`` if some
    #: input was not a tensor)
    input_spec: tuple | None = None
    #: what each neuron's operations are (schema: ``act_args``, ``conv_args``, ``pool``, ``pool_args``);
    #: float64 here, given to the graph in the model's dtype. ``None`` reads as zeros.
    act_args: torch.Tensor | None = None  # (N, 2)
    conv_args: torch.Tensor | None = None  # (N, 17)
    pool: torch.Tensor | None = None  # (N, MAX_POOLS) long
    pool_args: torch.Tensor | None = None  # (N, MAX_POOLS, 17)

    def op_fields(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The operation descriptions of every node, float ones in ``dtype`` (fresh tensors)."""
        n = self.num_nodes
        fields = {
            "act_args": (self.act_args, (n, ACT_ARGS_DIM), dtype),
            "conv_args": (self.conv_args, (n, CONV_ARGS_DIM), dtype),
            "pool": (self.pool, (n, MAX_POOLS), torch.long),
            "pool_args": (self.pool_args, (n, MAX_POOLS, POOL_ARGS_DIM), dtype),
        }
        return {k: torch.zeros(shape, dtype=t) if v is None else v.to(t, copy=True) for k, (v, shape, t) in fields.items()}

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def edge_dim(self) -> int:
        return self.kernel_box[0] * self.kernel_box[1] * self.kernel_box[2]

    # ------------------------------------------------------------ to / from
    def to_graph(self, module: nn.Module) -> Data:
        """Read ``module``'s parameters into a new graph with this layout."""
        tensors = _named_tensors(module)
        dtype = _float_dtype(tensors, self.dtype)
        x = torch.zeros(self.num_nodes, NODE_FEATURE_DIM, dtype=dtype)  # (N, F)
        edge_attr = torch.zeros(self.num_edges * self.edge_dim, dtype=dtype)  # (E * K,)
        edge_attr[self.identity_positions] = 1
        with torch.no_grad():
            for p in self.node_placements:
                x[p.nodes, p.column] = _lookup(tensors, p.name).detach().reshape(-1).to(dtype)
            for p in self.edge_placements:
                edge_attr[p.positions] = _lookup(tensors, p.name).detach().reshape(-1).to(dtype)
        return Data(
            x=x,
            edge_index=self.edge_index.clone(),
            edge_attr=edge_attr.view(self.num_edges, self.edge_dim),  # (E, K)
            edge_type=self.edge_type.clone(),
            node_type=self.node_type.clone(),
            node_kind=self.node_kind.clone(),
            io_position=self.io_position.clone(),
            layer=self.layer.clone(),
            act=self.act.clone(),
            **self.op_fields(dtype),
            kernel_box=torch.tensor([self.kernel_box]),  # (1, 3)
            num_nodes=self.num_nodes,
            **({} if self.input_spec is None else {"input_spec": _spec_to_plain(self.input_spec)}),
        )

    def example_inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Inputs of the shapes and dtypes the model was traced with: standard normal floats, zero
        integers (valid token ids), true booleans."""
        if self.input_spec is None:
            raise ValueError("this layout did not record its example inputs; pass example_inputs")
        return inputs_from_spec(self.input_spec, seed)

    def check_fits(self, graph: Data) -> None:
        """Raise :class:`GraphMismatchError` unless ``graph`` has exactly this layout's structure."""
        problems = []
        if int(graph.num_nodes) != self.num_nodes:
            problems.append(f"{int(graph.num_nodes)} nodes, the module needs {self.num_nodes}")
        if graph.edge_index.shape != self.edge_index.shape:
            problems.append(f"{graph.edge_index.shape[1]} edges, the module needs {self.num_edges}")
        elif not torch.equal(graph.edge_index.cpu(), self.edge_index):
            problems.append("the same number of edges but connecting other nodes")
        box = tuple(int(v) for v in graph.kernel_box.reshape(-1, 3)[0]) if "kernel_box" in graph else None
        if box is not None and box != self.kernel_box:
            problems.append(f"kernel box {box}, the module's layout has {self.kernel_box}")
        if tuple(graph.x.shape) != (self.num_nodes, NODE_FEATURE_DIM) and not problems:
            problems.append(f"node features of shape {tuple(graph.x.shape)}")
        if not problems and "node_kind" in graph and not torch.equal(graph.node_kind.cpu(), self.node_kind):
            problems.append("nodes of other kinds (another architecture)")
        if not problems and "act" in graph and not torch.equal(graph.act.cpu(), self.act):
            problems.append("other activations")
        if not problems:
            for key, mine in self.op_fields(graph.x.dtype).items():
                theirs = graph[key] if key in graph else None
                if theirs is not None and not torch.equal(theirs.cpu(), mine.to(theirs.dtype)):
                    what = {"act_args": "activations with other parameters", "pool": "other poolings",
                            "pool_args": "poolings with other parameters",
                            "conv_args": "convolutions with other strides, paddings or dilations"}[key]
                    problems.append(what)
        if problems:
            raise GraphMismatchError(
                "the graph does not fit the module: it has " + "; ".join(problems)
                + ". Convert the module with nngraph.to_graph to see the structure it needs."
            )

    def from_graph(self, graph: Data, module: nn.Module) -> nn.Module:
        """A deep copy of ``module`` whose parameters and normalization buffers are read from ``graph``."""
        self.check_fits(graph)
        if tuple(graph.edge_attr.shape) != (self.num_edges, self.edge_dim):
            raise GraphMismatchError(
                f"edge features of shape {tuple(graph.edge_attr.shape)}, the module needs "
                f"{(self.num_edges, self.edge_dim)}"
            )
        out = copy.deepcopy(module)
        tensors = _named_tensors(out)
        x = graph.x
        edge_attr = graph.edge_attr.reshape(-1)  # (E * K,)
        with torch.no_grad():
            for p in self.node_placements:
                if not p.read_back:
                    continue
                target = _lookup(tensors, p.name)
                target.copy_(x[p.nodes.to(x.device), p.column].view(target.shape))
            for p in self.edge_placements:
                if not p.read_back:
                    continue
                target = _lookup(tensors, p.name)
                target.copy_(edge_attr[p.positions.to(x.device)].view(target.shape))
        return out

    # ------------------------------------------------------------ symmetry
    def random_node_permutation(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A node relabelling ``perm`` (old node ``i`` -> new node ``perm[i]``) drawn from the model's
        permutation symmetries (composed over all symmetry groups)."""
        perm = torch.arange(self.num_nodes)
        for group in self.symmetries:
            old, new = group.sample(generator)
            step = torch.arange(self.num_nodes)
            step[old] = new
            perm = step[perm]
        return perm

    def permute_graph(self, graph: Data, perm: torch.Tensor) -> Data:
        """Relabel ``graph``'s nodes by ``perm`` and reorder its edges into this layout's edge order,
        so that the result can be read back with :meth:`from_graph` (old node ``i`` -> ``perm[i]``)."""
        n = self.num_nodes
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n)
        src, dst = self.edge_index
        keys = _edge_keys(graph.edge_index[0], graph.edge_index[1], graph.edge_type, n)
        order = torch.argsort(keys)
        # the edge of the new graph at layout position j is the old edge between the preimages
        wanted = _edge_keys(inverse[src], inverse[dst], self.edge_type, n)
        found = torch.searchsorted(keys[order], wanted).clamp(max=keys.numel() - 1)
        if not torch.equal(keys[order][found], wanted):
            raise GraphMismatchError("the permutation does not map the graph's edges onto its own layout")
        if torch.unique(keys).numel() != keys.numel():
            raise GraphMismatchError("the graph has parallel edges of one type; relabelling is ambiguous")
        out = graph.clone()
        out.x = graph.x[inverse]
        out.edge_attr = graph.edge_attr[order[found]]
        return out


def inputs_from_spec(spec, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Tensors for ``((shape, dtype), ...)`` (dtypes as ``torch.dtype`` or their names)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for shape, dtype in spec:
        dtype = getattr(torch, dtype.replace("torch.", "")) if isinstance(dtype, str) else dtype
        if dtype.is_floating_point:
            out.append(torch.randn(tuple(shape), generator=generator).to(dtype))
        elif dtype == torch.bool:
            out.append(torch.ones(tuple(shape), dtype=dtype))
        else:
            out.append(torch.zeros(tuple(shape), dtype=dtype))
    return tuple(out)


def _spec_to_plain(spec) -> list:
    """The input spec as lists of ints and dtype names (safe for ``torch.load(weights_only=True)``)."""
    return [[list(shape), str(dtype).replace("torch.", "")] for shape, dtype in spec]


def _edge_keys(src: torch.Tensor, dst: torch.Tensor, edge_type: torch.Tensor, num_nodes: int) -> torch.Tensor:
    return (src * num_nodes + dst) * 64 + edge_type


def _named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(dict(module.named_buffers(remove_duplicate=False)))
    return tensors


def _lookup(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    try:
        return tensors[name]
    except KeyError:
        raise GraphMismatchError(
            f"the module has no parameter {name!r}; was the layout built from another architecture?"
        ) from None


def _float_dtype(tensors: dict[str, torch.Tensor], default: torch.dtype) -> torch.dtype:
    for t in tensors.values():
        if t.is_floating_point():
            return t.dtype
    return default
