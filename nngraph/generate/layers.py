"""Equivariant operations the graph denoiser adds to the encoder's layers: messages weighted by the model's own
weights, a product of an edge's two endpoints, and a time / condition modulation of every node and edge.

The encoder's layer (:class:`~nngraph.gnn.NeuralGraphConv`) mixes an edge and its endpoints additively inside
nonlinearities. Denoising weights needs two things it learns slowly (``tasks.generation`` measures both):

- a neuron's code as a *linear* function of its incoming weights, :math:`\\sum_u w_{uv}\\,\\mathbf{a}_u` (what the
  network computes in its forward pass, with embeddings in place of activations): :class:`WeightMessage`;
- an edge's value as a *product* of its endpoints' codes (a readout weight :math:`w_{vc}` follows the hidden
  neuron's incoming weights and the class :math:`c`: :math:`w_{vc} \\approx \\sum_u w_{uv} T_{uc}`):
  :class:`EndpointProduct`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["WeightMessage", "EndpointProduct", "FiLM"]


class WeightMessage(nn.Module):
    r"""Messages weighted by the edges' kernels, in both directions, added to the nodes:

    .. math::
        \mathbf{h}'_v = \mathbf{h}_v + \mathbf{W}_o\Big[\tfrac{1}{\sqrt{d^{\mathrm{in}}_v}} \textstyle\sum_{u \to v}
            K(\mathbf{w}_{uv}) \odot \mathbf{A}\mathbf{h}_u \;\Big\|\; \tfrac{1}{\sqrt{d^{\mathrm{out}}_v}}
            \sum_{v \to w} K(\mathbf{w}_{vw}) \odot \mathbf{B}\mathbf{h}_w\Big]

    :math:`K` is a :class:`~nngraph.gnn.KernelLinear` (linear in the kernel, of any shape), so for an MLP the
    forward message of a layer is the layer's own product :math:`\mathbf{W}\mathbf{H}` on node codes, and its
    backward message :math:`\mathbf{W}^\top\mathbf{H}`. Sums over edges: the layer is equivariant to relabelling
    hidden neurons. The kernel features are computed once per graph and shared by the layers.

    Args:
        hidden_dim (int): node width :math:`H`.

    Shapes:
        - **input:** nodes :math:`(N, H)`, ``edge_index`` :math:`(2, E)`, kernel features :math:`(E, H)`,
          in-degree and out-degree :math:`(N, 1)`
        - **output:** nodes :math:`(N, H)`
    """

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.lin_fwd = nn.Linear(hidden_dim, hidden_dim, bias=False)  # A
        self.lin_bwd = nn.Linear(hidden_dim, hidden_dim, bias=False)  # B
        self.lin_out = nn.Linear(2 * hidden_dim, hidden_dim)  # W_o
        self.reset_parameters()

    def reset_parameters(self):
        for m in (self.lin_fwd, self.lin_bwd, self.lin_out):
            m.reset_parameters()

    def forward(self, h: Tensor, edge_index: Tensor, kw: Tensor, in_degree: Tensor, out_degree: Tensor) -> Tensor:
        src, dst = edge_index[0], edge_index[1]
        fwd = torch.zeros_like(h).index_add_(0, dst, kw * self.lin_fwd(h).index_select(0, src))  # (N, H)
        bwd = torch.zeros_like(h).index_add_(0, src, kw * self.lin_bwd(h).index_select(0, dst))  # (N, H)
        fwd = fwd * in_degree.clamp_min(1).to(h.dtype).rsqrt()
        bwd = bwd * out_degree.clamp_min(1).to(h.dtype).rsqrt()
        return h + self.lin_out(torch.cat([fwd, bwd], dim=-1))  # (N, H)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_dim})"


class EndpointProduct(nn.Module):
    r"""The elementwise product of an edge's two endpoints' codes:

    .. math::
        \mathbf{p}_{uv} = \mathbf{S}\mathbf{h}_u \odot \mathbf{T}\mathbf{h}_v

    (a bilinear form of the two codes per output channel, which an additive update
    :math:`\sigma(\mathbf{S}\mathbf{h}_u + \mathbf{T}\mathbf{h}_v)` only approximates). Per edge: equivariant.

    Args:
        hidden_dim (int): node width :math:`H`.
        out_dim (int, optional): width of the product. (default: :obj:`hidden_dim`)

    Shapes:
        - **input:** nodes :math:`(N, H)`, ``edge_index`` :math:`(2, E)`
        - **output:** :math:`(E, \text{out\_dim})`
    """

    def __init__(self, hidden_dim: int, out_dim: int | None = None):
        super().__init__()
        self.hidden_dim, self.out_dim = hidden_dim, hidden_dim if out_dim is None else out_dim
        self.lin_src = nn.Linear(hidden_dim, self.out_dim, bias=False)
        self.lin_dst = nn.Linear(hidden_dim, self.out_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        self.lin_src.reset_parameters()
        self.lin_dst.reset_parameters()

    def forward(self, h: Tensor, edge_index: Tensor) -> Tensor:
        return self.lin_src(h).index_select(0, edge_index[0]) * self.lin_dst(h).index_select(0, edge_index[1])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_dim}, {self.out_dim})"


class FiLM(nn.Module):
    r"""Modulation of every node and every edge of a graph by an embedding of its time and condition:

    .. math::
        \mathbf{h}'_v = (1 + \boldsymbol{\gamma}^n)\odot\mathbf{h}_v + \boldsymbol{\beta}^n, \qquad
        \mathbf{e}'_{uv} = (1 + \boldsymbol{\gamma}^e)\odot\mathbf{e}_{uv} + \boldsymbol{\beta}^e, \qquad
        [\boldsymbol{\gamma}^n, \boldsymbol{\beta}^n, \boldsymbol{\gamma}^e, \boldsymbol{\beta}^e]
        = \mathbf{W}\mathbf{c}_G

    The same vector for all nodes (edges) of graph :math:`G`, so it tells no hidden neuron from another;
    :math:`\mathbf{W}` starts at zero (the identity).

    Args:
        hidden_dim (int): node and edge width :math:`H`.
        embed_dim (int): width of the graph's embedding :math:`\mathbf{c}_G`.

    Shapes:
        - **input:** nodes :math:`(B N, H)`, edges :math:`(B E, H)`, embeddings :math:`(B, C)`; every graph
          of the batch has :math:`N` nodes and :math:`E` edges, in graph order
        - **output:** nodes :math:`(B N, H)`, edges :math:`(B E, H)`
    """

    def __init__(self, hidden_dim: int, embed_dim: int):
        super().__init__()
        self.hidden_dim, self.embed_dim = hidden_dim, embed_dim
        self.lin = nn.Linear(embed_dim, 4 * hidden_dim)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, h: Tensor, e: Tensor, emb: Tensor) -> tuple[Tensor, Tensor]:
        b = emb.shape[0]
        gn, bn, ge, be = self.lin(emb).chunk(4, dim=-1)  # (B, H) each
        n, m = h.shape[0] // b, e.shape[0] // b
        h = (h.view(b, n, -1) * (1 + gn.unsqueeze(1)) + bn.unsqueeze(1)).view_as(h)  # (B N, H)
        e = (e.view(b, m, -1) * (1 + ge.unsqueeze(1)) + be.unsqueeze(1)).view_as(e)  # (B E, H)
        return h, e

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_dim}, embed_dim={self.embed_dim})"
