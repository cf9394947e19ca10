"""One message-passing layer over a neural graph: node and edge update, both directions."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .segment import MessageIndex, check_aggregators, film_message, inverse_count, message_index, segment_aggregate
from .utils import make_act, make_mlp

class NeuralGraphConv(nn.Module):
    r"""Edge-updating, direction-aware message passing for neural graphs, after the PNA + FiLM layers of
    `Kofinas et al. (ICLR 2024) <https://arxiv.org/abs/2403.12143>`_, on sparse edge lists.

    Every edge :math:`u \to v` (data flow through the model) sends a *forward* message to :math:`v` and
    a *backward* message to :math:`u`, FiLM-modulated by the edge. The two directions read their node
    through different maps and are aggregated separately, so they are told apart; the FiLM
    modulation :math:`(\boldsymbol{\gamma}, \boldsymbol{\beta})` of an edge is shared by both:

    .. math::
        \mathbf{m}^{\rightarrow}_{uv} &= \sigma\big(\boldsymbol{\gamma}(\mathbf{e}_{uv})
            \odot \mathbf{A}^{\rightarrow}\mathbf{h}_u + \boldsymbol{\beta}(\mathbf{e}_{uv})\big),
        \qquad
        \mathbf{m}^{\leftarrow}_{uv} = \sigma\big(\boldsymbol{\gamma}(\mathbf{e}_{uv})
            \odot \mathbf{A}^{\leftarrow}\mathbf{h}_v + \boldsymbol{\beta}(\mathbf{e}_{uv})\big)

        \mathbf{h}'_v &= \mathrm{LN}\Big(\mathbf{h}_v + \mathrm{MLP}\big[\mathbf{h}_v \,\|\,
            \textstyle\bigoplus_{u \to v} \mathbf{m}^{\rightarrow}_{uv} \,\|\,
            \bigoplus_{v \to w} \mathbf{m}^{\leftarrow}_{vw}
            \,\|\, \log(1 + d^{\mathrm{in}}_v) \,\|\, \log(1 + d^{\mathrm{out}}_v)\big]\Big)

        \mathbf{e}'_{uv} &= \mathrm{LN}\Big(\mathbf{e}_{uv} + \mathbf{W}_o\,\sigma\big(\mathbf{U}\mathbf{e}_{uv}
            + \mathbf{S}\mathbf{h}'_u + \mathbf{T}\mathbf{h}'_v\big)\Big)

    where :math:`\bigoplus` concatenates the ``aggregators`` (PNA-style; by default mean, max and
    standard deviation) and the FiLM scales :math:`\boldsymbol{\gamma}` start around 1. Every
    operation acts per node, per edge or as a symmetric aggregation, and ``LN`` normalizes each node /
    edge over its own features, so the layer is equivariant to any relabelling of the nodes.

    Messages and aggregation are single autograd ops with hand-written backward passes
    (:func:`~nngraph.gnn.segment.film_message`, :func:`~nngraph.gnn.segment.segment_aggregate`): on the
    CPU the layer is bound by memory traffic over edge-sized tensors. Pass the edges'
    :class:`~nngraph.gnn.segment.MessageIndex` to reuse it across layers (what
    :class:`~nngraph.gnn.NeuralGraphEncoder` does); without it the layer builds it.

    The layer is a plain ``nn.Module``, not a PyG ``MessagePassing``: its message op gathers the
    node table itself (keeping no ``(E, H)`` copy of ``x_j`` for the backward) and aggregates both
    directions with several aggregators at once, so PyG's ``_i`` / ``_j`` lifting, aggregation
    resolver and explain hooks would have nothing to act on.

    Args:
        hidden_dim (int): node and edge width :math:`H`.
        aggregators (sequence of str): any of ``"mean"``, ``"max"``, ``"min"``, ``"std"``.
            (default: :obj:`("mean", "max", "std")`)
        act (str): activation :math:`\sigma`. (default: :obj:`"silu"`)
        dropout (float): dropout on the node and edge updates. (default: :obj:`0.0`)

    Shapes:
        - **input:** node features :math:`(N, H)`, edge indices :math:`(2, E)`, edge features :math:`(E, H)`,
          optional :class:`~nngraph.gnn.segment.MessageIndex`
        - **output:** node features :math:`(N, H)`, edge features :math:`(E, H)`
    """

    def __init__(self, hidden_dim: int, aggregators: Sequence[str] = ("mean", "max", "std"), act: str = "silu",
                 dropout: float = 0.0):
        super().__init__()
        H = hidden_dim
        self.hidden_dim = H
        self.aggregators = check_aggregators(aggregators)
        self.dropout = dropout
        # Separate maps instead of one wide map split afterwards: slicing costs a copy in the backward.
        self.lin_gamma, self.lin_beta = nn.Linear(H, H), nn.Linear(H, H)
        self.msg_fwd, self.msg_bwd = nn.Linear(H, H, bias=False), nn.Linear(H, H, bias=False)
        self.node_mlp = make_mlp(H + 2 * (len(self.aggregators) * H + 1), H, H, act)
        self.norm_node = nn.LayerNorm(H)
        self.lin_edge = nn.Linear(H, H)  # U
        self.lin_src, self.lin_dst = nn.Linear(H, H, bias=False), nn.Linear(H, H, bias=False)  # S, T
        self.edge_out = nn.Linear(H, H)  # W_o
        self.norm_edge = nn.LayerNorm(H)
        self.act = make_act(act)
        self.reset_parameters()

    def reset_parameters(self):
        for m in (self.lin_gamma, self.lin_beta, self.msg_fwd, self.msg_bwd,
                  self.lin_edge, self.lin_src, self.lin_dst, self.edge_out, self.norm_node, self.norm_edge):
            m.reset_parameters()
        for m in self.node_mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        with torch.no_grad():  # FiLM scales start around 1
            self.lin_gamma.bias.add_(1.0)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor,
                index: MessageIndex | None = None) -> tuple[Tensor, Tensor]:
        if index is None:
            index = message_index(edge_index, x.size(0))
        gamma, beta = self.lin_gamma(edge_attr), self.lin_beta(edge_attr)  # (E, H) each
        # forward messages u -> v, aggregated at v
        agg_fwd = self.aggregate(self.message(self.msg_fwd(x), gamma, beta, index, backward=False), index,
                                 backward=False)  # (N, F)
        # backward messages v -> u, aggregated at u
        agg_bwd = self.aggregate(self.message(self.msg_bwd(x), gamma, beta, index, backward=True), index,
                                 backward=True)  # (N, F)
        deg = torch.log1p(torch.cat([index.in_degree, index.out_degree], dim=-1).to(x.dtype))  # (N, 2)
        upd = self.node_mlp(torch.cat([x, agg_fwd, agg_bwd, deg], dim=-1))  # (N, H)
        x = self.norm_node(x + nn.functional.dropout(upd, self.dropout, self.training))  # (N, H)

        upd_e = self.edge_update(self.lin_src(x), self.lin_dst(x), self.lin_edge(edge_attr), index)  # (E, H)
        edge_attr = self.norm_edge(edge_attr + nn.functional.dropout(upd_e, self.dropout, self.training))
        return x, edge_attr

    def message(self, x: Tensor, gamma: Tensor, beta: Tensor, index_info: MessageIndex,
                backward: bool) -> Tensor:
        """``(E, H)``: every edge's message, read from the node table ``x`` ``(N, H)``."""
        idx = index_info
        # forward messages read the source u, backward messages the target v
        return film_message(x, idx.dst if backward else idx.src, gamma, beta, self.act)  # (E, H)

    def aggregate(self, inputs: Tensor, index_info: MessageIndex, backward: bool) -> Tensor:
        """``(N, A * H)``: the messages ``(E, H)`` aggregated at their targets (sources when ``backward``)."""
        idx = index_info
        seg, count = (idx.src, idx.out_degree) if backward else (idx.dst, idx.in_degree)
        return segment_aggregate(inputs, seg, inverse_count(count, inputs.dtype), self.aggregators)  # (N, A * H)

    def edge_update(self, s: Tensor, t: Tensor, u: Tensor, index_info: MessageIndex) -> Tensor:
        """``(E, H)``: the edge update from ``S h'`` ``(N, H)``, ``T h'`` ``(N, H)`` and ``U e`` ``(E, H)``."""
        idx = index_info
        pre = u + s.index_select(0, idx.src) + t.index_select(0, idx.dst)  # (E, H): U e_uv + S h_u + T h_v
        return self.edge_out(self.act(pre))  # (E, H)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_dim}, aggr={list(self.aggregators)})"
