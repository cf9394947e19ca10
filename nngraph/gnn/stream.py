"""The encoder's forward over a graph too large for its edge states: edges are read block by block.

:class:`~nngraph.gnn.NeuralGraphEncoder` keeps ``(E, H)`` edge states per layer, 128 GB for a 1B-weight model at
width 32. Every quantity of its forward is either per node (``(N, H)``: small, kept) or a per-edge function of
the edge's own state and its two end nodes, reduced into nodes by sums, sums of squares, max and min (the
aggregators). So the same forward runs over edge chunks of bounded size: per layer, each chunk's edge state is
rebuilt from its weights through the earlier layers (with the node states those layers produced, which are
kept), its messages are reduced into per-node accumulators, and only then are the nodes updated. When the
edge states of all layers fit in ``cache_bytes`` they are kept instead of rebuilt.

Chunks are small by default (16k edges): a chunk's ``(n, H)`` tensors then stay in the CPU's caches, and the
forward is bound by arithmetic instead of memory traffic (2.2 s per million edges against 12.4 with 1M-edge
chunks, width 32, 4 layers, states rebuilt, one thread: ``python -m benchmarks scale --encoder-only``).

Cost: ``L`` message passes as the in-memory forward, plus, without the cache, ``L (L + 1) / 2`` edge-state
rebuilds instead of ``L`` updates (2.5x the edge work for 4 layers); memory: the node tables and one chunk.
The result equals the in-memory forward up to the order of floating-point sums (tested in float64).
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor

from nngraph.blocks import EdgeBlock, EdgeBlocks, EdgeChunk, is_blocked

from .segment import inverse_count

__all__ = ["edge_blocks_of", "stream_encode", "stream_forward"]


def edge_blocks_of(graph) -> EdgeBlocks:
    """The graph's :class:`~nngraph.blocks.EdgeBlocks`: its own when blocked, else one list block per run of
    edges with one type and kernel shape (from ``edge_index``, ``edge_type``, ``kernel_shape``)."""
    if is_blocked(graph):
        return graph.edge_blocks
    src, dst = graph.edge_index
    edge_type = graph.edge_type
    shapes = getattr(graph, "kernel_shape", None)
    if shapes is None:
        shapes = torch.ones(src.numel(), 3, dtype=torch.int32)
    if not src.numel():
        return EdgeBlocks([])
    key = torch.cat([edge_type.view(-1, 1).long(), shapes.long()], 1)  # (E, 4)
    cut = torch.ones(src.numel(), dtype=torch.bool)
    cut[1:] = (key[1:] != key[:-1]).any(1)
    starts = cut.nonzero().view(-1).tolist() + [src.numel()]
    return EdgeBlocks([EdgeBlock(src[a:b], dst[a:b], int(edge_type[a]), tuple(int(v) for v in shapes[a]))
                       for a, b in zip(starts[:-1], starts[1:])])


class _Accumulator:
    """Per-node running sums, sums of squares, max and min of messages, turned into the aggregators of
    :func:`~nngraph.gnn.segment.segment_aggregate` at the end (empty segments: 0, as there)."""

    def __init__(self, num_nodes: int, width: int, count: Tensor, aggregators: tuple[str, ...], like: Tensor):
        self.aggregators, self.count = aggregators, count  # count (N, 1)
        zeros = lambda: like.new_zeros(num_nodes, width)  # noqa: E731
        self.sum = zeros() if {"mean", "std"} & set(aggregators) else None
        self.sumsq = zeros() if "std" in aggregators else None
        self.max = like.new_full((num_nodes, width), -torch.inf) if "max" in aggregators else None
        self.min = like.new_full((num_nodes, width), torch.inf) if "min" in aggregators else None

    def add_reduced(self, nodes: Tensor, messages: Tensor, dim: int) -> None:
        """Add the messages ``(R, C, H)`` of a grid chunk whose ``dim`` axis runs over the edges of each of the
        nodes ``nodes`` (the other axis): reduced over ``dim`` first, densely, then added per node."""
        index = nodes.view(-1, 1).expand(nodes.numel(), messages.size(-1))  # (K, H)
        if self.sum is not None:
            self.sum.index_add_(0, nodes, messages.sum(dim))
        if self.sumsq is not None:
            self.sumsq.index_add_(0, nodes, (messages * messages).sum(dim))
        if self.max is not None:
            self.max.scatter_reduce_(0, index, messages.amax(dim), "amax")
        if self.min is not None:
            self.min.scatter_reduce_(0, index, messages.amin(dim), "amin")

    def add(self, messages: Tensor, seg: Tensor) -> None:
        """Add messages ``(n, H)`` of the nodes ``seg`` ``(n,)``."""
        if self.sum is not None:
            self.sum.index_add_(0, seg, messages)
        if self.sumsq is not None:
            self.sumsq.index_add_(0, seg, messages * messages)
        index = seg.view(-1, 1).expand_as(messages)  # (n, H)
        if self.max is not None:
            self.max.scatter_reduce_(0, index, messages, "amax")
        if self.min is not None:
            self.min.scatter_reduce_(0, index, messages, "amin")

    def result(self) -> Tensor:
        """``(N, A * H)``, as ``segment_aggregate`` gives it."""
        inv = inverse_count(self.count, self.sum.dtype if self.sum is not None else self.max.dtype)  # (N, 1)
        empty = self.count == 0  # (N, 1)
        out, mean = [], None
        if self.sum is not None:
            mean = self.sum * inv
        for name in self.aggregators:
            if name == "mean":
                out.append(mean)
            elif name == "std":
                var = self.sumsq * inv - mean * mean
                out.append(var.clamp(min=0.0).add(1e-6).sqrt())
            else:
                table = self.max if name == "max" else self.min
                out.append(table.masked_fill(empty, 0.0))
        return torch.cat(out, dim=-1)


def _edge_input(graph, chunk: EdgeChunk) -> SimpleNamespace:
    """The edge fields of one chunk, as :class:`~nngraph.gnn.EdgeEncoder` reads them. A graph may carry
    ``edge_transform(chunk, rows) -> rows``, applied to the chunk's kernel rows as they are read (a scaler's
    per-depth scaling of a graph too large to copy)."""
    n = len(chunk.edges)
    attr = graph.edge_attr[chunk.entries.start:chunk.entries.stop]  # (n * K, 1)
    transform = getattr(graph, "edge_transform", None)
    if transform is not None:
        attr = transform(chunk, attr)
    shape = torch.tensor(chunk.kernel_shape, dtype=torch.int32).expand(n, 3)  # (n, 3)
    edge_type = torch.full((n,), chunk.edge_type, dtype=torch.long)
    return SimpleNamespace(edge_attr=attr, kernel_shape=shape, edge_type=edge_type)


class _EdgeStates:
    """Every chunk's edge state after any layer: kept when they fit ``cache_bytes``, else rebuilt."""

    def __init__(self, encoder, graph, chunks: list[EdgeChunk], cache_bytes: int, dtype: torch.dtype):
        self.encoder, self.graph, self.chunks = encoder, graph, chunks
        width = encoder.hidden_dim * torch.empty(0, dtype=dtype).element_size()
        self.keep = sum(len(c.edges) for c in chunks) * width <= cache_bytes
        self.kept: dict[int, Tensor] = {}
        self.updates: list[tuple[Tensor, Tensor]] = []  # per finished layer: S h', T h' (N, H)

    def after_layer(self, conv, h_new: Tensor) -> None:
        """Layer ``conv`` updated the nodes to ``h_new``: its edge update reads ``S h'`` and ``T h'``."""
        self.updates.append((conv.lin_src(h_new), conv.lin_dst(h_new)))
        if self.keep:
            for i, chunk in enumerate(self.chunks):
                self.kept[i] = _edge_step(conv, self.kept[i], *self.updates[-1], chunk)

    def state(self, i: int) -> Tensor:
        """``(n, H)``: chunk ``i``'s edge state after the layers finished so far."""
        if self.keep and i in self.kept:
            return self.kept[i]
        chunk = self.chunks[i]
        e = self.encoder.edge_encoder(_edge_input(self.graph, chunk))  # (n, H)
        for conv, update in zip(self.encoder.convs, self.updates):
            e = _edge_step(conv, e, *update, chunk)
        if self.keep:
            self.kept[i] = e
        return e


