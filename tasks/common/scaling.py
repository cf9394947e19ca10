"""Per-depth scaling of the weights and biases the encoder sees (equivariant; commutes with sign flips)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from nngraph import schema
from nngraph.blocks import is_blocked
from nngraph.kernels import expand_to_entries

__all__ = ["GraphScaler"]


class GraphScaler(nn.Module):
    """Divides weights by the RMS of their depth and biases by the RMS of theirs (fitted on training graphs).

    The depth of an edge is the ``layer`` of its target neuron. One scale per depth is the same for every
    neuron of a layer, so scaling commutes with relabelling hidden neurons, and (no centring) with sign flips.
    Scales are buffers, saved with the model.

    Args:
        max_layers: depths beyond this share the last scale.
    """

    def __init__(self, max_layers: int = 64):
        super().__init__()
        self.max_layers = max_layers
        self.register_buffer("edge_scale", torch.ones(max_layers))
        self.register_buffer("node_scale", torch.ones(max_layers))

    def _depth(self, layer: torch.Tensor) -> torch.Tensor:
        return layer.clamp(0, self.max_layers - 1)

    @torch.no_grad()
    def fit(self, graphs: list) -> "GraphScaler":
        """Set the scales from the RMS of weight edges and biases per depth over ``graphs``."""
        e_sum, e_cnt = torch.zeros(self.max_layers), torch.zeros(self.max_layers)
        n_sum, n_cnt = torch.zeros(self.max_layers), torch.zeros(self.max_layers)
        for g in graphs:
            w, d = self._weight_entries(g)  # (W,) bool, (W,) depth of every kernel entry
            a = g.edge_attr[w, 0]  # (W_w,)
            e_sum.index_add_(0, d[w], a.pow(2).float())
            e_cnt.index_add_(0, d[w], (a != 0).float())
            hidden_or_out = g.node_type != int(schema.NodeType.INPUT)
            dn = self._depth(g.layer[hidden_or_out])
            n_sum.index_add_(0, dn, g.x[hidden_or_out, schema.BIAS].pow(2).float())
            n_cnt.index_add_(0, dn, (g.x[hidden_or_out, schema.BIAS] != 0).float())
        self.edge_scale.copy_(torch.where(e_cnt > 0, (e_sum / e_cnt.clamp(min=1)).sqrt(), torch.ones(1)).clamp(min=1e-6))
        self.node_scale.copy_(torch.where(n_cnt > 0, (n_sum / n_cnt.clamp(min=1)).sqrt(), torch.ones(1)).clamp(min=1e-6))
        return self

    def _weight_entries(self, g) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W,)`` bool: the rows of ``edge_attr`` in weight edges, and ``(W,)`` the depth of every row."""
        w = g.edge_type == int(schema.EdgeType.WEIGHT)  # (E,)
        d = self._depth(g.layer[g.edge_index[1]])  # (E,)
        rows = g.edge_attr.size(0)
        return (expand_to_entries(w, g.kernel_shape, rows), expand_to_entries(d, g.kernel_shape, rows))

    def edge_factor(self, batch) -> torch.Tensor:
        """``(W, 1)``: the scale of every row of ``edge_attr`` (1 for identity / structural edges)."""
        s = self.edge_scale[self._depth(batch.layer[batch.edge_index[1]])]  # (E,)
        s = torch.where(batch.edge_type == int(schema.EdgeType.WEIGHT), s, torch.ones_like(s))
        return expand_to_entries(s, batch.kernel_shape, batch.edge_attr.size(0)).unsqueeze(-1)  # (W, 1)

    def node_factor(self, batch) -> torch.Tensor:
        """``(N,)``: the bias scale of every node."""
        return self.node_scale[self._depth(batch.layer)]

    def blocked_edge_transform(self, graph, squash=None):
        """``transform(chunk, rows) -> rows`` for a blocked graph (``graph.edge_blocks``, a large model): the
        chunk's weight rows divided by their depth's scale (then ``squash``-ed), applied by the block-by-block
        encoder as it reads them (:mod:`nngraph.gnn.stream`), so a graph larger than memory is never copied."""
        layer = graph.layer

        def transform(chunk, rows: torch.Tensor) -> torch.Tensor:
            if chunk.edge_type != int(schema.EdgeType.WEIGHT):
                return rows
            size = len(chunk.entries) // len(chunk.edges)
            nodes, shape = chunk.dst_nodes  # a grid's target list, broadcast over its edges
            scale = self.edge_scale[self._depth(layer[nodes])].view(*shape, 1)  # (1, C, 1), (R, 1, 1) or (n, 1)
            grid = (chunk.grid[0].numel(), chunk.grid[1].numel()) if chunk.grid is not None else (-1,)
            value = rows.reshape(*grid, size) / scale  # (R, C, K) or (n, K): the chunk's kernels
            return (value if squash is None else squash(value)).reshape(-1, 1)  # (n * K, 1)

        return transform

    def forward(self, batch):
        """A shallow copy of ``batch`` with scaled ``edge_attr`` and bias column."""
        out = copy.copy(batch)  # shallow: shares the untouched tensors
        if is_blocked(batch):  # scaled as the encoder reads it, block by block
            out.edge_transform = self.blocked_edge_transform(batch)
        else:
            out.edge_attr = batch.edge_attr / self.edge_factor(batch)  # (W, 1)
        x = batch.x.clone()
        x[:, schema.BIAS] = x[:, schema.BIAS] / self.node_factor(batch)
        out.x = x
        return out
