"""The encoder + weight statistics predictor (``encoder_stats``): its features, their standardisation, invariance
to relabelling hidden neurons (float64), that the statistics reach the output, and the method end to end."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import nngraph
from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.accuracy_prediction.hybrid import CLIP, StatsGraphPredictor, StatsStandardizer, with_stats_features
from tasks.common.robust import RobustGraphScaler
from tasks.common.weightstats import feature_dim, weight_stat_features

FAST = ["--epochs", "1", "--hidden-dim", "8", "--num-layers", "1", "--no-progress"]


def _models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        mlp[1].running_mean.normal_()
        mlp[1].running_var.uniform_(0.5, 2.0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 5, padding=2), nn.Tanh(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    return [(mlp.double().eval(), torch.randn(4, 3, dtype=torch.double)),
            (cnn.double().eval(), torch.randn(2, 1, 6, 6, dtype=torch.double))]


def _predictor(graphs):
    torch.manual_seed(0)
    standardizer = StatsStandardizer(feature_dim()).fit(graphs)
    return StatsGraphPredictor(RobustGraphScaler().fit(graphs), standardizer, 3, hidden_dim=8, num_layers=2,
                               kernel_box=(1, 5, 5)).double().eval()


def test_stats_features_are_the_squashed_weight_statistics_on_copies():
    (model, x), _ = _models()
    plain = nngraph.to_graph(model, x)
    (g,) = with_stats_features([plain], [model])
    assert g.stats.shape == (1, feature_dim()) and not hasattr(plain, "stats")
    torch.testing.assert_close(g.stats[0], torch.asinh(weight_stat_features(model)))
    assert g.x is plain.x  # shallow: the graph itself is shared
    with pytest.raises(ValueError, match="2 graphs but 1 models"):
        with_stats_features([plain, plain], [model])


def test_standardizer_centres_training_features_and_keeps_constant_ones():
    graphs = [torch.tensor([[1.0, 5.0, 0.0]]), torch.tensor([[3.0, 5.0, 0.0]])]
    holders = [type("G", (), {"stats": s})() for s in graphs]
    st = StatsStandardizer(3).fit(holders)
    torch.testing.assert_close(st(torch.cat(graphs)), torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert st.std[1] == 1.0  # constant in training: unit spread, not a division by ~0
    far = st(torch.tensor([[1e6, 5.0, 1e6]]))
    assert far.tolist() == [[CLIP, 0.0, CLIP]]


def test_invariant_to_hidden_permutations_in_float64():
    for model, x in _models():
        permuted, _ = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(1))
        torch.testing.assert_close(permuted(x), model(x), rtol=0, atol=1e-10)  # the same function ...
        assert not torch.equal(permuted[0].weight, model[0].weight)  # ... with neurons really moved
        graphs = with_stats_features([nngraph.to_graph(m, x) for m in (model, permuted)], [model, permuted])
        predictor = _predictor(graphs)
        with torch.no_grad():
            out = predictor(Batch.from_data_list(graphs))  # (2, 3)
        assert out.shape == (2, 3) and out.dtype == torch.double
        torch.testing.assert_close(out[0], out[1], rtol=0, atol=1e-10)


def test_the_statistics_reach_the_output():
    (model, x), (cnn, xc) = _models()
    graphs = with_stats_features([nngraph.to_graph(model, x), nngraph.to_graph(cnn, xc)], [model, cnn])
    predictor = _predictor(graphs)
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        before = predictor(batch)
        batch.stats = batch.stats + torch.randn_like(batch.stats)
        assert not torch.allclose(predictor(batch), before)
        del batch.stats
        with pytest.raises(ValueError, match="with_stats_features"):
            predictor(batch)


def test_encoder_stats_runs_end_to_end_and_is_opt_in(clf_zoo, tmp_path):
    out = str(tmp_path / "acc")
    args = ["--zoo", clf_zoo, "--out", out, "--holdout-family", "", "--methods", "encoder_stats", *FAST]
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(args))
    tau = [r["value"] for r in rows if r["metric"] == "kendall_tau[test]"]
    assert len(tau) == 1 and math.isfinite(tau[0])
    again = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(args))  # reloads the checkpoint
    assert [r["value"] for r in again if r["metric"] == "kendall_tau[test]"] == tau
    assert "encoder_stats" not in accuracy_prediction.build_parser().parse_args(["--zoo", clf_zoo]).methods
