"""The frozen record of where every parameter entry of a model lives in its neural graph.

``Layout.to_graph`` scatters parameters into node and edge features with the same index tensors
that ``Layout.gather_params`` gathers them back with (batched and differentiable), which is what makes
the inverse exact; ``Layout.from_graph`` loads one graph's gathered tensors into a copy of the module.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch_geometric.data import Data

from ..blocks import COMPACT_EDGES, EdgeBlocks, is_blocked, materialize
from ..kernels import reorder_kernels
from ..schema import ACT_ARGS_DIM, CONV_ARGS_DIM, MAX_POOLS, NODE_FEATURE_DIM, OP_CODE_DIM, POOL_ARGS_DIM
from .errors import GraphMismatchError


#: ``(storage offset, shape, strides)`` of a placement whose entries form a strided view of the
#: flat feature tensor, so that it is written and read as one strided copy
View = tuple[int, tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class NodePlacement:
    """Parameter ``name`` (flattened) lives in ``x[nodes, column]``; ``nodes`` is ``(numel,)``.
    ``view``, when set, is the same entries as a strided view of ``x.view(-1)`` (``shape`` is the
    parameter's)."""

    name: str
    nodes: torch.Tensor
    column: int
    view: View | None = None
    shape: tuple[int, ...] | None = None
    #: ``False`` for the second and later places of a shared parameter: written by ``to_graph``,
    #: not read back (the first place is)
    read_back: bool = True


@dataclass(frozen=True)
class EdgePlacement:
    """Parameter ``name`` (flattened) lives at ``edge_attr.view(-1)[positions]``; ``(numel,)``.
    ``view``, when set, is the same entries as a strided view of ``edge_attr.view(-1)``, and the positions
    are not stored (a dense layer's would cost 8 bytes a weight): :attr:`positions` computes them."""

    name: str
    stored_positions: torch.Tensor | None
    view: View | None = None
    read_back: bool = True  # as for NodePlacement
    shape: tuple[int, ...] | None = None  # the parameter's

    @property
    def positions(self) -> torch.Tensor:
        """``(numel,)`` int64: the rows of ``edge_attr`` the parameter's entries are at, in C order."""
        if self.stored_positions is not None:
            return self.stored_positions
        return view_indices(self.view).reshape(-1)


def flat_view(positions: torch.Tensor, shape: tuple[int, ...], size: int) -> View | None:
    """``positions`` ``(numel,)`` of a tensor of ``shape`` in a flat tensor of ``size`` entries as
    ``(offset, shape, strides)`` if they are ``offset + sum_i index_i * strides_i`` (a strided view),
    else ``None``. Contiguous and transposed placements (conv and linear weights) are views."""
    shape = tuple(int(v) for v in shape)
    if positions.numel() == 0 or positions.numel() != math.prod(shape):
        return None
    p = positions.view(shape)
    start = int(positions[0])
    strides = []
    for i, n in enumerate(shape):
        strides.append(int(p[(0,) * i + (1,) + (0,) * (len(shape) - i - 1)]) - start if n > 1 else 0)
    extent = sum((n - 1) * v for n, v in zip(shape, strides)) + 1  # the last index named, + 1, from start
    if any(v < 0 for v in strides) or start < 0 or start + extent > size:
        return None
    # what the view names, as a strided view of one range (two passes over the entries, no per-dim tensors)
    expected = torch.arange(start, start + extent, dtype=positions.dtype).as_strided(shape, strides)
    if not torch.equal(expected, p):
        return None
    return start, shape, tuple(strides)


def dense_span(view: View) -> tuple[int, int] | None:
    """``(start, count)`` when ``view`` names every index of ``start .. start + count - 1`` exactly once (its
    strides, sorted, are those of a contiguous tensor of its shape, permuted), else ``None``."""
    offset, shape, strides = view
    count, expected = 1, 1
    for n, stride in sorted(((n, st) for n, st in zip(shape, strides) if n != 1), key=lambda d: d[1]):
        if n == 0:
            return offset, 0
        if stride != expected:
            return None
        expected *= n
        count *= n
    return offset, count


def _writes_every_entry(layout: "Layout") -> bool:
    """:attr:`Layout.writes_every_entry`, computed."""
    intervals, loose = [], []
    for p in layout.edge_placements:
        span = dense_span(p.view) if p.view is not None else None
        if span is not None:
            intervals.append(span)
        else:
            loose.append(p.positions.reshape(-1))
    if layout.identity_positions.numel():
        loose.append(layout.identity_positions.reshape(-1))
    intervals.sort()
    covered, end = 0, 0
    for start, count in intervals:
        if start < end:  # two placements write one entry
            return False
        covered, end = covered + count, start + count
    rest = torch.cat(loose) if loose else torch.zeros(0, dtype=torch.long)
    if (intervals and (intervals[0][0] < 0 or end > layout.num_entries)) or covered + rest.numel() != layout.num_entries:
        return False
    if rest.numel():
        if int(rest.min()) < 0 or int(rest.max()) >= layout.num_entries or rest.unique().numel() != rest.numel():
            return False
        if intervals:
            starts = torch.tensor([s for s, _ in intervals])  # (I,)
            ends = starts + torch.tensor([c for _, c in intervals])  # (I,)
            which = (torch.searchsorted(starts, rest, right=True) - 1).clamp(min=0)  # (R,): interval at or before
            if bool(((rest >= starts[which]) & (rest < ends[which])).any()):
                return False
    return True  # distinct entries in range, as many as there are: every one written once


def view_indices(view: View) -> torch.Tensor:
    """``shape`` int64: the flat indices a :data:`View` names (``offset + sum_i index_i * strides_i``)."""
    offset, shape, strides = view
    out = torch.full(shape, offset, dtype=torch.long)
    for i, (n, stride) in enumerate(zip(shape, strides)):
        if stride and n > 1:
            out += (torch.arange(n) * stride).view((-1,) + (1,) * (len(shape) - i - 1))
    return out


def _strided(flat: torch.Tensor, view: View) -> torch.Tensor:
    """The entries ``view`` of the contiguous 1-D ``flat``."""
    offset, shape, strides = view
    return flat.as_strided(shape, strides, flat.storage_offset() + offset)


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
    #: the edges as blocks (a dense layer's as a grid of its neurons); ``edge_index``, ``edge_type`` and
    #: ``kernel_shape`` are materialised from it on first use
    edge_blocks: EdgeBlocks
    node_type: torch.Tensor  # (N,)
    node_kind: torch.Tensor  # (N,)
    io_position: torch.Tensor  # (N,)
    layer: torch.Tensor  # (N,)
    act: torch.Tensor  # (N,)
    num_entries: int  # W = sum of prod(kernel_shape): rows of edge_attr
    identity_positions: torch.Tensor  # rows of edge_attr that hold a constant (1 for identity edges)
    node_placements: tuple[NodePlacement, ...]
    edge_placements: tuple[EdgePlacement, ...]
    symmetries: tuple[SymmetryGroup, ...]
    #: module name -> node ids of its output neurons (N_m,): which nodes of the graph a module made, for
    #: inspecting and editing a graph by module (e.g. the neurons of "encoder.layer.0.attention.self.query")
    module_nodes: dict[str, torch.Tensor] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32
    #: fx value name -> (nodes, neuron axis, flattened spatial extent), in graph order (probe features)
    value_nodes: dict[str, tuple[torch.Tensor, int, tuple[int, ...], int]] = field(default_factory=dict)
    #: the traced fx graph (``None`` for models reached through torch.export)
    fx_graph: object = None
    #: ``((shape, dtype), ...)`` of the example inputs the model was traced with (``None`` if some
    #: input was not a tensor)
    input_spec: tuple | None = None
    #: floating dtypes the forward casts activations to (Hugging Face's RMSNorm computes in float32)
    casts: tuple = ()
    #: the constants at ``identity_positions`` (float64); ``None`` when all are 1
    identity_values: torch.Tensor | None = None
    #: what each neuron's operations are (schema: ``act_args``, ``conv_args``, ``pool``, ``pool_args``);
    #: float64 here, given to the graph in the model's dtype. ``None`` reads as zeros.
    act_args: torch.Tensor | None = None  # (N, 2)
    conv_args: torch.Tensor | None = None  # (N, 17)
    pool: torch.Tensor | None = None  # (N, MAX_POOLS) long
    pool_args: torch.Tensor | None = None  # (N, MAX_POOLS, 17)
    norm_eps: torch.Tensor | None = None  # (N,): the eps of the normalization that made each neuron
    op_code: torch.Tensor | None = None  # (N, 2) long: operations no converter names (nngraph.convert.fallback)
    #: what the fallbacks did, one line each (the operation, its fx node, the neurons it fixed); empty when none ran
    fallbacks: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "_materialised", {})  # name -> (tensor, its version when made)
        object.__setattr__(self, "_writes_all", None)  # writes_every_entry, found on first use

    @property
    def writes_every_entry(self) -> bool:
        """Whether the edge placements and the identity constants write every row of ``edge_attr`` exactly once,
        so that :meth:`to_graph` need not zero it first (a pass over the graph's bytes saved). Found once from the
        placements' views (a view that is a permuted contiguous block covers an interval); positions given one
        by one are checked to be distinct and to fill exactly the rest."""
        if self._writes_all is None:
            object.__setattr__(self, "_writes_all", _writes_every_entry(self))
        return self._writes_all

    def _materialise(self, name: str) -> torch.Tensor:
        """``edge_index`` / ``edge_type`` / ``kernel_shape`` from the blocks, made once and shared by every graph."""
        if name not in self._materialised:
            tensor = getattr(self.edge_blocks, name)()
            self._materialised[name] = (tensor, _version(tensor))
        return self._materialised[name][0]

    @property
    def edge_index(self) -> torch.Tensor:
        """``(2, E)`` int64 (materialised from :attr:`edge_blocks` on first use)."""
        return self._materialise("edge_index")

    @property
    def edge_type(self) -> torch.Tensor:
        """``(E,)`` int64 (materialised from :attr:`edge_blocks` on first use)."""
        return self._materialise("edge_type")

    @property
    def kernel_shape(self) -> torch.Tensor:
        """``(E, 3)`` int32: every edge's ``(depth, height, width)`` (materialised on first use)."""
        return self._materialise("kernel_shape")

    @property
    def edited(self) -> bool:
        """Whether a graph's shared ``edge_index``, ``edge_type`` or ``kernel_shape`` was edited in place since
        this layout made it (``g.edge_index[1, 0] = 5``): the layout no longer describes its model. Edits
        through ``.data`` or NumPy bypass torch's version counters and are not seen."""
        return any(_version(t) != v for t, v in self._materialised.values())

    def op_fields(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The operation descriptions of every node, float ones in ``dtype`` (fresh tensors)."""
        n = self.num_nodes
        fields = {
            "act_args": (self.act_args, (n, ACT_ARGS_DIM), dtype),
            "conv_args": (self.conv_args, (n, CONV_ARGS_DIM), dtype),
            "pool": (self.pool, (n, MAX_POOLS), torch.long),
            "pool_args": (self.pool_args, (n, MAX_POOLS, POOL_ARGS_DIM), dtype),
            "op_code": (self.op_code, (n, OP_CODE_DIM), torch.long),
            "norm_eps": (self.norm_eps, (n,), dtype),
        }
        return {k: torch.zeros(shape, dtype=t) if v is None else v.to(t, copy=True) for k, (v, shape, t) in fields.items()}

    @property
    def num_edges(self) -> int:
        return self.edge_blocks.num_edges

    @property
    def max_kernel_shape(self) -> tuple[int, int, int]:
        """The elementwise largest kernel ``(depth, height, width)`` of the graph (``(1, 1, 1)`` if none)."""
        return self.edge_blocks.max_kernel_shape

    # ------------------------------------------------------------ to / from
    def to_graph(self, module: nn.Module, compact: bool | None = None) -> Data:
        """Read ``module``'s parameters into a new graph with this layout.

        The feature tensors (``x``, ``edge_attr``) are new; the structure tensors are this layout's
        own, shared by every graph it converts (treat them as read-only, clone before editing).

        With ``compact`` (by default when the graph has more than :data:`~nngraph.blocks.COMPACT_EDGES`
        edges) the graph holds its edges as ``edge_blocks`` (:class:`~nngraph.blocks.EdgeBlocks`, shared with
        this layout) instead of ``edge_index`` / ``edge_type`` / ``kernel_shape``: a dense model's graph is then
        about its parameter bytes. The encoder reads it block by block; :func:`nngraph.blocks.materialize` gives
        the plain PyG tensors.
        """
        if compact is None:
            compact = self.num_edges > COMPACT_EDGES
        tensors = _named_tensors(module)
        dtype = _float_dtype(tensors, self.dtype)
        x = torch.zeros(self.num_nodes * NODE_FEATURE_DIM, dtype=dtype)  # (N * F,)
        edge_attr = (torch.empty if self.writes_every_entry else torch.zeros)(self.num_entries, dtype=dtype)  # (W,)
        edge_attr[self.identity_positions] = 1 if self.identity_values is None else self.identity_values.to(dtype)
        with torch.no_grad():
            for p in self.node_placements:
                _write(x, p.view, p.nodes * NODE_FEATURE_DIM + p.column if p.view is None else None,
                       _lookup(tensors, p.name))
            for p in self.edge_placements:
                _write(edge_attr, p.view, p.stored_positions, _lookup(tensors, p.name))
        edges = ({"edge_blocks": self.edge_blocks} if compact else
                 {"edge_index": self.edge_index, "edge_type": self.edge_type, "kernel_shape": self.kernel_shape})
        return Data(
            x=x.view(self.num_nodes, NODE_FEATURE_DIM),  # (N, F)
            edge_attr=edge_attr.view(self.num_entries, 1),  # (W, 1)
            **edges,  # edge_index (2, E), edge_type (E,), kernel_shape (E, 3); or edge_blocks
            node_type=self.node_type.clone(),
            node_kind=self.node_kind.clone(),
            io_position=self.io_position.clone(),
            layer=self.layer.clone(),
            act=self.act.clone(),
            **self.op_fields(dtype),
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
        if is_blocked(graph):
            if not self.edge_blocks.same_as(graph.edge_blocks):
                problems.append(f"edge blocks other than the module's ({graph.edge_blocks!r}, the module needs "
                                f"{self.edge_blocks!r})")
        elif graph.edge_index.shape != self.edge_index.shape:
            problems.append(f"{graph.edge_index.shape[1]} edges, the module needs {self.num_edges}")
        elif graph.edge_index is not self.edge_index and not torch.equal(graph.edge_index.cpu(), self.edge_index):
            problems.append("the same number of edges but connecting other nodes")
        if is_blocked(graph):
            pass
        elif "kernel_shape" in graph:
            shapes = graph.kernel_shape
            if not problems and shapes is not self.kernel_shape and not torch.equal(
                    shapes.cpu().to(self.kernel_shape.dtype), self.kernel_shape):
                problems.append("edges carrying kernels of other shapes")
        elif "kernel_box" in graph:
            problems.append("kernels padded into a kernel_box (the format of older nngraph versions); "
                            "convert the module again")
        elif self.num_entries != self.num_edges:
            problems.append("no kernel_shape, and the module has kernels larger than 1x1")
        if tuple(graph.x.shape) != (self.num_nodes, NODE_FEATURE_DIM) and not problems:
            problems.append(f"node features of shape {tuple(graph.x.shape)}")
        if not problems and tuple(graph.edge_attr.shape) != (self.num_entries, 1):
            problems.append(f"edge features of shape {tuple(graph.edge_attr.shape)}, the module needs "
                            f"{(self.num_entries, 1)} (every kernel entry a row)")
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
                            "conv_args": "convolutions with other strides, paddings or dilations",
                            "op_code": "other operations where no converter applies",
                            "norm_eps": "normalizations with another eps"}[key]
                    problems.append(what)
        if problems:
            raise GraphMismatchError(
                "the graph does not fit the module: it has " + "; ".join(problems)
                + ". Convert the module with nngraph.to_graph to see the structure it needs."
            )

    def from_graph(self, graph: Data, module: nn.Module) -> nn.Module:
        """A deep copy of ``module`` whose parameters and normalization buffers are read from ``graph``."""
        self.check_fits(graph)
        placed = {p.name for p in self.node_placements} | {p.name for p in self.edge_placements}
        out = _copy_without(module, placed)
        tensors = _named_tensors(out)
        with torch.no_grad():
            for name, value in self.gather_params(graph.x, graph.edge_attr).items():  # (1, *shape) each
                _lookup(tensors, name).copy_(value[0])
        return out

    def gather_params(
        self, x: torch.Tensor, edge_attr: torch.Tensor, batch: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Every parameter and normalization buffer held by ``B`` graphs of this layout, stacked.

        The inverse of :meth:`to_graph` for a batch, built from indexing and strided views only, so
        autograd flows from the returned tensors back into ``x`` and ``edge_attr``: a loss on
        ``torch.func.functional_call(module, {name: value[b]}, inputs)`` trains whatever predicted the
        features (see :func:`nngraph.batched_forward`). A shared parameter (tied weights) is returned
        under the name of its first place; ``functional_call`` ties the others to it. Parameters the
        graph does not hold (none for a converted model; integer buffers such as
        ``num_batches_tracked``) are not returned.

        Args:
            x: node features of the ``B`` graphs one after another (a PyG ``Batch``'s ``x``).
            edge_attr: their kernel entries one after another (a ``Batch``'s ``edge_attr``).
            batch: the graph of every node (a ``Batch``'s ``batch``); when given, every graph is
                checked to have this layout's node count.

        Shapes:
            - **x:** :math:`(B \\cdot N, F)`; **edge_attr:** :math:`(B \\cdot W, 1)` or :math:`(B \\cdot W,)`
            - **batch:** :math:`(B \\cdot N,)`
            - **output:** ``{name: (B, *shape)}``, in the dtype and on the device of ``x`` / ``edge_attr``

        The returned tensors may be views of ``x`` / ``edge_attr`` (a strided placement is read without
        a copy): clone one before writing into it.

        Raises:
            GraphMismatchError: when the sizes do not split into graphs of this layout (a batch of
                graphs of other or of several architectures: gather each architecture's graphs with
                its own layout, and check the structure with :meth:`check_batch`).
        """
        n, w, f = self.num_nodes, self.num_entries, NODE_FEATURE_DIM
        num = self._count_graphs(x, edge_attr, batch)
        xb = x.reshape(num, n * f).contiguous()  # (B * N, F) -> (B, N * F): each graph's node table, row-major
        eb = edge_attr.reshape(num, w).contiguous()  # (B * W, 1) -> (B, W): each graph's kernel entries
        out = {}
        for p in self.node_placements:
            if p.read_back:
                positions = p.nodes * f + p.column if p.view is None else None
                out[p.name] = _gather(xb, p.view, positions, p.shape)
        for p in self.edge_placements:
            if p.read_back:
                out[p.name] = _gather(eb, p.view, p.stored_positions, p.shape)
        return out

    def _count_graphs(self, x: torch.Tensor, edge_attr: torch.Tensor, batch: torch.Tensor | None) -> int:
        """``B``, after checking that ``x``, ``edge_attr`` (and ``batch``) hold ``B`` graphs of this layout."""
        n, w = self.num_nodes, self.num_entries
        if x.dim() != 2 or x.shape[1] != NODE_FEATURE_DIM or x.shape[0] == 0 or x.shape[0] % n:
            raise GraphMismatchError(
                f"node features of shape {tuple(x.shape)} are not B graphs of {n} nodes x {NODE_FEATURE_DIM} "
                "features; is the batch of another architecture, or of several?")
        num = x.shape[0] // n
        if edge_attr.numel() != num * w or edge_attr.shape[0] != num * w:
            raise GraphMismatchError(
                f"{num} graphs of {n} nodes need {num * w} kernel entries ({w} each), got edge features of shape "
                f"{tuple(edge_attr.shape)}: the batch mixes architectures or is not of this layout's; gather "
                "each architecture's graphs with its own layout")
        if batch is not None:
            counts = torch.bincount(batch.reshape(-1), minlength=num)  # (B,)
            if batch.numel() != x.shape[0] or counts.numel() != num or bool((counts != n).any()):
                raise GraphMismatchError(
                    f"the batch's graphs have {counts.tolist()} nodes, this layout's have {n}: the batch mixes "
                    "architectures; gather each architecture's graphs with its own layout")
        return num

    def check_batch(self, batch: Data) -> None:
        """Raise :class:`GraphMismatchError` unless every graph of the PyG ``Batch`` ``batch`` has exactly
        this layout's structure (nodes, edges, kernel shapes, node kinds); ``O(E)``, no Python loop."""
        num = self._count_graphs(batch.x, batch.edge_attr, getattr(batch, "batch", None))
        e = self.num_edges
        shift = (torch.arange(num, device=batch.edge_index.device) * self.num_nodes).repeat_interleave(e)  # (B * E,)
        if tuple(batch.edge_index.shape) != (2, num * e) or not torch.equal(
                (batch.edge_index - shift).cpu(), self.edge_index.repeat(1, num)):
            raise GraphMismatchError("the batch's edges are not this layout's in every graph: the batch mixes "
                                     "architectures or holds graphs of another one")
        for key, mine in (("kernel_shape", self.kernel_shape), ("node_kind", self.node_kind), ("act", self.act)):
            if key in batch and not torch.equal(batch[key].cpu().to(mine.dtype), mine.repeat(num, *[1] * (mine.dim() - 1))):
                raise GraphMismatchError(f"the batch's {key} differs from this layout's in some graph: the batch "
                                         "mixes architectures or holds graphs of another one")

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
        so that the result can be read back with :meth:`from_graph` (old node ``i`` -> ``perm[i]``).
        A blocked graph stays blocked: a grid block whose neuron lists the permutation maps onto themselves is
        reordered as a grid (no per-edge keys), the other blocks as edge lists."""
        if is_blocked(graph):
            permuted = _permute_blocked(graph, perm)
            if permuted is not None:
                return permuted
        graph = materialize(graph)
        n = self.num_nodes
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n)
        src, dst = self.edge_index
        # parallel edges of one type (a product of a neuron with itself) are told apart by their order
        keys = _ranked(_edge_keys(graph.edge_index[0], graph.edge_index[1], graph.edge_type, n))
        order = torch.argsort(keys)
        # the edge of the new graph at layout position j is the old edge between the preimages
        wanted = _ranked(_edge_keys(inverse[src], inverse[dst], self.edge_type, n))
        found = torch.searchsorted(keys[order], wanted).clamp(max=keys.numel() - 1)
        if not torch.equal(keys[order][found], wanted):
            raise GraphMismatchError("the permutation does not map the graph's edges onto its own layout")
        out = graph.clone()
        out.x = graph.x[inverse]
        edges = order[found]
        shapes = graph.kernel_shape if "kernel_shape" in graph else self.kernel_shape
        out.edge_attr = reorder_kernels(graph.edge_attr, shapes, edges)
        if "kernel_shape" in graph:
            out.kernel_shape = shapes[edges]
        return out


def _permute_blocked(graph: Data, perm: torch.Tensor) -> Data | None:
    """:meth:`Layout.permute_graph` of a blocked graph, block by block; ``None`` when some block's preimage is
    not found in that block (the caller then takes the general path over all edges)."""
    blocks = graph.edge_blocks
    n = int(graph.num_nodes)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    attr = graph.edge_attr.view(-1)  # (W,)
    new_attr = torch.empty_like(attr)
    where = torch.full((n,), -1, dtype=torch.long)  # node -> its index in the list being looked up
    lists = []  # (edge start, entry start, block) of the list blocks, reordered together below
    for start, entry, block in zip(blocks.starts, blocks.entry_starts, blocks.blocks):
        if not block.grid:
            lists.append((start, entry, block))
            continue
        major, minor = (block.src, block.dst) if block.src_major else (block.dst, block.src)
        index = []
        for nodes in (major.long(), minor.long()):
            where[nodes] = torch.arange(nodes.numel())
            found = where[inverse[nodes]]  # (len,): where each new node's preimage sits in the list
            where[nodes] = -1
            if bool((found < 0).any()):
                return None
            index.append(found)
        size = block.kernel_size
        rows = slice(entry, entry + block.count * size)
        old = attr[rows].view(major.numel(), minor.numel(), size)  # (R, C, K): the grid row by row
        new_attr[rows] = old[index[0]][:, index[1]].reshape(-1)
    if lists:  # the general path, over the list blocks' edges only
        old_edges = torch.cat([torch.arange(s, s + b.count) for s, _, b in lists])  # (L,)
        src, dst = blocks.ends(old_edges)
        types = torch.cat([torch.full((b.count,), b.edge_type) for _, _, b in lists])
        keys = _ranked(_edge_keys(src, dst, types, n))
        order = torch.argsort(keys)
        wanted = _ranked(_edge_keys(inverse[src], inverse[dst], types, n))
        found = torch.searchsorted(keys[order], wanted).clamp(max=keys.numel() - 1)
        if not torch.equal(keys[order][found], wanted):
            return None
        shapes = blocks.kernel_shapes_of(old_edges)  # (L, 3)
        sizes = shapes.prod(1).long()
        offsets = blocks.entry_offsets(old_edges)  # (L,): rows of edge_attr of each list edge
        source = old_edges[order[found]]  # (L,): the old edge each list position takes
        if bool((shapes[order[found]] != shapes).any()):
            return None
        source_offsets = blocks.entry_offsets(source)
        width = int(sizes.max())
        for k in range(width):  # kernel entry k of every list edge that has one
            has = sizes > k
            new_attr[offsets[has] + k] = attr[source_offsets[has] + k]
    out = graph.clone()
    out.x = graph.x[inverse]
    out.edge_attr = new_attr.view_as(graph.edge_attr)
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


def _ranked(keys: torch.Tensor) -> torch.Tensor:
    """``keys`` made unique: each key times 4 plus its occurrence among equal keys, in edge order (parallel
    edges, at most 4 of one type between two nodes, keep their relative order under a relabelling)."""
    order = torch.sort(keys, stable=True).indices  # (E,)
    sorted_keys = keys[order]
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    start = torch.cummax(torch.where(first, torch.arange(keys.numel()), torch.zeros_like(order)), 0).values
    rank = torch.empty_like(keys)
    rank[order] = torch.arange(keys.numel()) - start  # (E,) 0 for the first of equal keys
    if keys.numel() and int(rank.max()) >= 4:
        raise GraphMismatchError("the graph has more than 4 parallel edges of one type between two nodes")
    return keys * 4 + rank


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # an inference-mode tensor keeps no counter
        return -1


def _named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(dict(module.named_buffers(remove_duplicate=False)))
    return tensors


def named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``module`` by name, shared ones under each of their names."""
    return _named_tensors(module)


def constant_buffers(module: nn.Module) -> set[str]:
    """Names of the non-persistent buffers (not in the state dict: rotary inverse frequencies, cached
    masks): constants of the forward, not parameters of the model."""
    return {f"{prefix}.{b}" if prefix else b
            for prefix, sub in module.named_modules(remove_duplicate=False) for b in sub._non_persistent_buffers_set}


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


def _write(flat: torch.Tensor, view: View | None, positions: torch.Tensor | None, value: torch.Tensor) -> None:
    """Put ``value`` into the entries of ``flat`` a placement names (one strided copy for a view)."""
    if view is not None:
        dest = _strided(flat, view)
        # walk the destination in its memory order (a transposed weight: contiguous writes, strided reads, ~5x
        # faster than the other way round)
        order = sorted(range(dest.dim()), key=lambda i: -dest.stride(i))
        dest.permute(order).copy_(value.detach().permute(order))
    else:
        flat.index_copy_(0, positions, value.detach().reshape(-1).to(flat.dtype))


def _gather(rows: torch.Tensor, view: View | None, positions: torch.Tensor | None,
            shape: tuple[int, ...] | None) -> torch.Tensor:
    """``(B, *shape)``: the entries a placement names in every row of the contiguous ``rows`` ``(B, S)``
    (one strided view for a view placement, an index otherwise); differentiable in ``rows``."""
    num = rows.shape[0]
    if view is not None:
        offset, vshape, strides = view
        return rows.as_strided((num, *vshape), (rows.stride(0), *strides), rows.storage_offset() + offset)
    return rows[:, positions.to(rows.device)].reshape(num, *shape)  # (B, numel) -> (B, *shape)


def _copy_without(module: nn.Module, names: set[str]) -> nn.Module:
    """``copy.deepcopy(module)``, except that the parameters and buffers ``names`` (which the caller
    overwrites) are new uninitialised tensors instead of copies: half the memory traffic."""
    memo = {}
    for name, t in _named_tensors(module).items():
        if name not in names or id(t) in memo or type(t) not in (nn.Parameter, torch.Tensor) or t.__dict__:
            continue
        fresh = torch.empty_like(t)
        memo[id(t)] = nn.Parameter(fresh, requires_grad=t.requires_grad) if type(t) is nn.Parameter else fresh
    return copy.deepcopy(module, memo)
