"""Probe inputs made by a deep linear generator shared across the probes (ProbeGen's generator)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ProbeGenerator"]


class ProbeGenerator(nn.Module):
    r"""Probe inputs ``start + G(z)`` made by one generator ``G`` shared across the probes.

    From `Deep Linear Probe Generators for Weight Space Learning <https://arxiv.org/abs/2410.10811>`_
    (ProbeGen, Kahana et al., ICLR 2025). Every probe :math:`k` has a learned latent code :math:`z_k`;
    :math:`G` is a deep *linear* network (affine layers, no activations), so it couples the probes without
    restricting where they go:

    .. math::
        x_k = s_k + W_L (\cdots (W_1 z_k + b_1) \cdots) + b_L

    :math:`G`'s last layer starts at zero, so the probes start at ``start`` (fixed probe images, or zeros) and
    move together through :math:`G`'s shared weights.

    Args:
        start: the starting inputs, ``(P, *in_shape)``.
        latent_dim: size of each probe's code (default: ``16``).
        hidden_dim: width of ``G``'s hidden layers (default: ``64``).
        depth: number of linear layers of ``G``, at least 1 (default: ``3``).

    Shapes:
        - **output:** :math:`(P, *in\_shape)`
    """

    def __init__(self, start: torch.Tensor, latent_dim: int = 16, hidden_dim: int = 64, depth: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        if start.dim() < 2:
            raise ValueError("start must hold P probes along dimension 0, (P, *in_shape); got shape "
                             f"{tuple(start.shape)}")
        self.register_buffer("start", start.detach().clone().to(torch.get_default_dtype()))
        self.latent = nn.Parameter(torch.randn(start.shape[0], latent_dim))  # (P, latent)
        widths = [latent_dim] + [hidden_dim] * (depth - 1) + [start[0].numel()]
        self.layers = nn.Sequential(*(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])))
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    @property
    def num_probes(self) -> int:
        return self.start.shape[0]

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """``G(latent)``: ``(K, latent_dim)`` codes to ``(K, *in_shape)`` offsets (an affine map)."""
        return self.layers(latent).view(-1, *self.start.shape[1:])  # (K, prod in_shape) -> (K, *in_shape)

    def forward(self) -> torch.Tensor:
        return self.start + self.decode(self.latent)  # (P, *in_shape)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(probes={self.num_probes}, in_shape={tuple(self.start.shape[1:])}, "
                f"latent_dim={self.latent.shape[1]}, depth={len(self.layers)})")
