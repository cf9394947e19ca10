"""Invariant graph-level readout of a neural graph."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nngraph.schema import NodeType

from .segment import inverse_count, segment_aggregate
from .utils import make_mlp


def pool(x: Tensor, batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor]:
    r"""Mean and max of the rows of ``x`` per graph (zeros for graphs without rows).

    Shapes:
        - **input:** :math:`(M, F)`, ``batch`` :math:`(M,)`
        - **output:** two :math:`(B, F)`
    """
    count = torch.bincount(batch, minlength=num_graphs).unsqueeze(-1)  # (B, 1)
    return segment_aggregate(x, batch, inverse_count(count, x.dtype), ("mean", "max")).chunk(2, dim=-1)


class GraphReadout(nn.Module):
    r"""Pools node and edge embeddings of each graph into one vector, invariant to node relabelling.

    .. math::
        \mathbf{y}_G = \mathrm{MLP}\Big[\operatorname{mean}_{v \in G} \mathbf{h}_v \,\|\,
        \max_{v \in G} \mathbf{h}_v \,\|\, \operatorname{mean}_{(u,v) \in G} \mathbf{e}_{uv} \,\|\,
        \max_{(u,v) \in G} \mathbf{e}_{uv}\Big]

    With ``by_type=True`` the nodes are pooled separately per :class:`~nngraph.schema.NodeType` (input,
    hidden, output neurons; a graph without neurons of a type gets zeros there), which is still invariant:
    relabelling keeps every neuron's type. Otherwise the one output neuron of an INR is 1 of 67 rows of
    the node mean, and what it carries (with probe features: the image itself) is diluted by the hidden
    neurons; pooling by type learns several times faster on INR classification.

    Args:
        hidden_dim (int): width :math:`H` of node and edge embeddings.
        out_dim (int): output width.
        act (str): activation of the MLP. (default: :obj:`"silu"`)
        by_type (bool): pool input, hidden and output nodes separately (needs ``node_type``).
            (default: :obj:`False`)

    Shapes:
        - **input:** nodes :math:`(N, H)`, edges :math:`(E, H)`, edge indices :math:`(2, E)`,
          graph of every node ``batch`` :math:`(N,)` (or :obj:`None` for one graph), ``num_graphs``,
          ``node_type`` :math:`(N,)` (with ``by_type``)
        - **output:** :math:`(B, \text{out\_dim})`
    """

    def __init__(self, hidden_dim: int, out_dim: int, act: str = "silu", by_type: bool = False):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
        self.by_type = by_type
        groups = len(NodeType) if by_type else 1
        self.mlp = make_mlp(2 * (groups + 1) * hidden_dim, hidden_dim, out_dim, act)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: Tensor, edge_attr: Tensor, edge_index: Tensor, batch: Tensor | None,
                num_graphs: int | None = None, node_type: Tensor | None = None) -> Tensor:
        if batch is None:
            batch = x.new_zeros(x.size(0), dtype=torch.long)
            num_graphs = 1
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        edge_batch = batch[edge_index[1]]  # (E,)
        return self.from_pooled_edges(x, batch, num_graphs, node_type, *pool(edge_attr, edge_batch, num_graphs))

    def from_pooled_edges(self, x: Tensor, batch: Tensor, num_graphs: int, node_type: Tensor | None,
                          edge_mean: Tensor, edge_max: Tensor) -> Tensor:
        """The readout from the nodes and the edges' per-graph mean and max ``(B, H)`` (pooled elsewhere,
        e.g. block by block: :func:`nngraph.gnn.stream_forward`). Shapes: as :meth:`forward`."""
        if self.by_type:
            if node_type is None:
                raise ValueError("GraphReadout(by_type=True) needs node_type")
            parts = []
            for t in NodeType:
                m = node_type == int(t)
                parts += pool(x[m], batch[m], num_graphs)
        else:
            parts = list(pool(x, batch, num_graphs))
        pooled = torch.cat([*parts, edge_mean, edge_max], dim=-1)  # (B, 2 * (groups + 1) * H)
        return self.mlp(pooled)  # (B, out_dim)

    def __repr__(self) -> str:
        by = ", by_type=True" if self.by_type else ""
        return f"{self.__class__.__name__}({self.hidden_dim}, {self.out_dim}, pool=['mean', 'max']{by})"
