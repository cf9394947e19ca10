"""Zoos with diverged members: dropping non-finite models, and a feature scaler robust to huge weights.

A classifier zoo trained with random learning rates holds models that diverged: some have NaN weights,
others weights of 1e13-1e17 (measured on the default 300-run zoo: 5 NaN and 2 such checkpoints, all in
``train``). One NaN in :class:`~tasks.common.scaling.GraphScaler`'s per-depth RMS makes the scale of that depth
NaN for *every* graph, and one 1e17 weight makes every other model's weights ~0 after scaling. The encoder
and the weight-statistics MLP then train on NaN (every metric NaN).

- :func:`finite_only`: the models of a split whose weights are all finite (and how many were dropped).
- :class:`RobustGraphScaler`: per-depth scales from the *median* over graphs of each graph's mean square,
  then ``asinh`` of the scaled weights and biases and of the normalization features (γ, β, running
  mean / variance, which the plain scaler leaves as they are: running variances up to ~100). ``asinh`` is
  odd and elementwise, so the scaler still commutes with relabelling hidden neurons and with sign flips;
  it is ~linear for the typical (unit-sized) value and logarithmic for outliers.
"""
from __future__ import annotations

import copy

import torch

from nngraph import schema
from nngraph.blocks import is_blocked

from .scaling import GraphScaler
from .splits import Split

__all__ = ["is_finite_graph", "finite_only", "RobustGraphScaler", "signed_log"]


def is_finite_graph(g) -> bool:
    """Whether every node and edge feature of ``g`` is finite."""
    return bool(torch.isfinite(g.x).all()) and bool(torch.isfinite(g.edge_attr).all())


def finite_only(split: Split) -> tuple[Split, int]:
    """``split`` without the models whose graphs hold NaN / inf, and the number dropped."""
    out = split.select(i for i, g in enumerate(split.graphs) if is_finite_graph(g))
    return out, len(split) - len(out)


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """``asinh(x)``: odd, ~``x`` near 0, ~``sign(x) log(2|x|)`` for large ``|x|``."""
    return torch.asinh(x)


class RobustGraphScaler(GraphScaler):
    """:class:`~tasks.common.scaling.GraphScaler` with median-based scales and ``asinh`` squashing (module docstring).

    The scale of depth ``d`` is ``sqrt(median_g ms_g(d))`` over the training graphs ``g`` that have
    parameters at that depth, ``ms_g(d)`` the mean square of the nonzero weights (or biases) of ``g`` there;
    non-finite graphs are skipped. ``edge_factor`` / ``node_factor`` are those of the plain scaler.
    """

    @torch.no_grad()
    def fit(self, graphs: list) -> "RobustGraphScaler":
        e_ms = [[] for _ in range(self.max_layers)]
        n_ms = [[] for _ in range(self.max_layers)]
        for g in graphs:
            if not is_finite_graph(g):
                continue
            w, d = self._weight_entries(g)  # (W,) rows of weight edges, (W,) their depths
            a, d = g.edge_attr[w, 0].double(), d[w]  # (W_w,) each
            s = torch.zeros(self.max_layers, dtype=torch.double).index_add_(0, d, a.pow(2))
            c = torch.zeros(self.max_layers, dtype=torch.double).index_add_(0, d, (a != 0).double())
            for k in torch.nonzero(c > 0).flatten().tolist():
                e_ms[k].append(float(s[k] / c[k]))
            m = g.node_type != int(schema.NodeType.INPUT)
            dn = self._depth(g.layer[m])
            b = g.x[m, schema.BIAS].double()
            s = torch.zeros(self.max_layers, dtype=torch.double).index_add_(0, dn, b.pow(2))
            c = torch.zeros(self.max_layers, dtype=torch.double).index_add_(0, dn, (b != 0).double())
            for k in torch.nonzero(c > 0).flatten().tolist():
                n_ms[k].append(float(s[k] / c[k]))
        for buf, lists in ((self.edge_scale, e_ms), (self.node_scale, n_ms)):
            values = [float(torch.tensor(v).median().sqrt()) if v else 1.0 for v in lists]
            buf.copy_(torch.tensor(values).clamp(min=1e-6))
        return self

    def forward(self, batch):
        """A shallow copy of ``batch``: weights and biases scaled per depth, then every parameter ``asinh``-ed."""
        out = copy.copy(batch)
        if is_blocked(batch):  # a large model's graph: scaled as the encoder reads it, block by block
            out.edge_transform = self.blocked_edge_transform(batch, signed_log)
        else:
            w, _ = self._weight_entries(batch)  # (W,); identity edges stay 1
            w = w.unsqueeze(-1)  # (W, 1)
            out.edge_attr = torch.where(w, signed_log(batch.edge_attr / self.edge_factor(batch)), batch.edge_attr)
        x = batch.x.clone()
        x[:, schema.BIAS] = x[:, schema.BIAS] / self.node_factor(batch)
        out.x = signed_log(x)  # (N, 5)
        return out
