"""Accumulates nodes, edges and parameter placements while a model is converted.

Converters add nodes and edges in blocks (one call per layer, never per weight) and say where
each parameter entry goes; :meth:`GraphBuilder.finish` turns that into a :class:`Layout`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..blocks import EdgeBlock, EdgeBlocks
from ..schema import (
    NODE_FEATURE_DIM,
    ACT_ARGS_DIM,
    CONV_ARGS_DIM,
    MAX_POOLS,
    OP_CODE_DIM,
    POOL_ARGS,
    POOL_ARGS_DIM,
    Activation,
    EdgeType,
    NodeKind,
    NodeType,
    Pool,
)
from .layout import (EdgePlacement, Layout, NodePlacement, SymmetryGroup, View, constant_buffers, flat_view,
                     named_tensors, view_indices)


@dataclass
class _Block:
    """Union-find class of activation spaces that must be permuted together."""

    rows: list[torch.Tensor]
    fixed: bool = False
    block_size: int | None = None  # permutations must preserve contiguous blocks of this size
    satellites: list[torch.Tensor] = field(default_factory=list)  # (num_blocks,) nodes moving with blocks


#: Most entries of a parameter row one OPAQUE edge carries (the encoder's kernel box is 7 wide): a row is cut
#: into edges of the largest width up to this that divides it.
PARAMETER_CHUNK = 7


class GraphBuilder:
    """Collects the pieces of a neural graph.

    Node ids are handed out in creation order. Every parameter entry is placed exactly once,
    either in a node feature column (``x``) or at a position of an edge kernel (``edge_attr``).
    """

    def __init__(self, module: torch.nn.Module, aliases: dict[str, str] | None = None):
        self.module = module
        self.aliases = dict(aliases or {})
        self.named_tensors: dict[str, torch.Tensor] = named_tensors(module)
        self.constants: set[str] = constant_buffers(module)  # constants of the forward, not parameters
        self._node_chunks: dict[str, list[torch.Tensor]] = {k: [] for k in ("kind", "type", "index", "layer")}
        self._act: list[torch.Tensor] = []
        # per-node descriptions of the operations (schema: act_args, conv_args, pool, pool_args)
        self._op: dict[str, list[torch.Tensor]] = {k: [] for k in ("act_args", "conv_args", "pool", "pool_args",
                                                                "op_code", "norm_eps")}
        self.num_nodes = 0
        self._edge_blocks: list[EdgeBlock] = []  # the edges, one block per add_edges call (nngraph.blocks)
        self.num_edges = 0
        self._edge_constants: list[torch.Tensor] = []  # edge ids with a constant at the kernel centre
        self._edge_constant_values: list[torch.Tensor] = []  # (float64) that constant, 1 for identities
        self._node_placements: list[NodePlacement] = []
        #: (name, edge ids (a tensor broadcastable to the shape, or a strided View of edge ids), kernel_pos,
        #: kernel shape, parameter shape)
        self._edge_placements: list[tuple[str, torch.Tensor | View, torch.Tensor, tuple[int, int, int],
                                          tuple[int, ...]]] = []
        self._placed: set[str] = set()
        self.casts: set[torch.dtype] = set()  # floating dtypes the forward casts activations to
        self._edge_read_back: list[bool] = []  # per edge placement: False for later places of a shared tensor
        self._first_name: dict[int, str] = {}  # id(tensor) -> the name it was first placed under
        self._first_axes: dict[str, Callable[[], list[list[torch.Tensor]]]] = {}  # first places, lazily
        self._group_of_node: list[torch.Tensor] = []
        self._blocks: list[_Block] = []
        self._satellites: list[tuple[torch.Tensor, torch.Tensor]] = []  # (satellites, one node of their block)
        self._parent: list[int] = []
        self._read_inside: list[torch.Tensor] = []  # neurons a layer reads back itself (recurrent states)
        self.module_nodes: dict[str, torch.Tensor] = {}
        self.value_nodes: dict[str, tuple[torch.Tensor, int, tuple[int, ...], int]] = {}
        self.fallbacks: list[str] = []  # what each fallback did (nngraph.convert.fallback), one line each

    # ------------------------------------------------------------------ nodes
    def add_nodes(
        self, count: int, kind: NodeKind, layer: int, node_type: NodeType = NodeType.HIDDEN, permutable: bool = True
    ) -> torch.Tensor:
        """Add ``count`` nodes; returns their ids ``(count,)``. Permutable nodes start a new
        symmetry class (one row); input nodes are never permutable."""
        ids = torch.arange(self.num_nodes, self.num_nodes + count)
        self.num_nodes += count
        self._node_chunks["kind"].append(torch.full((count,), int(kind)))
        self._node_chunks["type"].append(torch.full((count,), int(node_type)))
        self._node_chunks["index"].append(
            torch.arange(count) if node_type == NodeType.INPUT else torch.full((count,), -1)
        )
        self._node_chunks["layer"].append(torch.full((count,), int(layer)))
        self._act.append(torch.zeros(count, dtype=torch.long))
        self._op["act_args"].append(torch.zeros(count, ACT_ARGS_DIM, dtype=torch.float64))
        self._op["conv_args"].append(torch.zeros(count, CONV_ARGS_DIM, dtype=torch.float64))
        self._op["pool"].append(torch.zeros(count, MAX_POOLS, dtype=torch.long))
        self._op["pool_args"].append(torch.zeros(count, MAX_POOLS, POOL_ARGS_DIM, dtype=torch.float64))
        self._op["op_code"].append(torch.zeros(count, OP_CODE_DIM, dtype=torch.long))
        self._op["norm_eps"].append(torch.zeros(count, dtype=torch.float64))
        group = len(self._blocks)
        self._blocks.append(_Block(rows=[ids], fixed=(node_type != NodeType.HIDDEN) or not permutable))
        self._parent.append(group)
        self._group_of_node.append(torch.full((count,), group))
        return ids

    def node_layer(self, nodes: torch.Tensor) -> int:
        """Largest layer index among ``nodes``."""
        layer = torch.cat(self._node_chunks["layer"])
        return int(layer[nodes].max()) if nodes.numel() else 0

    def activation_of(self, nodes: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._act)[nodes]

    def set_activation(self, nodes: torch.Tensor, act: Activation, args: tuple[float, ...] = ()) -> None:
        """Record that ``act`` with parameters ``args`` (``act_args`` columns, see :mod:`nngraph.schema`)
        is applied to the values of ``nodes``."""
        flat = torch.cat(self._act)
        flat[nodes] = int(act)
        self._act = [flat]
        self._set_op("act_args", nodes, _padded(args, ACT_ARGS_DIM))

    def set_op_code(self, nodes: torch.Tensor, code: tuple[int, int]) -> None:
        """Record on ``nodes`` the operation no converter names that made them (``op_code`` columns, see
        :mod:`nngraph.schema` and :mod:`nngraph.convert.fallback`)."""
        self._set_op("op_code", nodes, torch.tensor(code, dtype=torch.long))

    def set_norm_eps(self, nodes: torch.Tensor, eps: float) -> None:
        """Record the ``eps`` of the normalization that made ``nodes`` (schema ``norm_eps``)."""
        self._set_op("norm_eps", nodes, torch.tensor(float(eps), dtype=torch.float64))

    def mark(self) -> tuple[int, ...]:
        """A fingerprint of everything a converter could have added so far (nodes, edges, placements, classes,
        satellites): equal before and after a converter that raised means it changed nothing the graph keeps, so
        the walk can hand the operation to the fallback at once instead of walking the model again."""
        return (self.num_nodes, self.num_edges, len(self._node_placements), len(self._edge_placements),
                len(self._blocks), len(self._satellites), len(self._read_inside), len(self._placed))

    def is_placed(self, name: str) -> bool:
        """Whether parameter or buffer ``name`` (or the tensor it names) has a place in the graph already."""
        name = self.aliases.get(name, name)
        tensor = self.named_tensors.get(name)
        return tensor is not None and id(tensor) in self._first_name

    def mark_read_inside(self, nodes: torch.Tensor) -> None:
        """Record that the layer that made ``nodes`` reads their values itself (a recurrent layer's
        hidden and cell states, fed back at the next step): an activation or pooling applied to its
        output must go on fresh copies, never on these neurons."""
        self._read_inside.append(nodes.reshape(-1).clone())

    def read_inside(self, nodes: torch.Tensor) -> bool:
        """Whether some of ``nodes`` are read back by the layer that made them (see :meth:`mark_read_inside`)."""
        return any(bool(torch.isin(nodes.reshape(-1), r).any()) for r in self._read_inside)

    def fix_partial_rows(self, selected: torch.Tensor) -> None:
        """A value shows only ``selected`` neurons of the activation spaces it came from: fix every class
        of which some row is partly selected (a permutation could move neurons into or out of the
        selection). Whole rows may stay permutable: reading all neurons of one space (one layer's
        final state out of a stack, one direction's half of a bidirectional output) is a relabelling."""
        selected = selected.reshape(-1)
        if selected.numel() == 0:
            return
        mask = torch.zeros(self.num_nodes, dtype=torch.bool)
        mask[selected] = True
        groups = torch.cat(self._group_of_node)[selected]
        for root in {self._root(int(g)) for g in groups.unique().tolist()}:
            block = self._blocks[root]
            if any(bool(mask[row].any()) and not bool(mask[row].all()) for row in block.rows):
                block.fixed = True
                self._fix_owners_of(selected)  # satellites cut by the selection cannot follow their block

    def row_segments(self, nodes: torch.Tensor) -> list[torch.Tensor] | None:
        """``nodes`` cut into whole activation spaces (rows of their classes, in order), or ``None`` if it
        is not such a join (a bidirectional output is its two directions' units side by side)."""
        if self._is_row(nodes):
            return [nodes]
        groups = torch.cat(self._group_of_node)
        out, i, n = [], 0, nodes.numel()
        while i < n:
            block = self._blocks[self._root(int(groups[nodes[i]]))]
            row = next((r for r in block.rows if i + r.numel() <= n and torch.equal(nodes[i:i + r.numel()], r)), None)
            if row is None:
                return None
            out.append(nodes[i:i + row.numel()])
            i += row.numel()
        return out

    def tied_copies(self, nodes: torch.Tensor, kind: NodeKind, layer: int) -> torch.Tensor:
        """New neurons ``(len(nodes),)`` of ``kind``, copy ``i`` tied to ``nodes[i]``: one new space per
        whole space ``nodes`` joins (see :meth:`row_segments`), so each keeps its own symmetry; a cut
        through a space is fixed as :meth:`tie` does."""
        parts = []
        for segment in self.row_segments(nodes) or [nodes]:
            copy = self.add_nodes(segment.numel(), kind, layer)
            self.tie(segment, copy)
            parts.append(copy)
        return torch.cat(parts)

    def set_conv_args(self, nodes: torch.Tensor, args: tuple[float, ...]) -> None:
        """Record the stride, padding, ... (``conv_args`` columns) of the convolution that made ``nodes``."""
        self._set_op("conv_args", nodes, _padded(args, CONV_ARGS_DIM))

    def add_pool(self, nodes: torch.Tensor, kind: Pool, args: dict[str, float]) -> None:
        """Record that the pooling / reduction ``kind`` (``args`` by :data:`~nngraph.schema.POOL_ARGS`
        name, zeros elsewhere) is applied to the values of ``nodes``, after the ones recorded before.

        Raises:
            ValueError: if ``nodes`` already went through :data:`~nngraph.schema.MAX_POOLS` of them.
        """
        pool = torch.cat(self._op["pool"])  # (N, S)
        used = int((pool[nodes] != 0).sum(1).max()) if nodes.numel() else 0
        if used >= MAX_POOLS:
            raise ValueError(f"more than {MAX_POOLS} poolings or reductions in a row on the same neurons")
        row = torch.zeros(POOL_ARGS_DIM, dtype=torch.float64)
        for name, value in args.items():
            row[POOL_ARGS.index(name)] = float(value)
        row[POOL_ARGS.index("after_act")] = float(bool((self.activation_of(nodes) != 0).any()))
        pool[nodes, used] = int(kind)
        self._op["pool"] = [pool]
        pool_args = torch.cat(self._op["pool_args"])  # (N, S, A)
        pool_args[nodes, used] = row
        self._op["pool_args"] = [pool_args]

    def pools_of(self, nodes: torch.Tensor) -> torch.Tensor:
        """``(len(nodes), MAX_POOLS)`` pool kinds recorded on ``nodes``."""
        return torch.cat(self._op["pool"])[nodes]

    def _set_op(self, key: str, nodes: torch.Tensor, row: torch.Tensor) -> None:
        flat = torch.cat(self._op[key])
        flat[nodes] = row
        self._op[key] = [flat]

    def mark_output(self, nodes: torch.Tensor) -> None:
        """Make ``nodes`` the model's output neurons (fixed order, indexed 0..C-1)."""
        node_type = torch.cat(self._node_chunks["type"])
        index = torch.cat(self._node_chunks["index"])
        hidden = node_type[nodes] == NodeType.HIDDEN
        node_type[nodes[hidden]] = int(NodeType.OUTPUT)
        index[nodes[hidden]] = torch.arange(nodes.numel())[hidden]
        self._node_chunks["type"] = [node_type]
        self._node_chunks["index"] = [index]
        self.fix(nodes)  # every space the outputs come from (a bidirectional output joins two)

    # ------------------------------------------------------------------ edges
    def add_edges(
        self,
        src: torch.Tensor,
        dst: torch.Tensor,
        edge_type: EdgeType,
        kernel_shape: tuple[int, int, int] = (1, 1, 1),
        identity: bool = False,
        constant: float | None = None,
    ) -> torch.Tensor:
        """Add edges ``src[e] -> dst[e]``; returns their ids ``(E,)``. ``kernel_shape`` is the
        ``(depth, height, width)`` of the weights each edge carries; ``identity`` edges carry a
        constant 1 at the kernel centre, ``constant`` edges that constant (a scale by a number)."""
        src, dst = src.reshape(-1).long(), dst.reshape(-1).long()
        if src.shape != dst.shape:
            raise ValueError(f"src and dst differ in length: {src.numel()} vs {dst.numel()}")
        count = src.numel()
        ids = torch.arange(self.num_edges, self.num_edges + count)
        self.num_edges += count
        if count:  # a dense layer's edges are stored as a grid of its two neuron lists
            self._edge_blocks.append(EdgeBlock.from_ends(src, dst, int(edge_type), kernel_shape))
        if identity or constant is not None:
            self._edge_constants.append(ids)
            self._edge_constant_values.append(torch.full((count,), 1.0 if constant is None else float(constant),
                                                         dtype=torch.float64))
        return ids

    def add_grid(
        self, src: torch.Tensor, dst: torch.Tensor, edge_type: EdgeType, kernel_shape: tuple[int, int, int] = (1, 1, 1),
        src_major: bool = False,
    ) -> View:
        """Add an edge from every node of ``src`` ``(S,)`` to every node of ``dst`` ``(D,)`` (a dense layer's),
        edge ``j * S + i`` joining ``src[i]`` to ``dst[j]`` (``i * D + j`` when ``src_major``), without any
        per-edge tensor. Returns their ids as a :data:`View` of shape ``(D, S)`` (``(S, D)`` when
        ``src_major``), which :meth:`place_edge_param` takes as it is."""
        start, n_src, n_dst = self.num_edges, src.numel(), dst.numel()
        self.num_edges += n_src * n_dst
        if n_src * n_dst:
            self._edge_blocks.append(EdgeBlock.grid_of(src, dst, int(edge_type), kernel_shape, src_major))
        return (start, (n_src, n_dst), (n_dst, 1)) if src_major else (start, (n_dst, n_src), (n_src, 1))

    # ------------------------------------------------------------- parameters
    def _claim(self, name: str) -> tuple[str, torch.Tensor, str | None]:
        """``(name, tensor, first)``: ``first`` is ``None`` the first time ``tensor`` is placed, and
        the name it was first placed under when it is placed again (a shared parameter: a module
        called twice, or tied weights such as an embedding and an output projection)."""
        name = self.aliases.get(name, name)
        if name not in self.named_tensors:
            raise KeyError(f"the model has no parameter or buffer named {name!r}")
        tensor = self.named_tensors[name]
        first = self._first_name.get(id(tensor))
        if first is None:
            self._first_name[id(tensor)] = name
        self._placed.add(name)
        return name, tensor, first

    def place_node_param(self, name: str, nodes: torch.Tensor, column: int) -> None:
        """Put parameter ``name`` (shape ``nodes.shape``) into column ``column`` of ``x``."""
        name, tensor, first = self._claim(name)
        if tuple(nodes.shape) != tuple(tensor.shape):
            raise ValueError(f"{name}: node ids of shape {tuple(nodes.shape)} for a tensor of {tuple(tensor.shape)}")
        nodes = nodes.long()
        self._share(name, first, lambda: [[line] if (line := _axis_nodes(nodes, k)) is not None else []
                                          for k in range(nodes.dim())])
        self._node_placements.append(NodePlacement(name, nodes.reshape(-1), int(column), shape=tuple(tensor.shape),
                                                   read_back=first is None))

    def place_edge_param(
        self,
        name: str,
        edges: torch.Tensor,
        kernel_pos: torch.Tensor | int = 0,
        kernel_shape: tuple[int, int, int] = (1, 1, 1),
    ) -> None:
        """Put parameter ``name`` into ``edge_attr``: entry ``p[idx]`` goes to edge ``edges[idx]`` at
        flat position ``kernel_pos[idx]`` of a kernel of shape ``kernel_shape`` (C order), which must
        be the kernel shape those edges were added with. ``edges`` and ``kernel_pos`` broadcast to
        the parameter's shape."""
        name, tensor, first = self._claim(name)
        kernel_pos = torch.as_tensor(kernel_pos).long()
        shape = tuple(tensor.shape)
        if isinstance(edges, tuple):  # a View of edge ids (add_grid's), broadcast by zero strides
            if tuple(edges[1]) != shape:
                raise ValueError(f"{name}: edge ids of shape {tuple(edges[1])} for a tensor of {shape}")
            edges = (int(edges[0]), shape, tuple(int(st) for st in edges[2]))
        for index in (kernel_pos,) if isinstance(edges, tuple) else (edges, kernel_pos):
            if torch.broadcast_shapes(index.shape, tensor.shape) != tensor.shape:
                raise ValueError(f"{name}: indices of shape {tuple(index.shape)} for a tensor of {shape}")
        # kept broadcastable, or as a strided view of edge ids (a dense layer's), until finish: memory
        stored = edges if isinstance(edges, tuple) else _compact_edges(edges.long(), shape)
        self._share(name, first, lambda: self._edge_axis_nodes(stored, shape))
        self._edge_placements.append((name, stored, kernel_pos, tuple(kernel_shape), shape))
        self._edge_read_back.append(first is None)

    def _edge_axis_nodes(self, stored: torch.Tensor | View, shape: tuple[int, ...]) -> list[list[torch.Tensor]]:
        """Per axis of a parameter placed on edges ``stored`` (ids broadcastable to ``shape``, or their
        :data:`View`): the node ids its index selects, as a list with one ``(shape[axis],)`` tensor per edge end
        (source, target) that depends on that axis only."""
        blocks = EdgeBlocks(self._edge_blocks)
        if not isinstance(stored, torch.Tensor) and (fast := _grid_axis_nodes(blocks, stored)) is not None:
            return fast  # a dense layer's whole grid (a tied embedding): read off its two neuron lists
        ends = blocks.ends(_edge_ids(stored, shape).expand(shape))  # (src, dst) of every entry
        out = []
        for k in range(len(shape)):
            lines = [_axis_nodes(end, k) for end in ends]
            out.append([
                line for line in lines
                if line is not None and (shape[k] == 1 or bool((line != line[0]).any()))
            ])
        return out

    def _share(self, name: str, first: str | None, axis_nodes: Callable[[], list]) -> None:
        """Remember how to find the per-axis nodes of a parameter's first place; at a later place of
        the same tensor, tie each axis's nodes with those of the first place so that one permutation
        acts on both, or fix every neuron both places touch when the axes do not correspond. Axes
        that select no nodes (kernel positions) are never permuted."""
        if first is None:
            self._first_axes[name] = axis_nodes  # evaluated only if the tensor is placed again
            return
        a, b = self._first_axes[first](), axis_nodes()
        pairs = [(x, y) for xs, ys in zip(a, b) for x, y in zip(xs, ys)]
        same_axes = len(a) == len(b) and all(len(xs) == len(ys) for xs, ys in zip(a, b))
        if same_axes and all(self.tie_rows(x, y) for x, y in pairs):
            return
        for nodes in [n for xs in a + b for n in xs]:  # sound: a permutation moving none of these moves no entry
            self.fix(nodes)

    def place_parameter_rows(self, name: str, readers: torch.Tensor | None = None, layer: int = 0) -> torch.Tensor:
        """Place parameter ``name`` exactly on new fixed :attr:`~nngraph.schema.NodeKind.PARAMETER` nodes, where
        nothing better is known of it (an operation nngraph cannot see through reads it, or nothing does).

        A parameter whose rows (entries of axis 0) hold one entry each is one node per row, the entry in its
        ``bias`` column. Longer rows are cut into pieces of the largest width up to :data:`PARAMETER_CHUNK`
        that divides them, one node per piece, the piece the kernel ``(1, 1, width)`` of an
        :attr:`~nngraph.schema.EdgeType.OPAQUE` edge from the node to ``readers[i % len(readers)]`` (to
        itself without readers). Returns the new nodes."""
        name = self.aliases.get(name, name)
        shape = tuple(self.named_tensors[name].shape)
        numel = 1
        for size in shape:
            numel *= size
        rows = shape[0] if shape else 1
        cols = numel // rows if rows else 0
        if numel == 0:
            self._claim(name)
            return torch.zeros(0, dtype=torch.long)
        if cols == 1:
            nodes = self.add_nodes(rows, NodeKind.PARAMETER, layer, permutable=False)
            self.place_node_param(name, nodes.reshape(shape), 0)
            return nodes
        width = max(k for k in range(1, PARAMETER_CHUNK + 1) if cols % k == 0)  # one kernel shape per parameter
        count = numel // width
        nodes = self.add_nodes(count, NodeKind.PARAMETER, layer, permutable=False)
        targets = nodes if readers is None or readers.numel() == 0 else \
            readers.reshape(-1)[torch.arange(count) % readers.numel()]
        edges = self.add_edges(nodes, targets, EdgeType.OPAQUE, (1, 1, width))  # (count,)
        flat = torch.arange(numel)
        self.place_edge_param(name, edges[flat // width].reshape(shape), (flat % width).reshape(shape), (1, 1, width))
        return nodes

    # ------------------------------------------------------------- symmetries
    def _root(self, group: int) -> int:
        while self._parent[group] != group:
            self._parent[group] = self._parent[self._parent[group]]
            group = self._parent[group]
        return group

    def _block(self, nodes: torch.Tensor) -> _Block:
        groups = torch.cat(self._group_of_node)[nodes]
        roots = {self._root(int(g)) for g in groups.unique()}
        if len(roots) != 1:
            raise ValueError("these neurons belong to several activation spaces")
        return self._blocks[roots.pop()]

    def tie(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Declare that neurons ``a[i]`` and ``b[i]`` are always permuted together (a residual sum,
        a normalization, an activation copy)."""
        if a.numel() != b.numel():
            raise ValueError(f"cannot tie spaces of {a.numel()} and {b.numel()} neurons")
        self._fix_owners_of(a)  # satellites tied to other neurons could no longer follow their block
        self._fix_owners_of(b)
        if not (self._is_row(a) and self._is_row(b)):
            parts_a, parts_b = self.row_segments(a), self.row_segments(b)
            if parts_a and parts_b and [p.numel() for p in parts_a] == [p.numel() for p in parts_b]:
                for pa, pb in zip(parts_a, parts_b):  # joins of whole spaces, cut alike: tie space by space
                    self._merge(pa, pb)
                return
            self.fix(a)  # a selection, or joins cut differently: fix, soundly
            self.fix(b)
            return
        self._merge(a, b)

    def _merge(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Union the classes of the whole rows ``a`` and ``b`` (position ``i`` of one with ``i`` of the other)."""
        groups = torch.cat(self._group_of_node)
        ra, rb = self._root(int(groups[a[0]])), self._root(int(groups[b[0]]))
        if ra == rb:
            return
        block_a, block_b = self._blocks[ra], self._blocks[rb]
        if block_a.block_size and block_b.block_size and block_a.block_size != block_b.block_size:
            block_a.fixed = True  # two incompatible block structures: keep the class still (conservative)
        block_a.rows += block_b.rows
        block_a.fixed = block_a.fixed or block_b.fixed
        block_a.block_size = block_a.block_size or block_b.block_size
        block_a.satellites += block_b.satellites
        self._parent[rb] = ra

    def split_class(self, nodes: torch.Tensor, sizes: list[int]) -> None:
        """The activation space ``nodes`` is cut into consecutive chunks of ``sizes`` that are used
        apart (``torch.split`` of the feature axis): each chunk, with the matching chunk of every
        space tied to it, becomes a class of its own. Spaces with head or group blocks are fixed
        instead (conservative)."""
        if sum(sizes) != nodes.numel():
            raise ValueError(f"chunks {sizes} do not cover {nodes.numel()} neurons")
        if len(sizes) == 1:
            return
        if not self._is_row(nodes):
            self.fix(nodes)
            return
        groups = torch.cat(self._group_of_node)
        root = self._root(int(groups[nodes[0]]))
        block = self._blocks[root]
        if block.block_size or block.satellites:
            block.fixed = True
            return
        bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
        for start, stop in zip(bounds[:-1], bounds[1:]):
            group = len(self._blocks)
            rows = [row[start:stop] for row in block.rows]
            self._blocks.append(_Block(rows=rows, fixed=block.fixed))
            self._parent.append(group)
            for row in rows:
                groups[row] = group
        block.rows, block.fixed = [], True  # emptied: its neurons now belong to the chunks
        self._group_of_node = [groups]

    def fix(self, nodes: torch.Tensor) -> None:
        """Mark every activation space that ``nodes`` belong to as fixed (no permutation acts on it):
        the honest answer where an operation breaks the symmetry of some neurons."""
        if nodes.numel() == 0:
            return
        groups = torch.cat(self._group_of_node)[nodes.reshape(-1)]
        for group in groups.unique().tolist():
            self._blocks[self._root(int(group))].fixed = True

    def tie_rows(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        """:meth:`tie` ``a`` and ``b`` if each is a whole activation space, in the order its class
        permutes it; otherwise do nothing and return ``False``."""
        if a.numel() != b.numel() or not (self._is_row(a) and self._is_row(b)):
            return False
        self._fix_owners_of(a)
        self._fix_owners_of(b)
        self._merge(a, b)
        return True

    def _is_row(self, nodes: torch.Tensor) -> bool:
        groups = torch.cat(self._group_of_node)[nodes]
        if groups.unique().numel() != 1:
            return False
        block = self._blocks[self._root(int(groups[0]))]
        return any(row.shape == nodes.shape and torch.equal(row, nodes) for row in block.rows)

    def constrain_blocks(self, nodes: torch.Tensor, block_size: int, satellites: torch.Tensor | None = None) -> None:
        """Only permutations that keep contiguous blocks of ``block_size`` neurons together are
        symmetries of the class of ``nodes`` (GroupNorm groups, attention heads). ``satellites``
        ``(num_blocks,)`` are nodes that move with their block (a group or head node, a per-head score
        bias). Satellites that already move with another block, or whose own space holds other
        neurons, cannot follow this one: the class is fixed instead (conservative)."""
        block = self._block(nodes)
        if block.block_size not in (None, block_size):
            block.fixed = True
        block.block_size = block_size
        if satellites is None:
            return
        satellites = satellites.reshape(-1)
        own = self._block(satellites)
        taken = any(bool(torch.isin(satellites, s).any()) for s, _ in self._satellites)
        if taken or len(own.rows) != 1 or not torch.equal(own.rows[0], satellites) or own.fixed:
            block.fixed = True
            for s, owner in self._satellites:
                if bool(torch.isin(satellites, s).any()):
                    self._block(owner).fixed = True
            own.fixed = True
            return
        block.satellites.append(satellites)
        self._satellites.append((satellites, nodes.reshape(-1)[:1]))
        own.fixed = True  # moved only through the block permutation

    def _fix_owners_of(self, nodes: torch.Tensor) -> None:
        """Fix the blocks that ``nodes`` move with as satellites (they are being tied to other neurons)."""
        for s, owner in self._satellites:
            if bool(torch.isin(nodes, s).any()):
                self._block(owner).fixed = True

    def record_value(self, name: str, nodes: torch.Tensor, axis: int, spatial: tuple[int, ...],
                     head_axis: int = -1) -> None:
        """Remember that fx value ``name`` holds the neurons ``nodes`` on ``axis`` (for probe features);
        ``head_axis`` ``>= 0`` when they are split into heads (``nodes[h * D + j]`` at ``h`` on ``head_axis``
        and ``j`` on ``axis``)."""
        self.value_nodes[name] = (nodes, axis, spatial, head_axis)

    def record_module_nodes(self, name: str, nodes: torch.Tensor) -> None:
        """Remember which nodes hold the output neurons of the module / fx node ``name``."""
        self.module_nodes[name] = nodes

    # ------------------------------------------------------------------ finish
    def finish(
        self, dtype: torch.dtype, kernel_box: tuple[int, int, int] | None = None, fx_graph=None,
        input_spec: tuple | None = None,
    ) -> Layout:
        """Freeze what was collected into a :class:`Layout`. A parameter or floating-point buffer no
        operation placed (read by nothing the walk saw) goes on fixed parameter nodes
        (:meth:`place_parameter_rows`), so every entry has a place. ``kernel_box`` is ignored: kernels are stored
        at their own size (see :mod:`nngraph.schema`)."""
        missing = [
            n for n, t in self.named_tensors.items()
            if id(t) not in self._first_name and t.is_floating_point() and not n.endswith("num_batches_tracked")
            and n not in self.constants
        ]
        for name in missing:  # read by nothing nngraph saw: kept exactly, on fixed parameter nodes
            if not self.is_placed(name):  # (one tensor under two names is placed once)
                self.place_parameter_rows(name)
        cat = lambda chunks, n: torch.cat(chunks) if chunks else torch.zeros(n, dtype=torch.long)  # noqa: E731
        blocks = EdgeBlocks(self._edge_blocks)
        num_entries = blocks.num_entries
        edge_placements = []
        for (name, stored, kernel_pos, kshape, shape), read_back in zip(self._edge_placements, self._edge_read_back):
            view = _block_view(blocks, stored, kernel_pos, kshape)
            if view is not None:  # a dense layer's weights in one block: positions by arithmetic
                edge_placements.append(EdgePlacement(name, None, view, read_back, shape))
                continue
            edges = _edge_ids(stored, shape)
            _check_kernel_shape(name, blocks, edges, kshape)
            positions = (blocks.entry_offsets(edges) + kernel_pos).reshape(-1)  # (numel,)
            view = flat_view(positions, shape, num_entries)
            # a strided placement keeps its view only (a dense layer's positions would cost 8 bytes a weight)
            edge_placements.append(EdgePlacement(name, None if view is not None else positions, view, read_back, shape))
            del edges, positions
        node_placements = tuple(
            NodePlacement(p.name, p.nodes, p.column,
                          flat_view(p.nodes * NODE_FEATURE_DIM + p.column, p.shape, self.num_nodes * NODE_FEATURE_DIM),
                          p.shape, p.read_back)
            for p in self._node_placements
        )
        constant_edges = torch.cat(self._edge_constants) if self._edge_constants else torch.zeros(0, dtype=torch.long)
        # the constant 1 of an identity edge sits at its kernel's centre (they are 1x1 in practice)
        centre = _centre_position(blocks.kernel_shapes_of(constant_edges).long())
        return Layout(
            num_nodes=self.num_nodes,
            edge_blocks=blocks,
            node_type=cat(self._node_chunks["type"], 0),
            node_kind=cat(self._node_chunks["kind"], 0),
            io_position=cat(self._node_chunks["index"], 0),
            layer=cat(self._node_chunks["layer"], 0),
            act=cat(self._act, 0),
            **{k: torch.cat(v) for k, v in self._op.items() if v},
            num_entries=num_entries,
            identity_positions=blocks.entry_offsets(constant_edges) + centre,
            identity_values=torch.cat(self._edge_constant_values) if self._edge_constant_values else None,
            node_placements=node_placements,
            edge_placements=tuple(edge_placements),
            symmetries=self._symmetries(),
            module_nodes=dict(self.module_nodes),
            value_nodes=dict(self.value_nodes),
            fx_graph=fx_graph if not self.aliases else None,
            dtype=dtype,
            input_spec=input_spec,
            casts=tuple(sorted(self.casts, key=str)),
            fallbacks=tuple(self.fallbacks),
        )

    def _symmetries(self) -> tuple[SymmetryGroup, ...]:
        out = []
        for index, block in enumerate(self._blocks):
            if self._root(index) != index or block.fixed:
                continue
            rows = torch.stack(block.rows)  # (R, C)
            satellites = torch.stack(block.satellites) if block.satellites else None  # (S, C // block_size)
            out.append(SymmetryGroup(rows=rows, block_size=block.block_size, satellites=satellites))
        return tuple(out)


def _axis_nodes(nodes: torch.Tensor, axis: int) -> torch.Tensor | None:
    """``(shape[axis],)`` node ids if ``nodes`` depends on its index along ``axis`` only, else ``None``."""
    index = [0] * nodes.dim()
    index[axis] = slice(None)
    line = nodes[tuple(index)]  # (shape[axis],)
    view = [1] * nodes.dim()
    view[axis] = -1
    if torch.equal(line.view(view).expand_as(nodes), nodes):
        return line.clone()
    return None


def _padded(args: tuple[float, ...], width: int) -> torch.Tensor:
    """``args`` as a ``(width,)`` float64 row, zero-padded on the right."""
    if len(args) > width:
        raise ValueError(f"{len(args)} operation arguments for {width} columns")
    row = torch.zeros(width, dtype=torch.float64)
    row[: len(args)] = torch.tensor([float(a) for a in args], dtype=torch.float64)
    return row


def _compact_edges(edges: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | View:
    """The edge ids of a placement as given (broadcastable to ``shape``), or as a :data:`View` when they are a
    large strided range (a dense layer's weights on consecutive edges): 8 bytes a weight saved until finish."""
    if edges.numel() < 4096:
        return edges
    full = edges.expand(shape).reshape(-1)  # (numel,)
    view = flat_view(full, shape, int(full.max()) + 1)
    return edges if view is None else view


def _block_view(blocks: EdgeBlocks, stored, kernel_pos: torch.Tensor, kshape: tuple[int, int, int]) -> View | None:
    """The positions :data:`View` of a placement whose edge ids are a :data:`View` inside one block of kernels of
    its shape, with kernel positions an affine function of the index (a linear layer's weight, a convolution's
    kernels), computed without any per-entry tensor; else ``None``."""
    if isinstance(stored, torch.Tensor):
        return None
    offset, shape, strides = stored
    if any(st < 0 for st in strides):
        return None
    last = offset + sum((n - 1) * st for n, st in zip(shape, strides))
    block = blocks.block_index(offset)
    if block != blocks.block_index(last) or blocks.blocks[block].kernel_shape != tuple(kshape):
        return None
    size = blocks.blocks[block].kernel_size
    affine = _affine(kernel_pos, shape, size)
    if affine is None:
        return None
    k0, kstrides = affine
    # entry of index idx: entry_start + (edge(idx) - start) * size + kernel_pos(idx)
    start = blocks.entry_starts[block] + (offset - blocks.starts[block]) * size + k0
    return start, tuple(shape), tuple(st * size + k for st, k in zip(strides, kstrides))


def _affine(values: torch.Tensor, shape: tuple[int, ...], size: int, limit: int = 1 << 16
            ) -> tuple[int, tuple[int, ...]] | None:
    """``(offset, strides)`` with ``values[idx] == offset + sum_d idx_d * strides[d]`` for ``values`` broadcast to
    ``shape``, all in ``0 .. size - 1`` (:func:`flat_view` of ``values`` at their own shape, broadcast axes
    stride 0), or ``None``; ``values`` larger than ``limit`` entries are not examined."""
    if values.numel() > limit or values.dim() > len(shape):
        return None
    own = (1,) * (len(shape) - values.dim()) + tuple(values.shape)  # values' axes, padded on the left
    view = flat_view(values.reshape(-1), own, size)
    return None if view is None else (view[0], view[2])


def _grid_axis_nodes(blocks: EdgeBlocks, view: View) -> list[list[torch.Tensor]] | None:
    """:meth:`GraphBuilder._edge_axis_nodes` of a placement whose edge ids are exactly one grid block, one axis
    running along its major list (stride = the minor list's length), one along its minor list (stride 1) and any
    other axes broadcast (stride 0, length > 1: kernel positions), both lists longer than 1; ``None`` otherwise.
    Then the major end depends on the first axis only, the minor end on the second only, and nothing on the
    others: the answer without the ends of every entry."""
    offset, shape, strides = view
    index = blocks.block_index(offset)
    block = blocks.blocks[index]
    if not block.grid or offset != blocks.starts[index]:
        return None
    major, minor = (block.src, block.dst) if block.src_major else (block.dst, block.src)
    width = minor.numel()
    if major.numel() < 2 or width < 2:
        return None
    along = {}
    for k, (n, st) in enumerate(zip(shape, strides)):
        if st == 0 and n > 1:
            continue
        if (st, n) == (width, major.numel()) and "major" not in along:
            along["major"] = k
        elif (st, n) == (1, width) and "minor" not in along:
            along["minor"] = k
        else:
            return None
    if len(along) != 2:
        return None
    out: list[list[torch.Tensor]] = [[] for _ in shape]
    out[along["major"]].append(major.long())
    out[along["minor"]].append(minor.long())
    return out


def _edge_ids(stored: torch.Tensor | View, shape: tuple[int, ...]) -> torch.Tensor:
    """The edge ids of a placement, broadcastable to ``shape``."""
    return stored if isinstance(stored, torch.Tensor) else view_indices(stored)


def _check_kernel_shape(name: str, blocks: EdgeBlocks, edges: torch.Tensor, kshape: tuple[int, int, int]) -> None:
    """Every weight is placed as kernels of the shape its edges were added with (else its entries
    would land in other edges' kernels)."""
    if not edges.numel():
        return
    lo, hi = torch.aminmax(edges)
    block = blocks.block_index(int(lo))
    if block == blocks.block_index(int(hi)):  # the edges lie in one block of one shape
        ok = blocks.blocks[block].kernel_shape == tuple(kshape)
    else:
        ok = bool((blocks.kernel_shapes_of(edges) == torch.tensor(kshape, dtype=torch.int32)).all())
    if not ok:
        raise ValueError(f"{name}: placed as {tuple(kshape)} kernels on edges added with other kernel shapes")


def _centre_position(kernel_shape: torch.Tensor) -> torch.Tensor:
    """``(n,)``: the flat (C order) position of the centre of every kernel of ``kernel_shape`` ``(n, 3)``."""
    c = (kernel_shape - 1) // 2  # (n, 3)
    return (c[:, 0] * kernel_shape[:, 1] + c[:, 1]) * kernel_shape[:, 2] + c[:, 2]