def _edge_step(conv, e: Tensor, s: Tensor, t: Tensor, chunk: EdgeChunk) -> Tensor:
    """``(n, H)``: one layer's edge update of a chunk (:meth:`NeuralGraphConv.forward`, without dropout)."""
    if chunk.grid is not None:
        rows, cols, src_major = chunk.grid
        at_rows, at_cols = (s, t) if src_major else (t, s)
        pre = conv.lin_edge(e).view(rows.numel(), cols.numel(), -1)  # (R, C, H): the grid's edges row by row
        pre = pre + at_rows.index_select(0, rows).unsqueeze(1) + at_cols.index_select(0, cols).unsqueeze(0)
        upd = conv.edge_out(conv.act(pre)).view(e.shape)  # (R, C, H) -> (n, H)
    else:
        upd = conv.edge_out(conv.act(conv.lin_edge(e) + s.index_select(0, chunk.src) + t.index_select(0, chunk.dst)))
    return conv.norm_edge(e + upd)


def _messages(conv, table_fwd: Tensor, table_bwd: Tensor, e: Tensor, chunk: EdgeChunk,
              acc_fwd: _Accumulator, acc_bwd: _Accumulator) -> None:
    """Add one chunk's forward messages (read at the source, reduced at the target) and backward messages (read
    at the target, reduced at the source) to the accumulators; a grid chunk broadcasts the node tables."""
    gamma, beta = conv.lin_gamma(e), conv.lin_beta(e)  # (n, H) each
    if chunk.grid is None:
        acc_fwd.add(conv.act(table_fwd.index_select(0, chunk.src) * gamma + beta), chunk.dst)
        acc_bwd.add(conv.act(table_bwd.index_select(0, chunk.dst) * gamma + beta), chunk.src)
        return
    rows, cols, src_major = chunk.grid
    shape = (rows.numel(), cols.numel(), -1)
    gamma, beta = gamma.view(shape), beta.view(shape)  # (R, C, H): the grid's edges row by row
    # the sources vary along axis 0 (the rows) when src_major, else along axis 1; the targets along the other
    src_nodes, src_axis, dst_nodes, dst_axis = (rows, 0, cols, 1) if src_major else (cols, 1, rows, 0)
    fwd = conv.act(table_fwd.index_select(0, src_nodes).unsqueeze(dst_axis) * gamma + beta)  # (R, C, H)
    acc_fwd.add_reduced(dst_nodes, fwd, src_axis)  # at each target, over its sources
    del fwd
    bwd = conv.act(table_bwd.index_select(0, dst_nodes).unsqueeze(src_axis) * gamma + beta)  # (R, C, H)
    acc_bwd.add_reduced(src_nodes, bwd, dst_axis)  # at each source, over its targets


