"""The edges of a neural graph as blocks, so that a dense layer costs its parameter bytes plus a constant.

A dense layer's edges connect every input neuron to every output neuron: they are a *grid* of two node
lists, and ``edge_index`` of such a block is a function of the two lists. Other edges (identity edges of
residuals and norms, a sparse pattern) are a *list* block holding both ends. :class:`EdgeBlocks` is the
whole edge set of a graph as consecutive blocks; edge ids, the rows of ``edge_attr`` (kernel entries) and
``edge_type`` / ``kernel_shape`` all follow from it, so a graph can be processed block by block
(:meth:`EdgeBlocks.chunks`) without ever holding ``(2, E)`` indices, and materialised into the plain PyG
tensors when it is small.

Node ids are stored as int32 (4 bytes; a graph has far fewer than 2**31 nodes) and handed out as int64,
what PyG and torch's index ops expect.

Imports only torch: shared by the converters, the encoder and the graph files.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from .kernels import KERNEL_SHAPE_DTYPE

__all__ = ["COMPACT_EDGES", "EdgeBlock", "EdgeBlocks", "EdgeChunk", "KERNEL_SHAPE_DTYPE", "NODE_ID_DTYPE", "is_blocked",
           "materialize"]

#: dtype node ids are stored in
NODE_ID_DTYPE = torch.int32


@dataclass(frozen=True, eq=False)
class EdgeBlock:
    """Consecutive edges of one type and one kernel shape.

    A grid block (``grid=True``) with ``src`` ``(S,)`` and ``dst`` ``(D,)`` holds ``S * D`` edges: local edge
    ``k`` is ``src[k // D] -> dst[k % D]`` when ``src_major`` (a linear layer's ``(out, in)`` weight read in
    order, transposed), else ``src[k % S] -> dst[k // S]``. A list block holds ``src[k] -> dst[k]``.
    """

    src: Tensor
    dst: Tensor
    edge_type: int
    kernel_shape: tuple[int, int, int] = (1, 1, 1)
    grid: bool = False
    src_major: bool = True

    @property
    def count(self) -> int:
        if self.grid:
            return self.src.numel() * self.dst.numel()
        return self.src.numel()

    @property
    def kernel_size(self) -> int:
        return math.prod(self.kernel_shape)

    def ends(self, local: Tensor) -> tuple[Tensor, Tensor]:
        """``(src, dst)`` int64 of the block's edges ``local`` (any shape, ids within the block)."""
        if not self.grid:
            return self.src[local].long(), self.dst[local].long()
        if self.src_major:
            width = self.dst.numel()
            return self.src[local // width].long(), self.dst[local % width].long()
        width = self.src.numel()
        return self.src[local % width].long(), self.dst[local // width].long()

    def range_ends(self, lo: int, hi: int) -> tuple[Tensor, Tensor]:
        """``(src, dst)`` int64 ``(hi - lo,)`` of the block's edges ``lo..hi-1``."""
        if not self.grid:
            return self.src[lo:hi].long(), self.dst[lo:hi].long()
        return self.ends(torch.arange(lo, hi))

    @property
    def nbytes(self) -> int:
        return self.src.numel() * self.src.element_size() + self.dst.numel() * self.dst.element_size()

    def same_as(self, other: "EdgeBlock") -> bool:
        return (self.grid == other.grid and self.src_major == other.src_major and self.edge_type == other.edge_type
                and self.kernel_shape == other.kernel_shape and torch.equal(self.src, other.src)
                and torch.equal(self.dst, other.dst))

    @staticmethod
    def grid_of(src: Tensor, dst: Tensor, edge_type: int, kernel_shape: tuple[int, int, int] = (1, 1, 1),
                src_major: bool = False) -> "EdgeBlock":
        """The block of every edge ``src[i] -> dst[j]`` (``src`` ``(S,)``, ``dst`` ``(D,)``), edge ``j * S + i``
        (``i * D + j`` when ``src_major``): a dense layer's, given by its two neuron lists."""
        return EdgeBlock(src.reshape(-1).to(NODE_ID_DTYPE).clone(), dst.reshape(-1).to(NODE_ID_DTYPE).clone(),
                         int(edge_type), tuple(int(k) for k in kernel_shape), grid=True, src_major=src_major)

    @staticmethod
    def from_ends(src: Tensor, dst: Tensor, edge_type: int, kernel_shape: tuple[int, int, int] = (1, 1, 1)
                  ) -> "EdgeBlock":
        """The block of edges ``src[k] -> dst[k]`` (``(n,)`` each), as a grid when they are one (detected in
        ``O(n)``), else as a list."""
        src, dst = src.reshape(-1), dst.reshape(-1)
        kernel_shape = tuple(int(k) for k in kernel_shape)
        n = src.numel()
        if n >= 4:
            for major, minor, src_major in ((src, dst, True), (dst, src, False)):
                width = _first_run(major)  # the major end is constant over runs of this length
                if width > 1 and n % width == 0:
                    rows_major, rows_minor = major.view(-1, width), minor.view(-1, width)  # (n / width, width)
                    if bool((rows_major == rows_major[:, :1]).all()) and bool((rows_minor == rows_minor[:1]).all()):
                        a, b = rows_major[:, 0], rows_minor[0]
                        s, d = (a, b) if src_major else (b, a)
                        return EdgeBlock(s.to(NODE_ID_DTYPE).clone(), d.to(NODE_ID_DTYPE).clone(), int(edge_type),
                                         kernel_shape, grid=True, src_major=src_major)
        return EdgeBlock(src.to(NODE_ID_DTYPE).clone(), dst.to(NODE_ID_DTYPE).clone(), int(edge_type), kernel_shape)


def _first_run(values: Tensor) -> int:
    """Length of the run of equal values that ``values`` ``(n,)`` starts with, found in prefixes growing 4x at a
    time: the cost follows the run's length, not ``n``."""
    size = 256
    while True:
        changed = values[:size] != values[0]
        if bool(changed.any()):
            return int(changed.to(torch.uint8).argmax())
        if size >= values.numel():
            return values.numel()
        size *= 4


class EdgeChunk:
    """Edges ``edges`` (a range of edge ids) of one block with their ends ``src`` / ``dst`` ``(n,)`` int64, type and
    kernel rows ``entries``.

    A chunk of a grid block holds whole rows: ``grid = (rows, cols, src_major)``, local edge ``r * C + c``
    joining ``rows[r]`` and ``cols[c]`` (``rows`` the sources when ``src_major``, else the targets), so that
    per-edge work can broadcast two node tables instead of gathering ``n`` rows; its ``src`` / ``dst`` are made
    only when read."""

    __slots__ = ("edges", "entries", "edge_type", "kernel_shape", "grid", "_src", "_dst")

    def __init__(self, edges: range, entries: range, edge_type: int, kernel_shape: tuple[int, int, int],
                 src: Tensor | None = None, dst: Tensor | None = None,
                 grid: tuple[Tensor, Tensor, bool] | None = None):
        self.edges, self.entries, self.edge_type, self.kernel_shape, self.grid = (edges, entries, edge_type,
                                                                                  kernel_shape, grid)
        self._src, self._dst = src, dst

    def _ends(self) -> tuple[Tensor, Tensor]:
        """A grid chunk's ``(src, dst)``, made anew on every read: a pass over a large graph keeps its chunks, and
        16 bytes an edge cached in each would add up to the graph's size several times."""
        rows, cols, src_major = self.grid
        major = rows.repeat_interleave(cols.numel())  # (R * C,)
        minor = cols.repeat(rows.numel())  # (R * C,)
        return (major, minor) if src_major else (minor, major)

    @property
    def src(self) -> Tensor:
        return self._src if self._src is not None else self._ends()[0]

    @property
    def dst(self) -> Tensor:
        return self._dst if self._dst is not None else self._ends()[1]

    @property
    def dst_nodes(self) -> tuple[Tensor, tuple[int, ...]]:
        """``(nodes, shape)``: the targets without one entry per edge: a grid's target list and the shape that
        broadcasts it over its ``(R, C)`` edges (``(1, C)`` or ``(R, 1)``); a list chunk's ``dst`` and ``(n,)``."""
        if self.grid is None:
            return self.dst, (self.dst.numel(),)
        rows, cols, src_major = self.grid
        return (cols, (1, cols.numel())) if src_major else (rows, (rows.numel(), 1))


class EdgeBlocks:
    """The edges of a graph as consecutive :class:`EdgeBlock` s (edge ids and kernel rows in block order)."""

    def __init__(self, blocks: tuple[EdgeBlock, ...] | list[EdgeBlock]):
        self.blocks = tuple(b for b in blocks if b.count)
        self.starts: list[int] = []  # first edge id of every block
        self.entry_starts: list[int] = []  # first row of edge_attr of every block
        edge = entry = 0
        for b in self.blocks:
            self.starts.append(edge)
            self.entry_starts.append(entry)
            edge += b.count
            entry += b.count * b.kernel_size
        self.num_edges, self.num_entries = edge, entry

    def __len__(self) -> int:
        return len(self.blocks)

    def __repr__(self) -> str:
        grids = sum(b.grid for b in self.blocks)
        return (f"EdgeBlocks({len(self.blocks)} blocks ({grids} grids), {self.num_edges} edges, "
                f"{self.num_entries} kernel entries, {self.nbytes} bytes)")

    @property
    def nbytes(self) -> int:
        """Bytes of the stored node ids."""
        return sum(b.nbytes for b in self.blocks)

    def same_as(self, other: "EdgeBlocks") -> bool:
        """Whether ``other`` describes the same edges in the same order."""
        return other is self or (len(other.blocks) == len(self.blocks)
                                 and all(a.same_as(b) for a, b in zip(self.blocks, other.blocks)))

    # ------------------------------------------------------------ materialised views
    def edge_index(self) -> Tensor:
        """``(2, E)`` int64, what PyG reads."""
        out = torch.empty(2, self.num_edges, dtype=torch.long)
        for start, b in zip(self.starts, self.blocks):
            src, dst = b.range_ends(0, b.count)
            out[0, start:start + b.count] = src
            out[1, start:start + b.count] = dst
        return out

    def edge_type(self) -> Tensor:
        """``(E,)`` int64."""
        out = torch.empty(self.num_edges, dtype=torch.long)
        for start, b in zip(self.starts, self.blocks):
            out[start:start + b.count] = b.edge_type
        return out

    def kernel_shape(self) -> Tensor:
        """``(E, 3)`` int32."""
        out = torch.empty(self.num_edges, 3, dtype=KERNEL_SHAPE_DTYPE)
        for start, b in zip(self.starts, self.blocks):
            out[start:start + b.count] = torch.tensor(b.kernel_shape, dtype=KERNEL_SHAPE_DTYPE)
        return out

    @property
    def max_kernel_shape(self) -> tuple[int, int, int]:
        if not self.blocks:
            return (1, 1, 1)
        return tuple(max(b.kernel_shape[i] for b in self.blocks) for i in range(3))  # type: ignore[return-value]

    # ------------------------------------------------------------ lookups by edge id
    def block_of(self, edges: Tensor) -> Tensor:
        """``edges.shape`` int64: the block every edge id lies in."""
        starts = torch.tensor(self.starts, dtype=torch.long)
        return torch.searchsorted(starts, edges.long(), right=True) - 1

    def _per_block(self, edges: Tensor, fn) -> None:
        """Call ``fn(mask, block_index, local_ids)`` for every block that ``edges`` touches."""
        if not edges.numel():
            return
        lo, hi = torch.aminmax(edges)
        first = self.block_index(int(lo))
        if first == self.block_index(int(hi)):  # one block (a layer's weights): no mask
            fn(..., first, edges.long() - self.starts[first])
            return
        which = self.block_of(edges)
        for i in torch.unique(which).tolist():
            mask = which == i
            fn(mask, i, edges[mask].long() - self.starts[i])

    def ends(self, edges: Tensor) -> tuple[Tensor, Tensor]:
        """``(src, dst)`` int64 of the edges ``edges`` (any shape)."""
        src = torch.empty(edges.shape, dtype=torch.long)
        dst = torch.empty(edges.shape, dtype=torch.long)

        def fill(mask, i, local):
            src[mask], dst[mask] = self.blocks[i].ends(local)

        self._per_block(edges, fill)
        return src, dst

    def entry_offsets(self, edges: Tensor) -> Tensor:
        """``edges.shape`` int64: the row of ``edge_attr`` where every edge's kernel starts."""
        out = torch.empty(edges.shape, dtype=torch.long)

        def fill(mask, i, local):
            out[mask] = self.entry_starts[i] + local * self.blocks[i].kernel_size

        self._per_block(edges, fill)
        return out

    def kernel_shapes_of(self, edges: Tensor) -> Tensor:
        """``(*edges.shape, 3)`` int32: the kernel shape of every edge."""
        out = torch.empty(*edges.shape, 3, dtype=KERNEL_SHAPE_DTYPE)

        def fill(mask, i, local):
            out[mask] = torch.tensor(self.blocks[i].kernel_shape, dtype=KERNEL_SHAPE_DTYPE)

        self._per_block(edges, fill)
        return out

    def block_index(self, edge: int) -> int:
        """The block edge ``edge`` lies in."""
        return bisect.bisect_right(self.starts, int(edge)) - 1

    # ------------------------------------------------------------ streaming
    def chunks(self, max_edges: int = 1 << 20) -> Iterator[EdgeChunk]:
        """The edges in order, in pieces of at most ``max_edges`` edges (a grid's: whole rows, at least one) that
        never cross a block, each with its materialised ends: what a block-by-block pass over a graph larger than
        memory reads."""
        for start, entry, b in zip(self.starts, self.entry_starts, self.blocks):
            size = b.kernel_size
            if b.grid:  # whole rows of the grid: the major end's list cut, the minor end's whole
                major, minor = (b.src, b.dst) if b.src_major else (b.dst, b.src)
                width = minor.numel()
                step = max(1, max_edges // width)
                for r0 in range(0, major.numel(), step):
                    r1 = min(r0 + step, major.numel())
                    lo, hi = r0 * width, r1 * width
                    yield EdgeChunk(range(start + lo, start + hi), range(entry + lo * size, entry + hi * size),
                                    b.edge_type, b.kernel_shape,
                                    grid=(major[r0:r1].long(), minor.long(), b.src_major))
                continue
            for lo in range(0, b.count, max_edges):
                hi = min(lo + max_edges, b.count)
                src, dst = b.range_ends(lo, hi)
                yield EdgeChunk(range(start + lo, start + hi), range(entry + lo * size, entry + hi * size),
                                b.edge_type, b.kernel_shape, src, dst)

    def degrees(self, num_nodes: int) -> tuple[Tensor, Tensor]:
        """``(in_degree, out_degree)`` ``(N,)`` int64, counted per block (a grid block adds ``D`` to each of its
        sources and ``S`` to each of its targets)."""
        in_degree = torch.zeros(num_nodes, dtype=torch.long)
        out_degree = torch.zeros(num_nodes, dtype=torch.long)
        for b in self.blocks:
            if b.grid:
                out_degree.index_add_(0, b.src.long(), torch.full((b.src.numel(),), b.dst.numel()))
                in_degree.index_add_(0, b.dst.long(), torch.full((b.dst.numel(),), b.src.numel()))
            else:
                out_degree += torch.bincount(b.src.long(), minlength=num_nodes)
                in_degree += torch.bincount(b.dst.long(), minlength=num_nodes)
        return in_degree, out_degree

    # ------------------------------------------------------------ files
    def state(self, prefix: str = "edge_blocks") -> dict[str, Tensor]:
        """Tensors for a safetensors file: every block's node ids one after another, and one int64 table
        ``(blocks, 8)`` of ``(edge_type, kernel depth, height, width, grid, src_major, len(src), len(dst))``."""
        table = torch.tensor([[b.edge_type, *b.kernel_shape, int(b.grid), int(b.src_major), b.src.numel(),
                               b.dst.numel()] for b in self.blocks], dtype=torch.long).reshape(-1, 8)  # (blocks, 8)
        nodes = [t for b in self.blocks for t in (b.src, b.dst)]
        return {f"{prefix}.table": table,
                f"{prefix}.nodes": torch.cat(nodes) if nodes else torch.zeros(0, dtype=NODE_ID_DTYPE)}

    @staticmethod
    def from_state(tensors: dict[str, Tensor], prefix: str = "edge_blocks") -> "EdgeBlocks":
        """The inverse of :meth:`state`."""
        table, nodes = tensors[f"{prefix}.table"], tensors[f"{prefix}.nodes"]
        blocks, at = [], 0
        for edge_type, kd, kh, kw, grid, src_major, num_src, num_dst in table.tolist():
            src, dst = nodes[at:at + num_src], nodes[at + num_src:at + num_src + num_dst]
            at += num_src + num_dst
            blocks.append(EdgeBlock(src, dst, edge_type, (kd, kh, kw), bool(grid), bool(src_major)))
        if at != nodes.numel():
            raise ValueError(f"{prefix}: the block table names {at} node ids, the file holds {nodes.numel()}")
        return EdgeBlocks(blocks)


#: Graphs with more edges than this stay blocked by default (no ``edge_index``): a dense model then costs
#: about its parameter bytes. Smaller graphs get the plain PyG tensors.
COMPACT_EDGES = 1 << 20


def is_blocked(graph) -> bool:
    """Whether ``graph`` holds its edges as :class:`EdgeBlocks` (``graph.edge_blocks``) instead of ``edge_index``."""
    return getattr(graph, "edge_blocks", None) is not None


def materialize(graph):
    """A copy of a blocked graph with the plain PyG edge tensors ``edge_index (2, E)``, ``edge_type (E,)`` and
    ``kernel_shape (E, 3)`` (what batching with a ``DataLoader`` needs); ``graph`` itself if it has them.
    Costs 36 bytes an edge: for a graph that fits in memory."""
    if not is_blocked(graph):
        return graph
    blocks = graph.edge_blocks
    out = graph.clone()
    del out.edge_blocks
    out.edge_index, out.edge_type, out.kernel_shape = blocks.edge_index(), blocks.edge_type(), blocks.kernel_shape()
    return out
