"""One message-passing layer over a neural graph: node and edge update, both directions."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from .utils import make_act, make_mlp


class NeuralGraphConv(MessagePassing):
    r"""Edge-updating, direction-aware message passing for neural graphs, after the PNA + FiLM layers of
    `Kofinas et al. (ICLR 2024) <https://arxiv.org/abs/2403.12143>`_, on sparse edge lists.

    Every edge :math:`u \to v` (data flow through the model) sends a *forward* message to :math:`v` and
    a *backward* message to :math:`u`, each from its own parameters, FiLM-modulated by the edge:

    .. math::
        \mathbf{m}^{\rightarrow}_{uv} &= \sigma\big((1 + \boldsymbol{\gamma}^{\rightarrow}(\mathbf{e}_{uv}))
            \odot \mathbf{A}^{\rightarrow}\mathbf{h}_u + \boldsymbol{\beta}^{\rightarrow}(\mathbf{e}_{uv})\big)
        \qquad
        \mathbf{m}^{\leftarrow}_{uv} = \sigma\big((1 + \boldsymbol{\gamma}^{\leftarrow}(\mathbf{e}_{uv}))
            \odot \mathbf{A}^{\leftarrow}\mathbf{h}_v + \boldsymbol{\beta}^{\leftarrow}(\mathbf{e}_{uv})\big)

        \mathbf{h}'_v &= \mathrm{LN}\Big(\mathbf{h}_v + \mathrm{MLP}\big[\mathbf{h}_v \,\|\,
            \bigoplus_{u \to v} \mathbf{m}^{\rightarrow}_{uv} \,\|\, \bigoplus_{v \to w} \mathbf{m}^{\leftarrow}_{vw}
            \,\|\, \log(1 + d^{\mathrm{in}}_v) \,\|\, \log(1 + d^{\mathrm{out}}_v)\big]\Big)

        \mathbf{e}'_{uv} &= \mathrm{LN}\Big(\mathbf{e}_{uv} + \mathbf{W}_o\,\sigma\big(\mathbf{U}\mathbf{e}_{uv}
            + \mathbf{S}\mathbf{h}'_u + \mathbf{T}\mathbf{h}'_v\big)\Big)

    where :math:`\bigoplus = [\mathrm{mean} \,\|\, \max \,\|\, \mathrm{std}]`. Both directions are
    aggregated by one scatter over a doubled edge list whose targets are ``v`` (forward slots
    ``0..N-1``) and ``u + N`` (backward slots ``N..2N-1``). Every operation acts per node, per edge or as
    a symmetric aggregation, and ``LN`` normalizes each node / edge over its own features, so the
    layer is equivariant to any relabelling of the nodes.

    Args:
        hidden_dim (int): node and edge width :math:`H`.
        act (str): activation :math:`\sigma`. (default: :obj:`"silu"`)
        dropout (float): dropout on the node and edge updates. (default: :obj:`0.0`)

    Shapes:
        - **input:** node features :math:`(N, H)`, edge indices :math:`(2, E)`, edge features :math:`(E, H)`
        - **output:** node features :math:`(N, H)`, edge features :math:`(E, H)`
    """

    AGGREGATORS = ("mean", "max", "std")

    def __init__(self, hidden_dim: int, act: str = "silu", dropout: float = 0.0):
        super().__init__(aggr=None, node_dim=0)
        H = hidden_dim
        self.hidden_dim = H
        self.dropout = dropout
        self.lin_edge = nn.Linear(H, 5 * H)  # FiLM gamma/beta per direction + edge-update term U e
        self.lin_msg = nn.Linear(H, 2 * H, bias=False)  # A->, A<-
        self.node_mlp = make_mlp(H + 2 * (len(self.AGGREGATORS) * H + 1), H, H, act)
        self.norm_node = nn.LayerNorm(H)
        self.lin_ends = nn.Linear(H, 2 * H, bias=False)  # S, T
        self.edge_out = nn.Linear(H, H)
        self.norm_edge = nn.LayerNorm(H)
        self.act = make_act(act)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for m in (self.lin_edge, self.lin_msg, self.lin_ends, self.edge_out, self.norm_node, self.norm_edge):
            m.reset_parameters()
        for m in self.node_mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> tuple[Tensor, Tensor]:
        N, H = x.size(0), self.hidden_dim
        src, dst = edge_index[0], edge_index[1]
        gamma_f, beta_f, gamma_b, beta_b, u = self.lin_edge(edge_attr).split(H, dim=-1)  # 5 x (E, H)
        a_f, a_b = self.lin_msg(x).split(H, dim=-1)  # 2 x (N, H)
        # Doubled graph: forward rows read u and write slot v; backward rows read v (+N) and write slot u + N.
        both = torch.stack([torch.cat([src, dst + N]), torch.cat([dst, src + N])])  # (2, 2E)
        agg = self.propagate(
            both, x=torch.cat([a_f, a_b], dim=0),  # (2N, H)
            gamma=torch.cat([gamma_f, gamma_b], dim=0), beta=torch.cat([beta_f, beta_b], dim=0),  # (2E, H)
            size=(2 * N, 2 * N))  # (2N, F)
        agg = agg.view(2, N, -1).transpose(0, 1).reshape(N, -1)  # (N, 2F): [forward | backward]
        upd = self.node_mlp(torch.cat([x, agg], dim=-1))  # (N, H)
        x = self.norm_node(x + nn.functional.dropout(upd, self.dropout, self.training))  # (N, H)

        s, t = self.lin_ends(x).split(H, dim=-1)  # 2 x (N, H)
        upd_e = self.edge_updater(edge_index, s=s, t=t, u=u)  # (E, H)
        edge_attr = self.norm_edge(edge_attr + nn.functional.dropout(upd_e, self.dropout, self.training))
        return x, edge_attr

    def message(self, x_j: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        return self.act(x_j * (1.0 + gamma) + beta)  # (2E, H)

    def aggregate(self, inputs: Tensor, index: Tensor, ptr: Tensor | None = None,
                  dim_size: int | None = None) -> Tensor:
        H = inputs.size(-1)
        sums = scatter(torch.cat([inputs, inputs * inputs], dim=-1), index, 0, dim_size, "sum")  # (2N, 2H)
        count = torch.bincount(index, minlength=dim_size).to(inputs.dtype).unsqueeze(-1)  # (2N, 1)
        moments = sums / count.clamp(min=1.0)  # (2N, 2H)
        mean, sq_mean = moments[:, :H], moments[:, H:]  # (2N, H) each
        std = (sq_mean - mean * mean).clamp(min=0.0).add(1e-6).sqrt()  # (2N, H)
        mx = scatter(inputs, index, 0, dim_size, "max")  # (2N, H), 0 where no message
        return torch.cat([mean, mx, std, torch.log1p(count)], dim=-1)  # (2N, 3H + 1)

    def edge_update(self, s_j: Tensor, t_i: Tensor, u: Tensor) -> Tensor:
        return self.edge_out(self.act(u + s_j + t_i))  # (E, H)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_dim}, aggr={list(self.AGGREGATORS)})"
