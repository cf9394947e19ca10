"""One message-passing layer over a neural graph: node and edge update, both directions."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from .segment import (BidirectionalIndex, bidirectional_index, gather_rows, permute_rows, segment_max,
                      segment_sum)
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
    aggregated at once over a doubled message list sorted by the slot each message lands in
    (:func:`~nngraph.gnn.segment.bidirectional_index`: slot ``2v`` collects forward messages of node
    ``v``, slot ``2v + 1`` its backward messages), by segment reductions. Every operation acts per node, per edge or as
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
        self.lin_gamma = nn.Linear(H, 2 * H)  # [gamma->, gamma<-]
        self.lin_beta = nn.Linear(H, 2 * H)  # [beta->, beta<-]
        self.lin_msg = nn.Linear(H, 2 * H, bias=False)  # [A->, A<-]
        self.node_mlp = make_mlp(H + 2 * (len(self.AGGREGATORS) * H + 1), H, H, act)
        self.norm_node = nn.LayerNorm(H)
        self.lin_edge = nn.Linear(H, H)  # U
        self.lin_ends = nn.Linear(H, 2 * H, bias=False)  # [S, T]
        self.edge_out = nn.Linear(H, H)  # W_o
        self.norm_edge = nn.LayerNorm(H)
        self.act = make_act(act)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for m in (self.lin_gamma, self.lin_beta, self.lin_msg, self.lin_edge, self.lin_ends, self.edge_out,
                  self.norm_node, self.norm_edge):
            m.reset_parameters()
        for m in self.node_mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        with torch.no_grad():  # FiLM scales start around 1: gamma = 1 + W e
            self.lin_gamma.bias.add_(1.0)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor,
                index: BidirectionalIndex | None = None) -> tuple[Tensor, Tensor]:
        """Updates nodes and edges. ``index`` (from :func:`bidirectional_index`) may be passed to share
        it between layers; it is built from ``edge_index`` otherwise."""
        N, E, H = x.size(0), edge_attr.size(0), self.hidden_dim
        if index is None:
            index = bidirectional_index(edge_index, N)
        gamma = self.lin_gamma(edge_attr).view(2 * E, H)  # (2E, H): row 2k forward, 2k+1 backward
        beta = self.lin_beta(edge_attr).view(2 * E, H)  # (2E, H)
        table = self.lin_msg(x).view(2 * N, H)  # (2N, H): row 2n A-> h_n, 2n+1 A<- h_n
        agg = self.propagate(torch.stack([index.src, index.dst]), x=table, gamma=gamma, beta=beta,
                             index_info=index, size=(2 * N, 2 * N))  # (2N, F)
        agg = agg.view(N, -1)  # (N, 2F): [forward | backward]
        upd = self.node_mlp(torch.cat([x, agg], dim=-1))  # (N, H)
        x = self.norm_node(x + nn.functional.dropout(upd, self.dropout, self.training))  # (N, H)

        ends = self.lin_ends(x).view(2 * N, H)  # (2N, H): row 2n S h_n, 2n+1 T h_n
        upd_e = self.edge_updater(torch.stack([index.src, index.dst]), ends=ends, u=self.lin_edge(edge_attr),
                                  index_info=index)  # (E, H)
        edge_attr = self.norm_edge(edge_attr + nn.functional.dropout(upd_e, self.dropout, self.training))
        return x, edge_attr

    def _gather(self, table: Tensor, index: BidirectionalIndex) -> Tensor:
        return gather_rows(table, index.src, index.src_perm, index.src_ptr, index.src_seg_id)  # (2E, H)

    def message(self, x: Tensor, gamma: Tensor, beta: Tensor, index_info: BidirectionalIndex) -> Tensor:
        x_j = self._gather(x, index_info)  # (2E, H): A-> h_u for forward rows, A<- h_v for backward rows
        return self.act(torch.addcmul(beta, x_j, gamma))  # (2E, H)

    def aggregate(self, inputs: Tensor, index_info: BidirectionalIndex) -> Tensor:
        msg = permute_rows(inputs, index_info.perm, index_info.inv_perm)  # (2E, H) sorted by slot
        ptr, seg = index_info.ptr, index_info.seg_id
        count = index_info.count.to(inputs.dtype)  # (2N, 1)
        inv = 1.0 / count.clamp(min=1.0)  # (2N, 1)
        mean = segment_sum(msg, ptr, seg) * inv  # (2N, H)
        sq_mean = segment_sum(msg * msg, ptr, seg) * inv  # (2N, H)
        std = (sq_mean - mean * mean).clamp(min=0.0).add(1e-6).sqrt()  # (2N, H)
        mx = segment_max(msg, ptr, seg)  # (2N, H), 0 where no message
        return torch.cat([mean, mx, std, torch.log1p(count)], dim=-1)  # (2N, 3H + 1)

    def edge_update(self, ends: Tensor, u: Tensor, index_info: BidirectionalIndex) -> Tensor:
        H = self.hidden_dim
        st = self._gather(ends, index_info).view(-1, 2, H)  # (E, 2, H): [S h_u, T h_v]
        return self.edge_out(self.act(u + st.sum(dim=1)))  # (E, H)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_dim}, aggr={list(self.AGGREGATORS)})"
