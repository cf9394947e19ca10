"""Invariant graph-level readout of a neural graph."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from .segment import segment_max, segment_sum
from .utils import make_mlp


def pool(x: Tensor, batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor]:
    r"""Mean and max of the rows of ``x`` per graph (zeros for graphs without rows).

    Uses sorted segment reductions when ``batch`` is non-decreasing (as in PyG batches), a scatter otherwise.

    Shapes:
        - **input:** :math:`(M, F)`, ``batch`` :math:`(M,)`
        - **output:** two :math:`(B, F)`
    """
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        return scatter(x, batch, 0, num_graphs, "mean"), scatter(x, batch, 0, num_graphs, "max")
    count = torch.bincount(batch, minlength=num_graphs)  # (B,)
    ptr = count.new_zeros(num_graphs + 1)
    ptr[1:] = torch.cumsum(count, 0)  # (B + 1,)
    mean = segment_sum(x, ptr, batch) / count.clamp(min=1).to(x.dtype).unsqueeze(-1)  # (B, F)
    return mean, segment_max(x, ptr, batch)


class GraphReadout(nn.Module):
    r"""Pools node and edge embeddings of each graph into one vector, invariant to node relabelling.

    .. math::
        \mathbf{y}_G = \mathrm{MLP}\Big[\operatorname{mean}_{v \in G} \mathbf{h}_v \,\|\,
        \max_{v \in G} \mathbf{h}_v \,\|\, \operatorname{mean}_{(u,v) \in G} \mathbf{e}_{uv} \,\|\,
        \max_{(u,v) \in G} \mathbf{e}_{uv}\Big]

    Args:
        hidden_dim (int): width :math:`H` of node and edge embeddings.
        out_dim (int): output width.
        act (str): activation of the MLP. (default: :obj:`"silu"`)

    Shapes:
        - **input:** nodes :math:`(N, H)`, edges :math:`(E, H)`, edge indices :math:`(2, E)`,
          graph of every node ``batch`` :math:`(N,)` (or :obj:`None` for one graph), ``num_graphs``
        - **output:** :math:`(B, \text{out\_dim})`
    """

    def __init__(self, hidden_dim: int, out_dim: int, act: str = "silu"):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
        self.mlp = make_mlp(4 * hidden_dim, hidden_dim, out_dim, act)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: Tensor, edge_attr: Tensor, edge_index: Tensor, batch: Tensor | None,
                num_graphs: int | None = None) -> Tensor:
        if batch is None:
            batch = x.new_zeros(x.size(0), dtype=torch.long)
            num_graphs = 1
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        edge_batch = batch[edge_index[1]]  # (E,)
        pooled = torch.cat([*pool(x, batch, num_graphs), *pool(edge_attr, edge_batch, num_graphs)], dim=-1)  # (B, 4H)
        return self.mlp(pooled)  # (B, out_dim)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_dim}, {self.out_dim}, pool=['mean', 'max'])"