def _run(encoder, graph, max_edges: int, cache_bytes: int, progress: bool) -> tuple[Tensor, Tensor, Tensor]:
    dtype = encoder.param_dtype()
    if graph.x.dtype != dtype or graph.edge_attr.dtype != dtype:
        raise TypeError(f"the graph's features are {graph.x.dtype} / {graph.edge_attr.dtype} but the encoder's "
                        f"parameters are {dtype}: convert one to the other")
    if encoder.check_finite:
        for name in ("x", "edge_attr"):
            flat = getattr(graph, name).view(-1)
            if not all(bool(torch.isfinite(flat[i:i + (1 << 24)]).all()) for i in range(0, flat.numel(), 1 << 24)):
                raise ValueError(f"graph.{name} holds NaN or Inf entries; the encoder refuses them "
                                 "(encoder.check_finite = False to encode them anyway)")
    blocks = edge_blocks_of(graph)
    if blocks.num_entries != graph.edge_attr.size(0):
        raise ValueError(f"graph.edge_attr has {graph.edge_attr.size(0)} rows but its edge blocks hold "
                         f"{blocks.num_entries} kernel entries; convert the model again with nngraph.to_graph")
    n = graph.x.size(0)
    chunks = list(blocks.chunks(max_edges))
    in_degree, out_degree = (d.view(-1, 1) for d in blocks.degrees(n))  # (N, 1) each
    log_degree = torch.log1p(torch.cat([in_degree, out_degree], dim=-1).to(dtype))  # (N, 2)
    h = encoder.node_encoder(graph)  # (N, H)
    states = _EdgeStates(encoder, graph, chunks, cache_bytes, dtype)
    bar = _progress(len(encoder.convs) * len(chunks) + len(chunks), progress)
    for conv in encoder.convs:
        table_fwd, table_bwd = conv.msg_fwd(h), conv.msg_bwd(h)  # (N, H) each
        acc_fwd = _Accumulator(n, h.size(1), in_degree, conv.aggregators, h)
        acc_bwd = _Accumulator(n, h.size(1), out_degree, conv.aggregators, h)
        for i, chunk in enumerate(chunks):
            _messages(conv, table_fwd, table_bwd, states.state(i), chunk, acc_fwd, acc_bwd)
            bar.update(1)
        upd = conv.node_mlp(torch.cat([h, acc_fwd.result(), acc_bwd.result(), log_degree], dim=-1))  # (N, H)
        h = conv.norm_node(h + upd)  # (N, H)
        states.after_layer(conv, h)
    edge_sum = h.new_zeros(1, h.size(1))
    edge_max = h.new_full((1, h.size(1)), -torch.inf)
    for i in range(len(chunks)):
        e = states.state(i)  # (n_c, H)
        edge_sum += e.sum(0, keepdim=True)
        edge_max = torch.maximum(edge_max, e.amax(0, keepdim=True))
        bar.update(1)
    bar.close()
    if not blocks.num_edges:
        edge_max.zero_()
    edge_mean = edge_sum / max(blocks.num_edges, 1)  # (1, H)
    return h, edge_mean, edge_max


