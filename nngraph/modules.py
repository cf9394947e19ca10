"""Small modules nngraph knows how to convert that torch does not ship."""
from __future__ import annotations

import torch
from torch import nn


class Sine(nn.Module):
    r"""Element-wise :math:`\sin(\omega_0 x)`, the activation of SIREN networks
    (`Sitzmann et al., 2020 <https://arxiv.org/abs/2006.09661>`_).

    Args:
        w0 (float): frequency factor :math:`\omega_0`. (default: :obj:`30.0`)

    Shapes:
        - **input:** any shape :math:`(*)`
        - **output:** the same shape :math:`(*)`
    """

    def __init__(self, w0: float = 30.0):
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class Swish(nn.Module):
    r"""Element-wise :math:`x \cdot \sigma(\beta x)`: SiLU for :math:`\beta = 1`, and the "QuickGELU"
    of CLIP for :math:`\beta = 1.702`. torch.export spells it out as arithmetic; nngraph finds it
    again and records :math:`\beta`.

    Args:
        beta (float): :math:`\beta`. (default: :obj:`1.0`)

    Shapes:
        - **input:** any shape :math:`(*)`
        - **output:** the same shape :math:`(*)`
    """

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
