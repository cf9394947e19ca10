"""Tiny models the GNN tests convert (built here, no config files)."""
from __future__ import annotations

import torch
from torch import nn

from nngraph.modules import Sine


def mlp(seed: int = 0, width: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 2))


def siren(seed: int = 0, width: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, width), Sine(), nn.Linear(width, width), Sine(), nn.Linear(width, 1))


def cnn(seed: int = 0, k: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, k, padding=k // 2), nn.ReLU(), nn.Conv2d(4, 5, k, padding=k // 2),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))


class ResNet(nn.Module):
    """Two residual blocks (one with a nonlinearity inside) around Linear layers."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp, self.b1, self.b2, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + torch.relu(self.b1(h))
        h = h + self.b2(torch.tanh(h))
        return self.out(h)


def resnet(seed: int = 0) -> nn.Module:
    return ResNet(seed)


def transformer(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, batch_first=True).eval()


#: name -> (constructor, example input shape)
MODELS = {
    "mlp": (mlp, (4, 3)),
    "cnn3": (cnn, (2, 3, 8, 8)),
    "cnn5": (lambda seed=0: cnn(seed, k=5), (2, 3, 8, 8)),
    "resnet": (resnet, (4, 4)),
    "transformer": (transformer, (2, 5, 8)),
}


def example(name: str, dtype=torch.float64, seed: int = 0):
    """``(model, (inputs,))`` for one of :data:`MODELS`, in ``dtype``."""
    make, shape = MODELS[name]
    gen = torch.Generator().manual_seed(seed)
    return make(seed).to(dtype), (torch.randn(*shape, generator=gen, dtype=dtype),)