def _progress(total: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="encode (edge chunks)", unit="chunk", disable=not show)


@torch.no_grad()
def stream_encode(encoder, graph, max_edges: int = 1 << 14, cache_bytes: int = 1 << 30,
                  progress: bool = False) -> Tensor:
    """Node embeddings ``(N, H)`` of one graph, as ``encoder.encode(graph)[0]`` in eval mode, computed over edge
    chunks of at most ``max_edges`` edges (see the module doc). ``graph`` may be blocked
    (``graph.edge_blocks``, what :func:`nngraph.to_graph` gives for large models) or plain."""
    return _run(encoder, graph, max_edges, cache_bytes, progress)[0]


@torch.no_grad()
def stream_forward(encoder, graph, max_edges: int = 1 << 14, cache_bytes: int = 1 << 30,
                   progress: bool = False) -> Tensor:
    """``(1, out_dim)``: ``encoder(graph)`` in eval mode for one graph, computed over edge chunks of at most
    ``max_edges`` edges with at most ``cache_bytes`` of edge states kept (see the module doc); memory is the node
    tables plus one chunk. Dropout is off (as in eval mode)."""
    h, edge_mean, edge_max = _run(encoder, graph, max_edges, cache_bytes, progress)
    batch = h.new_zeros(h.size(0), dtype=torch.long)
    return encoder.readout.from_pooled_edges(h, batch, 1, graph.node_type, edge_mean, edge_max)  # (1, out_dim)
