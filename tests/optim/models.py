"""Tiny models of several families for the learned optimizer's tests, built in code."""
from __future__ import annotations

import torch
from torch import nn


def mlp() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), (torch.randn(8, 4),)


def cnn() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    # no bias before the BatchNorm: its gradient would be rounding noise, which per-tensor normalisation (and
    # Adam) blows up to unit size, so two runs that differ by rounding would part
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    return model.train(), (torch.randn(8, 2, 6, 6),)


class Recurrent(nn.Module):
    """An LSTM over a sequence, its last hidden state read by a linear head."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def lstm() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    return Recurrent(), (torch.randn(8, 4, 3),)


MODELS = {"mlp": mlp, "cnn": cnn, "lstm": lstm}


def build(name: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    """``(model, inputs)`` of ``MODELS[name]``, seeded, in ``dtype``."""
    torch.manual_seed(seed)
    model, inputs = MODELS[name]()
    return model.to(dtype), tuple(t.to(dtype) for t in inputs)
