"""Accumulates nodes, edges and parameter placements while a model is converted.

Converters add nodes and edges in blocks (one call per layer, never per weight) and say where
each parameter entry goes; :meth:`GraphBuilder.finish` turns that into a :class:`Layout`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..schema import Activation, EdgeType, NodeKind, NodeType
from ..kernels import KERNEL_SHAPE_DTYPE, kernel_sizes
from ..schema import NODE_FEATURE_DIM
from .layout import EdgePlacement, Layout, NodePlacement, SymmetryGroup, flat_view


@dataclass
class _Block:
    """Union-find class of activation spaces that must be permuted together."""

    rows: list[torch.Tensor]
    fixed: bool = False
    block_size: int | None = None  # permutations must preserve contiguous blocks of this size
    satellites: list[torch.Tensor] = field(default_factory=list)  # (num_blocks,) nodes moving with blocks


class GraphBuilder:
    """Collects the pieces of a neural graph.

    Node ids are handed out in creation order. Every parameter entry is placed exactly once,
    either in a node feature column (``x``) or at a position of an edge kernel (``edge_attr``).
    """

    def __init__(self, module: torch.nn.Module, aliases: dict[str, str] | None = None):
        self.module = module
        self.aliases = dict(aliases or {})
        self.named_tensors: dict[str, torch.Tensor] = dict(module.named_parameters(remove_duplicate=False))
        self.named_tensors.update(dict(module.named_buffers(remove_duplicate=False)))
        self._node_chunks: dict[str, list[torch.Tensor]] = {k: [] for k in ("kind", "type", "index", "layer")}
        self._act: list[torch.Tensor] = []
        self.num_nodes = 0
        self._edge_chunks: dict[str, list[torch.Tensor]] = {k: [] for k in ("src", "dst", "type", "kshape")}
        self.num_edges = 0
        self._edge_constants: list[torch.Tensor] = []  # edge ids with 1 at the kernel centre
        self._node_placements: list[NodePlacement] = []
        self._edge_placements: list[tuple[str, torch.Tensor, torch.Tensor, tuple[int, int, int]]] = []
        self._placed: set[str] = set()
        self._group_of_node: list[torch.Tensor] = []
        self._blocks: list[_Block] = []
        self._parent: list[int] = []
        self.module_nodes: dict[str, torch.Tensor] = {}
        self.value_nodes: dict[str, tuple[torch.Tensor, int, tuple[int, ...]]] = {}

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

    def set_activation(self, nodes: torch.Tensor, act: Activation) -> None:
        """Record that ``act`` is applied to the values of ``nodes``."""
        flat = torch.cat(self._act)
        flat[nodes] = int(act)
        self._act = [flat]

    def mark_output(self, nodes: torch.Tensor) -> None:
        """Make ``nodes`` the model's output neurons (fixed order, indexed 0..C-1)."""
        node_type = torch.cat(self._node_chunks["type"])
        index = torch.cat(self._node_chunks["index"])
        hidden = node_type[nodes] == NodeType.HIDDEN
        node_type[nodes[hidden]] = int(NodeType.OUTPUT)
        index[nodes[hidden]] = torch.arange(nodes.numel())[hidden]
        self._node_chunks["type"] = [node_type]
        self._node_chunks["index"] = [index]
        self._block(nodes).fixed = True

    # ------------------------------------------------------------------ edges
    def add_edges(
        self,
        src: torch.Tensor,
        dst: torch.Tensor,
        edge_type: EdgeType,
        kernel_shape: tuple[int, int, int] = (1, 1, 1),
        identity: bool = False,
    ) -> torch.Tensor:
        """Add edges ``src[e] -> dst[e]``; returns their ids ``(E,)``. ``kernel_shape`` is the
        ``(depth, height, width)`` of the weights each edge carries; ``identity`` edges carry a
        constant 1 at the kernel centre."""
        src, dst = src.reshape(-1).long(), dst.reshape(-1).long()
        if src.shape != dst.shape:
            raise ValueError(f"src and dst differ in length: {src.numel()} vs {dst.numel()}")
        count = src.numel()
        ids = torch.arange(self.num_edges, self.num_edges + count)
        self.num_edges += count
        self._edge_chunks["src"].append(src)
        self._edge_chunks["dst"].append(dst)
        self._edge_chunks["type"].append(torch.full((count,), int(edge_type)))
        if count:  # one (count, (3,)) kernel shape per block of edges, expanded in finish
            self._edge_chunks["kshape"].append((count, tuple(int(k) for k in kernel_shape)))
        if identity:
            self._edge_constants.append(ids)
        return ids

    # ------------------------------------------------------------- parameters
    def _claim(self, name: str) -> tuple[str, torch.Tensor]:
        name = self.aliases.get(name, name)
        if name not in self.named_tensors:
            raise KeyError(f"the model has no parameter or buffer named {name!r}")
        if name in self._placed:
            raise ValueError(
                f"parameter {name!r} is used twice (shared weights); nngraph needs each weight in one place"
            )
        self._placed.add(name)
        return name, self.named_tensors[name]

    def place_node_param(self, name: str, nodes: torch.Tensor, column: int) -> None:
        """Put parameter ``name`` (shape ``nodes.shape``) into column ``column`` of ``x``."""
        name, tensor = self._claim(name)
        if tuple(nodes.shape) != tuple(tensor.shape):
            raise ValueError(f"{name}: node ids of shape {tuple(nodes.shape)} for a tensor of {tuple(tensor.shape)}")
        self._node_placements.append(NodePlacement(name, nodes.reshape(-1).long(), int(column), shape=tuple(tensor.shape)))

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
        name, tensor = self._claim(name)
        edges, kernel_pos = edges.long(), torch.as_tensor(kernel_pos).long()
        for index in (edges, kernel_pos):
            if torch.broadcast_shapes(index.shape, tensor.shape) != tensor.shape:
                raise ValueError(f"{name}: indices of shape {tuple(index.shape)} for a tensor of {tuple(tensor.shape)}")
        # kept broadcastable (not expanded to one entry per weight) until finish: memory
        self._edge_placements.append((name, edges, kernel_pos, tuple(kernel_shape), tuple(tensor.shape)))

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

    def constrain_blocks(self, nodes: torch.Tensor, block_size: int, satellites: torch.Tensor | None = None) -> None:
        """Only permutations that keep contiguous blocks of ``block_size`` neurons together are
        symmetries of the class of ``nodes`` (GroupNorm groups, attention heads). ``satellites``
        ``(num_blocks,)`` are nodes that move with their block (a group or head node)."""
        block = self._block(nodes)
        if block.block_size not in (None, block_size):
            block.fixed = True
        block.block_size = block_size
        if satellites is not None:
            block.satellites.append(satellites.reshape(-1))
            self._block(satellites).fixed = True  # moved only through the block permutation

    def record_value(self, name: str, nodes: torch.Tensor, axis: int, spatial: tuple[int, ...]) -> None:
        """Remember that fx value ``name`` holds the neurons ``nodes`` on ``axis`` (for probe features)."""
        self.value_nodes[name] = (nodes, axis, spatial)

    def record_module_nodes(self, name: str, nodes: torch.Tensor) -> None:
        """Remember which nodes hold the output neurons of the module / fx node ``name``."""
        self.module_nodes[name] = nodes

    # ------------------------------------------------------------------ finish
    def finish(
        self, dtype: torch.dtype, kernel_box: tuple[int, int, int] | None = None, fx_graph=None
    ) -> Layout:
        """Freeze what was collected into a :class:`Layout`. Every parameter and floating-point
        buffer of the module must have been placed. ``kernel_box`` is ignored: kernels are stored
        at their own size (see :mod:`nngraph.schema`)."""
        missing = [
            n for n, t in self.named_tensors.items()
            if n not in self._placed and t.is_floating_point() and not n.endswith("num_batches_tracked")
        ]
        if missing:
            from .errors import UnsupportedError

            raise UnsupportedError(
                "these parameters are not used by any layer nngraph converted, so the graph would "
                f"silently drop them: {missing}. They may be read by an operation nngraph does not "
                "know (a functional call on a parameter, for instance)."
            )
        cat = lambda chunks, n: torch.cat(chunks) if chunks else torch.zeros(n, dtype=torch.long)  # noqa: E731
        src = cat(self._edge_chunks["src"], 0)
        dst = cat(self._edge_chunks["dst"], 0)
        kernel_shape, offsets, num_entries = _kernel_shapes(self._edge_chunks["kshape"], self.num_edges)  # (E, 3), (E,)
        _check_kernel_shapes(self._edge_placements, self._edge_chunks["kshape"], kernel_shape)
        edge_placements = tuple(
            EdgePlacement(name, positions, flat_view(positions, shape, num_entries))
            for name, positions, shape in (
                (name, _flat_positions(edges, kernel_pos, offsets, shape), shape)
                for name, edges, kernel_pos, _, shape in self._edge_placements
            )
        )
        node_placements = tuple(
            NodePlacement(p.name, p.nodes, p.column,
                          flat_view(p.nodes * NODE_FEATURE_DIM + p.column, p.shape, self.num_nodes * NODE_FEATURE_DIM),
                          p.shape)
            for p in self._node_placements
        )
        constant_edges = torch.cat(self._edge_constants) if self._edge_constants else torch.zeros(0, dtype=torch.long)
        # the constant 1 of an identity edge sits at its kernel's centre (they are 1x1 in practice)
        centre = _centre_position(kernel_shape[constant_edges].long())
        return Layout(
            num_nodes=self.num_nodes,
            edge_index=torch.stack([src, dst]),
            edge_type=cat(self._edge_chunks["type"], 0),
            node_type=cat(self._node_chunks["type"], 0),
            node_kind=cat(self._node_chunks["kind"], 0),
            io_position=cat(self._node_chunks["index"], 0),
            layer=cat(self._node_chunks["layer"], 0),
            act=cat(self._act, 0),
            kernel_shape=kernel_shape,
            num_entries=num_entries,
            identity_positions=offsets[constant_edges] + centre,
            node_placements=node_placements,
            edge_placements=edge_placements,
            symmetries=self._symmetries(),
            module_nodes=dict(self.module_nodes),
            value_nodes=dict(self.value_nodes),
            fx_graph=fx_graph if not self.aliases else None,
            dtype=dtype,
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


def _kernel_shapes(chunks: list[tuple[int, tuple[int, int, int]]], num_edges: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(kernel_shape (E, 3), offsets (E,), W)`` from ``(count, shape)`` blocks of edges, worked out
    per block (a ViT-B has 86M edges)."""
    if not chunks:
        return torch.ones(num_edges, 3, dtype=KERNEL_SHAPE_DTYPE), torch.arange(num_edges), num_edges
    kernel_shape = torch.empty(num_edges, 3, dtype=KERNEL_SHAPE_DTYPE)  # (E, 3)
    offsets = torch.empty(num_edges, dtype=torch.long)  # (E,)
    start, entry = 0, 0
    for count, shape in chunks:  # one fill per block of edges
        size = shape[0] * shape[1] * shape[2]
        kernel_shape[start:start + count] = torch.tensor(shape, dtype=KERNEL_SHAPE_DTYPE)
        torch.arange(entry, entry + count * size, size, out=offsets[start:start + count])
        start, entry = start + count, entry + count * size
    return kernel_shape, offsets, entry


def _check_kernel_shapes(placements, chunks, kernel_shape: torch.Tensor) -> None:
    """Every weight is placed as kernels of the shape its edges were added with (else its entries
    would land in other edges' kernels)."""
    ends = torch.tensor([c for c, _ in chunks]).cumsum(0) if chunks else torch.zeros(0, dtype=torch.long)
    for name, edges, _, kshape, _ in placements:
        if not edges.numel():
            continue
        lo, hi = int(edges.min()), int(edges.max())
        block = int(torch.searchsorted(ends, lo, right=True))
        if block < len(chunks) and hi < int(ends[block]) and lo >= int(ends[block]) - chunks[block][0]:
            ok = chunks[block][1] == tuple(kshape)  # the edges lie in one block of one shape
        else:
            ok = bool((kernel_shape[edges.reshape(-1)] == torch.tensor(kshape, dtype=kernel_shape.dtype)).all())
        if not ok:
            raise ValueError(f"{name}: placed as {tuple(kshape)} kernels on edges added with other kernel shapes")


def _flat_positions(edges, kernel_pos, offsets, shape) -> torch.Tensor:
    """``(prod(shape),)`` rows of ``edge_attr`` of a parameter of ``shape`` whose entry ``idx`` is at
    kernel position ``kernel_pos[idx]`` of edge ``edges[idx]`` (both broadcast to ``shape``)."""
    positions = offsets[edges] + kernel_pos  # broadcastable to shape
    return positions.expand(shape).reshape(-1)  # (numel,)


def _centre_position(kernel_shape: torch.Tensor) -> torch.Tensor:
    """``(n,)``: the flat (C order) position of the centre of every kernel of ``kernel_shape`` ``(n, 3)``."""
    c = (kernel_shape - 1) // 2  # (n, 3)
    return (c[:, 0] * kernel_shape[:, 1] + c[:, 1]) * kernel_shape[:, 2] + c[:, 2]
