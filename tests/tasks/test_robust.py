"""Diverged models in a zoo: dropping non-finite graphs, a scaler robust to huge weights, run-disjoint splits."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nngraph
from tasks.accuracy_prediction.task import check_runs_disjoint
from tasks.common.scaling import GraphScaler
from tasks.common.splits import Split
from tasks.common.robust import RobustGraphScaler, finite_only, is_finite_graph


def _mlp(seed: int, scale: float = 1.0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def _graph(model):
    return nngraph.to_graph(model, torch.randn(1, 3))


def test_finite_only_drops_nan_models():
    models = [_mlp(0), _mlp(1), _mlp(2)]
    with torch.no_grad():
        models[1][0].weight[0, 0] = float("nan")
    graphs = [_graph(m) for m in models]
    assert [is_finite_graph(g) for g in graphs] == [True, False, True]
    split, dropped = finite_only(Split(graphs, models, [{"id": i} for i in range(3)], None))
    assert dropped == 1 and [e["id"] for e in split.entries] == [0, 2] and split.models[1] is models[2]


def test_robust_scales_ignore_diverged_models_where_rms_scales_do_not():
    graphs = [_graph(_mlp(s)) for s in range(5)]
    nan_model = _mlp(5)
    with torch.no_grad():
        nan_model[0].weight[0, 0] = float("nan")
    bad = graphs + [_graph(_mlp(6, scale=1e15)), _graph(nan_model)]
    clean = RobustGraphScaler().fit(graphs)
    robust = RobustGraphScaler().fit(bad)
    plain = GraphScaler().fit(bad)
    depths = [1, 2]  # the two Linear layers
    assert all(math.isfinite(float(clean.edge_scale[d])) for d in depths)
    for d in depths:
        assert float(robust.edge_scale[d]) == pytest.approx(float(clean.edge_scale[d]), rel=0.5)
        assert float(robust.node_scale[d]) == pytest.approx(float(clean.node_scale[d]), rel=0.5)
    assert not all(math.isfinite(float(plain.edge_scale[d])) for d in depths)  # the failure this fixes
    out = robust(bad[-2])  # the 1e15 model: squashed to a few dozen, not 1e15
    assert torch.isfinite(out.edge_attr).all() and out.edge_attr.abs().max() < 60
    assert out.x.abs().max() < 60


def test_robust_scaler_is_odd():
    g = _graph(_mlp(0))
    scaler = RobustGraphScaler().fit([g])
    neg = g.clone()
    neg.edge_attr = -g.edge_attr
    neg.x = -g.x
    a, b = scaler(g), scaler(neg)
    torch.testing.assert_close(b.edge_attr, -a.edge_attr)  # commutes with sign flips (asinh is odd)
    torch.testing.assert_close(b.x, -a.x)
    assert not torch.equal(a.edge_attr, g.edge_attr)  # it does transform the weights


def test_runs_straddling_splits_are_refused():
    def split(runs):
        return Split([], [], [{"id": f"m{i}", "run": r} for i, r in enumerate(runs)], None)

    check_runs_disjoint({"train": split([0, 0, 1]), "test": split([2, 2])})
    with pytest.raises(ValueError, match="straddle"):
        check_runs_disjoint({"train": split([0, 0, 1]), "test": split([1, 2])})
