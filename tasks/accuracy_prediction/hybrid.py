"""The encoder and weight statistics read by one network (``encoder_stats`` in :mod:`tasks.accuracy_prediction`).

On the wild zoo the encoder and weight statistics + GBM are level, and a rank average of their predictions is
well above both (docs/tasks/accuracy_prediction.md, "Level, but not the same knowledge"): each reads something
the other misses.
:class:`StatsGraphPredictor` puts both into one model: the encoder's invariant graph embedding and the model's
weight statistics (:func:`tasks.common.weightstats.weight_stat_features`, invariant to relabelling hidden neurons)
are concatenated and read by an MLP, trained end to end. The predictor stays invariant: neither input changes
when hidden neurons are relabelled.

The statistics ride on every graph as a graph attribute ``stats`` :math:`(1, F)` (PyG batches it to
:math:`(B, F)`), ``asinh``-squashed (diverged models have statistics of 1e17+) and standardised with the
training graphs' mean and spread (:class:`StatsStandardizer`).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

import nngraph
from nngraph.gnn.utils import make_mlp

from ..common.models import max_box
from ..common.robust import signed_log
from ..common.scaling import GraphScaler
from ..common.weightstats import weight_stat_features

__all__ = ["StatsGraphPredictor", "StatsStandardizer", "with_stats_features"]

#: standardised statistics are clipped to this many spreads (a test model can sit far outside training's range)
CLIP = 10.0


def with_stats_features(graphs: list, models: list) -> list:
    """Shallow copies of ``graphs`` with ``stats`` :math:`(1, F)`: ``asinh`` of each model's weight statistics,
    zero where not finite."""
    if len(graphs) != len(models):
        raise ValueError(f"{len(graphs)} graphs but {len(models)} models")
    out = []
    for g, model in zip(graphs, models):
        g = copy.copy(g)
        s = signed_log(weight_stat_features(model)).unsqueeze(0)  # (F,) -> (1, F)
        g.stats = torch.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)  # (1, F)
        out.append(g)
    return out


class StatsStandardizer(nn.Module):
    """``clamp((s - mean) / std, -10, 10)`` per feature, ``mean`` / ``std`` from the training graphs' ``stats``
    (a feature constant in training, e.g. a row no training architecture has, keeps its value: ``std`` 1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, graphs: list) -> "StatsStandardizer":
        s = torch.cat([g.stats for g in graphs]).double()  # (M, F)
        std = s.std(dim=0, unbiased=False)  # (F,)
        self.mean.copy_(s.mean(dim=0))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        return self

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        return ((stats - self.mean) / self.std).clamp(-CLIP, CLIP)  # (B, F)


class StatsGraphPredictor(nn.Module):
    r"""The encoder's graph embedding :math:`(B, H)` and the standardised weight statistics :math:`(B, F)`, each
    through its own MLP to width :math:`H`, concatenated and read by a third: :math:`(B, \text{out\_dim})`.

    Args:
        scaler: a fitted :class:`~tasks.common.scaling.GraphScaler` (the encoder's inputs).
        standardizer: a fitted :class:`StatsStandardizer` (the statistics).
        out_dim, hidden_dim, num_layers, dropout, kernel_box: as :class:`~tasks.common.models.GraphPredictor`.
    """

    def __init__(self, scaler: GraphScaler, standardizer: StatsStandardizer, out_dim: int, hidden_dim: int = 32,
                 num_layers: int = 3, dropout: float = 0.0, kernel_box=(1, 1, 1)):
        super().__init__()
        self.scaler = scaler
        self.standardizer = standardizer
        self.encoder = nngraph.NeuralGraphEncoder(hidden_dim, hidden_dim=hidden_dim, num_layers=num_layers,
                                                  dropout=dropout, max_kernel_box=max_box(kernel_box))
        self.stats_mlp = make_mlp(standardizer.mean.numel(), hidden_dim, hidden_dim)
        self.head = make_mlp(2 * hidden_dim, hidden_dim, out_dim)

    def forward(self, batch) -> torch.Tensor:
        if getattr(batch, "stats", None) is None:
            raise ValueError("StatsGraphPredictor needs graphs with `stats` (tasks.accuracy_prediction.hybrid.with_stats_features)")
        g = self.encoder(self.scaler(batch))  # (B, H)
        s = self.stats_mlp(self.standardizer(batch.stats.to(g.dtype)))  # (B, F) -> (B, H)
        return self.head(torch.cat([g, s], dim=-1))  # (B, 2H) -> (B, out_dim)
