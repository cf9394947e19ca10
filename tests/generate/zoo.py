"""Tiny zoos for the generator tests: models built here, converted with nngraph.to_graph."""
from __future__ import annotations

import torch
from torch import nn

import nngraph

INPUTS = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def mlp(seed: int, dtype: torch.dtype = torch.float32) -> nn.Module:
    """``Flatten, Linear(16, 8), ReLU, Linear(8, 6), Tanh, Linear(6, 3)``, with tensors of distinct scales and
    offsets (so that per-tensor statistics are told apart)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.mul_(0.5 + i).add_(0.1 * i - 0.2)
    return model.to(dtype)


def cnn(seed: int, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A conv net with 3x3 kernels, BatchNorm and a linear head (kernel entries, norm columns)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 3),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.normal_()
    return model.to(dtype).eval()


def zoo(make=mlp, n: int = 12, dtype: torch.dtype = torch.float32):
    """``(models, graphs, accuracies)``: ``n`` models, their graphs and a made-up scalar condition each."""
    models = [make(s, dtype) for s in range(n)]
    graphs = [nngraph.to_graph(m, INPUTS.to(dtype)) for m in models]
    conditions = torch.linspace(0.1, 0.9, n)
    return models, graphs, conditions


class Killed(Exception):
    """What a generator made by :func:`dying` raises at its ``die_at``-th training batch (a killed run)."""


def dying(generator_class: type) -> type:
    """A subclass of ``generator_class`` whose training raises :class:`Killed` at its ``die_at``-th batch
    (``None``: never); ``calls`` counts the batches trained, so a resumed fit can be checked to train only the
    epochs left."""

    class Dying(generator_class):
        die_at, calls = None, 0

        def _loss(self, model, batch):
            Dying.calls += 1
            if Dying.calls == Dying.die_at:
                raise Killed
            return super()._loss(model, batch)

    Dying.__name__ = Dying.__qualname__ = f"Dying{generator_class.__name__}"
    return Dying
