"""The velocity fields of the flow generator: the equivariant graph denoiser and its non-equivariant twin.

Both map noisy normalised weights ``z`` :math:`(B, D)`, the flow time ``t`` :math:`(B,)` and condition features
:math:`(B, C)` to a velocity :math:`(B, D)`, so :class:`~nngraph.generate.FlowGenerator` trains and samples
either one. :data:`DENOISERS` resolves them by name.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nngraph.gnn import NeuralGraphEncoder, NodeEdgeHead

from .condition import TIME_DIM, time_features
from .space import WeightSpace

__all__ = ["GraphDenoiser", "FlatDenoiser", "DENOISERS", "make_denoiser"]


class GraphDenoiser(nn.Module):
    r"""The equivariant velocity field: :class:`~nngraph.NeuralGraphEncoder` and :class:`~nngraph.NodeEdgeHead`
    on the graphs whose parameter entries are ``z``.

    Time and condition enter as every node's probe features (the same vector on all nodes of a graph, so
    nothing distinguishes one hidden neuron from another), the head's node and edge outputs are the
    velocity of every bias and weight:

    .. math::
        \mathbf{p}_v = [\phi(t), \psi(c)], \qquad
        (\mathbf{H}, \mathbf{E}) = \mathrm{Encoder}(G(\mathbf{z}), \mathbf{p}), \qquad
        \mathbf{v} = \mathrm{read}(\mathrm{Head}(\mathbf{H}, \mathbf{E}))

    Relabelling the hidden neurons of :math:`G(\mathbf{z})` relabels :math:`\mathbf{v}` the same way.

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
        self.encoder = NeuralGraphEncoder(1, hidden_dim=hidden_dim, num_layers=num_layers,
                                          probe_dim=TIME_DIM + cond_dim)
        self.encoder.readout.requires_grad_(False)  # per-weight outputs only
        self.head = NodeEdgeHead(hidden_dim, init_scale=1.0)  # velocities are of unit size, not small deltas

    def forward(self, z: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        b, n = z.shape[0], self.space.num_nodes
        x, edge_attr = self.space.features(z)  # (B N, 5), (B W, 1)
        fields = dict(self.space.batch_fields(b, z.device))
        edge_index, batch_index = fields.pop("edge_index"), fields.pop("batch_index")
        probe = torch.cat([time_features(t.to(z.dtype)), cond.to(z.dtype)], dim=1)  # (B, P)
        probe = probe.repeat_interleave(n, dim=0)  # (B, P) -> (B N, P): every node of a graph reads its graph's
        h, e = self.encoder.encode(x, edge_index, edge_attr, batch_index, probe=probe, **fields)  # (B N, H), (B E, H)
        dx, de = self.head(h, e, fields["kernel_shape"], edge_attr.shape[0])  # (B N, 5), (B W, 1)
        return self.space.read(dx, de)  # (B, D)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(dim={self.space.dim}, cond_dim={self.cond_dim}, "
                f"hidden_dim={self.hidden_dim}, num_layers={self.num_layers})")


class FlatDenoiser(nn.Module):
    r"""The twin without equivariance: an MLP on the flat vector of weights in the zoo's neuron order.

    .. math::
        \mathbf{v} = \mathrm{MLP}([\mathbf{z}, \phi(t), \psi(c)])

    It sees every entry at a fixed position, so it can learn the zoo's neuron order (which, for models
    trained from independent initialisations, carries no information) and relabelled models are new inputs.

    Args:
        space (WeightSpace): the architecture (only its size :math:`D` is used).
        cond_dim (int): width :math:`C` of the condition features.
        hidden_dim (int): width of the hidden layers. (default: :obj:`512`)
        num_layers (int): hidden layers. (default: :obj:`3`)

    Shapes:
        - **input:** ``z`` :math:`(B, D)`, ``t`` :math:`(B,)`, ``cond`` :math:`(B, C)`
        - **output:** :math:`(B, D)`
    """

    def __init__(self, space: WeightSpace, cond_dim: int, hidden_dim: int = 512, num_layers: int = 3):
        super().__init__()
        self.dim, self.cond_dim, self.hidden_dim, self.num_layers = space.dim, cond_dim, hidden_dim, num_layers
        widths = [space.dim + TIME_DIM + cond_dim] + [hidden_dim] * num_layers
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(widths[-1], space.dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, z: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.mlp(torch.cat([z, time_features(t.to(z.dtype)), cond.to(z.dtype)], dim=1))  # (B, D)

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
