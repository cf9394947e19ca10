"""The velocity fields of the flow generator: the equivariant graph denoiser and its non-equivariant twin.

Both map noisy normalised weights ``z`` :math:`(B, D)`, the flow time ``t`` :math:`(B,)` and condition features
:math:`(B, C)` to a velocity :math:`(B, D)`, so :class:`~nngraph.generate.FlowGenerator` trains and samples
either one. :data:`DENOISERS` resolves them by name.

Both are preconditioned the same way (:func:`precondition`, :func:`velocity`): the network reads
:math:`\mathbf{z}/s_t` and predicts a residual :math:`\mathbf{F}` of the clean weights on top of the estimate that
is optimal for unit Gaussian weights, so a network that outputs zero samples the per-tensor Gaussian
(:class:`~nngraph.generate.GaussianGenerator`) and training learns only what the zoo holds beyond it; the
velocity never divides by :math:`1 - t`.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from nngraph.gnn import EdgeEncoder, KernelLinear, NeuralGraphConv, NodeEdgeHead, NodeEncoder
from nngraph.gnn.segment import message_index

from .condition import TIME_DIM, time_features
from .layers import EndpointProduct, FiLM, WeightMessage
from .space import WeightSpace

__all__ = ["GraphDenoiser", "FlatDenoiser", "DENOISERS", "make_denoiser", "precondition", "velocity"]


def precondition(z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    r"""The network's input :math:`\mathbf{z}/s_t` and :math:`s_t^2 = (1 - t)^2 + t^2` ``(B, 1)``, the variance of
    :math:`\mathbf{z}_t = (1 - t)\,\mathbf{z}_0 + t\,\mathbf{z}_1` for unit-variance weights."""
    t = t.to(z.dtype).unsqueeze(-1)  # (B, 1)
    s2 = (1 - t) ** 2 + t ** 2
    return z / s2.sqrt(), s2


def velocity(z: Tensor, t: Tensor, s2: Tensor, residual: Tensor) -> Tensor:
    r"""The velocity of the clean-weight estimate :math:`\hat{\mathbf{z}}_1 = \frac{t}{s_t^2}\mathbf{z}
    + \frac{1 - t}{s_t}\mathbf{F}`:

    .. math::
        \mathbf{v} = \frac{\hat{\mathbf{z}}_1 - \mathbf{z}}{1 - t}
            = \frac{(2t - 1)\,\mathbf{z} + s_t\,\mathbf{F}}{s_t^2}

    With :math:`\mathbf{F} = 0` it is :math:`\mathbb{E}[\mathbf{z}_1 - \mathbf{z}_0 \mid \mathbf{z}_t]` for
    :math:`\mathbf{z}_1 \sim \mathcal{N}(0, I)`: the flow maps the noise onto itself. Shapes: ``z``, ``residual``
    :math:`(B, D)`, ``t`` :math:`(B,)`, ``s2`` :math:`(B, 1)` -> :math:`(B, D)`.
    """
    t = t.to(z.dtype).unsqueeze(-1)  # (B, 1)
    return ((2 * t - 1) * z + s2.sqrt() * residual) / s2


class GraphDenoiser(nn.Module):
    r"""The equivariant velocity field on the graphs whose parameter entries are ``z``: the encoder's node and
    edge embeddings (:class:`~nngraph.gnn.NodeEncoder`, :class:`~nngraph.gnn.EdgeEncoder`) and layers
    (:class:`~nngraph.gnn.NeuralGraphConv`), with, before every layer, the time and condition as a
    :class:`~nngraph.generate.layers.FiLM` of every node and edge and messages weighted by the noisy weights
    (:class:`~nngraph.generate.layers.WeightMessage`), and after it the product of every edge's endpoints
    (:class:`~nngraph.generate.layers.EndpointProduct`) added to the edge. A
    :class:`~nngraph.gnn.NodeEdgeHead` reads nodes with the time embedding and edges with their endpoints'
    product; its outputs are the residual :math:`\mathbf{F}` of every bias and weight (:func:`velocity`):

    .. math::
        \mathbf{c} = \mathrm{MLP}([\phi(t), \psi(c)]), \qquad
        (\mathbf{H}, \mathbf{E}) \leftarrow \mathrm{Conv}_\ell\big(\mathrm{WM}_\ell(\mathrm{FiLM}_\ell(
            \mathbf{H}, \mathbf{E}, \mathbf{c}))\big), \quad
        \mathbf{E} \leftarrow \mathbf{E} + \mathbf{M}_\ell\,\mathrm{P}_\ell(\mathbf{H}), \qquad
        \mathbf{v} = \mathrm{velocity}\big(\mathbf{z}, t, \mathrm{read}(\mathrm{Head}(\mathbf{H} \| \mathbf{c},
            \mathbf{E} \| \mathrm{P}(\mathbf{H})))\big)

    Why the additions (``tasks.generation`` and the tests measure them): the time enters every node and edge, not
    only the nodes' first embedding; a neuron's code gets its incoming weights linearly (the forward product
    :math:`\mathbf{W}\mathbf{H}`, which the FiLM messages of the encoder reach only through nonlinearities); an
    edge gets the product of its endpoints' codes, so a readout weight can follow its hidden neuron's incoming
    weights and its class (:math:`w_{vc} \approx \sum_u w_{uv} T_{uc}`). Relabelling the hidden neurons of
    :math:`G(\mathbf{z})` relabels :math:`\mathbf{v}` the same way.

    Args:
        space (WeightSpace): the architecture.
        cond_dim (int): width :math:`C` of the condition features.
        hidden_dim (int): width of node and edge embeddings. (default: :obj:`64`)
        num_layers (int): message-passing layers. (default: :obj:`4`)

    Shapes:
        - **input:** ``z`` :math:`(B, D)`, ``t`` :math:`(B,)`, ``cond`` :math:`(B, C)`
        - **output:** :math:`(B, D)`
    """

    def __init__(self, space: WeightSpace, cond_dim: int, hidden_dim: int = 64, num_layers: int = 4):
        super().__init__()
        self.space = space
        self.cond_dim, self.hidden_dim, self.num_layers = cond_dim, hidden_dim, num_layers
        H = hidden_dim
        self.node_encoder = NodeEncoder(H)
        self.edge_encoder = EdgeEncoder(H)
        self.kernel = KernelLinear(H, bias=False)  # K(w_uv), linear in the weights
        self.embed = nn.Sequential(nn.Linear(TIME_DIM + cond_dim, H), nn.SiLU(), nn.Linear(H, H))
        self.films = nn.ModuleList(FiLM(H, H) for _ in range(num_layers + 1))
        self.weight_messages = nn.ModuleList(WeightMessage(H) for _ in range(num_layers))
        self.convs = nn.ModuleList(NeuralGraphConv(H) for _ in range(num_layers))
        self.products = nn.ModuleList(EndpointProduct(H) for _ in range(num_layers + 1))
        self.mix = nn.ModuleList(nn.Linear(H, H) for _ in range(num_layers))  # M_l, from zero
        for lin in self.mix:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.head = NodeEdgeHead(2 * H, init_scale=1.0)  # residuals are of unit size, not small deltas

    def forward(self, z: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        b = z.shape[0]
        z_in, s2 = precondition(z, t)  # (B, D), (B, 1)
        x, edge_attr = self.space.features(z_in)  # (B N, 5), (B W, 1)
        fields = dict(self.space.batch_fields(b, z.device))
        edge_index, batch_index = fields.pop("edge_index"), fields.pop("batch_index")
        graph = SimpleNamespace(x=x, edge_attr=edge_attr, edge_index=edge_index, batch=batch_index, **fields)
        h, e = self.node_encoder(graph), self.edge_encoder(graph)  # (B N, H), (B E, H)
        index = message_index(edge_index, h.shape[0])  # shared by all layers
        kw = self.kernel(edge_attr, fields["kernel_shape"])  # (B E, H)
        c = self.embed(torch.cat([time_features(t.to(z.dtype)), cond.to(z.dtype)], dim=1))  # (B, H)
        for film, message, conv, product, mix in zip(self.films, self.weight_messages, self.convs, self.products,
                                                     self.mix):
            h, e = film(h, e, c)
            h = message(h, edge_index, kw, index.in_degree, index.out_degree)
            h, e = conv(h, edge_index, e, index)
            e = e + mix(product(h, edge_index))  # (B E, H)
        h, e = self.films[-1](h, e, c)
        nodes = torch.cat([h, c.repeat_interleave(self.space.num_nodes, dim=0)], dim=1)  # (B N, 2H)
        edges = torch.cat([e, self.products[-1](h, edge_index)], dim=1)  # (B E, 2H)
        dx, de = self.head(nodes, edges, fields["kernel_shape"], edge_attr.shape[0])  # (B N, 5), (B W, 1)
        return velocity(z, t, s2, self.space.read(dx, de))  # (B, D)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(dim={self.space.dim}, cond_dim={self.cond_dim}, "
                f"hidden_dim={self.hidden_dim}, num_layers={self.num_layers})")


class FlatDenoiser(nn.Module):
    r"""The twin without equivariance: an MLP on the flat vector of weights in the zoo's neuron order.

    .. math::
        \mathbf{v} = \mathrm{velocity}\big(\mathbf{z}, t, \mathrm{MLP}([\mathbf{z}/s_t, \phi(t), \psi(c)])\big)

    preconditioned as :class:`GraphDenoiser` is (:func:`velocity`). It sees every entry at a fixed position, so
    it can learn the zoo's neuron order (which, for models
    trained from independent initialisations, carries no information) and relabelled models are new inputs.

    Args:
        space (WeightSpace or int): the architecture (only its size :math:`D` is used), or the size of the
            vectors (a latent code).
        cond_dim (int): width :math:`C` of the condition features.
        hidden_dim (int): width of the hidden layers. (default: :obj:`512`)
        num_layers (int): hidden layers. (default: :obj:`3`)

    Shapes:
        - **input:** ``z`` :math:`(B, D)`, ``t`` :math:`(B,)`, ``cond`` :math:`(B, C)`
        - **output:** :math:`(B, D)`
    """

    def __init__(self, space: WeightSpace | int, cond_dim: int, hidden_dim: int = 512, num_layers: int = 3):
        super().__init__()
        dim = space if isinstance(space, int) else space.dim
        self.dim, self.cond_dim, self.hidden_dim, self.num_layers = dim, cond_dim, hidden_dim, num_layers
        widths = [dim + TIME_DIM + cond_dim] + [hidden_dim] * num_layers
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(widths[-1], dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, z: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        z_in, s2 = precondition(z, t)  # (B, D), (B, 1)
        residual = self.mlp(torch.cat([z_in, time_features(t.to(z.dtype)), cond.to(z.dtype)], dim=1))  # (B, D)
        return velocity(z, t, s2, residual)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(dim={self.dim}, cond_dim={self.cond_dim}, hidden_dim={self.hidden_dim}, "
                f"num_layers={self.num_layers})")


#: Denoisers by name: ``"graph"`` (equivariant) and ``"flat"`` (the twin).
DENOISERS = {"graph": GraphDenoiser, "flat": FlatDenoiser}


def make_denoiser(name: str, space: WeightSpace, cond_dim: int, hidden_dim: int | None = None,
                  num_layers: int | None = None) -> nn.Module:
    """The denoiser ``name`` (:data:`DENOISERS`); ``None`` sizes take its defaults."""
    if name not in DENOISERS:
        raise ValueError(f"Could not resolve denoiser {name!r} among choices {sorted(DENOISERS)}")
    sizes = {k: v for k, v in (("hidden_dim", hidden_dim), ("num_layers", num_layers)) if v is not None}
    return DENOISERS[name](space, cond_dim, **sizes)
