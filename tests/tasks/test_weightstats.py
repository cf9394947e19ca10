"""Weight-statistics features: shape, permutation invariance, sensitivity to the weights and to the
normalisation parameters and BatchNorm running statistics."""
from __future__ import annotations

import torch
from torch import nn

import nngraph
from nngraph.schema import NORM_BIAS, NORM_WEIGHT, RUNNING_MEAN, RUNNING_VAR, NodeKind
from tasks.common.weightstats import NORM_FIELDS, STATS, feature_dim, tensor_stats, weight_stat_features

S = len(STATS)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 7), nn.Tanh(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 2))


def _bn_mlp():
    """Like :func:`_mlp` with a BatchNorm after each hidden layer, with non-trivial γ, β and running statistics."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, 5), nn.BatchNorm1d(5),
                          nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.2, 3.0)
            bn.num_batches_tracked.fill_(17)
    return model.eval()


def _rows(f):
    return f.reshape(-1, S)


def _norm_group_row(rows, field, max_tensors=20):
    return rows[max_tensors + 2 + NORM_FIELDS.index(field)]


def _norm_layer_row(rows, layer, field, max_tensors=20):
    return rows[max_tensors + 2 + len(NORM_FIELDS) * (1 + layer) + NORM_FIELDS.index(field)]


def test_shape_and_padding():
    f = weight_stat_features(_mlp(), max_tensors=8, max_norm_layers=3)
    assert f.shape == (feature_dim(8, 3),) == (S * (8 + 2 + 4 * 4),)
    rows = f.reshape(-1, S)
    assert rows[:6, 0].tolist() == [1.0] * 6 and rows[6:8].abs().sum() == 0  # 6 tensors, 2 padded rows
    assert rows[8:10, 0].tolist() == [1.0, 1.0]  # weights, vectors
    assert rows[10:].abs().sum() == 0  # no normalisation: every norm row is the zero fill, flag included
    bias0 = _mlp()[0].bias.detach().double()
    assert rows[1, 1].item() == torch.tensor(float(bias0.mean())).float().item()
    assert rows[1, 7].item() == torch.tensor(float(bias0.max())).float().item()


def test_same_length_with_and_without_normalisation():
    plain, bn = weight_stat_features(_mlp()), weight_stat_features(_bn_mlp())
    ln = nn.Sequential(nn.Linear(3, 7), nn.LayerNorm(7), nn.Tanh(), nn.Linear(7, 2))
    assert plain.shape == bn.shape == weight_stat_features(ln).shape == (feature_dim(),)
    assert torch.isfinite(plain).all() and torch.isfinite(bn).all()


def test_batchnorm_running_statistics_and_affine_parameters_are_summarised():
    model = _bn_mlp()
    rows = _rows(weight_stat_features(model))
    bns = (model[1], model[4])
    for field in NORM_FIELDS:
        torch.testing.assert_close(_norm_group_row(rows, field),
                                   tensor_stats(torch.cat([getattr(b, field) for b in bns])))
        for i, b in enumerate(bns):
            torch.testing.assert_close(_norm_layer_row(rows, i, field), tensor_stats(getattr(b, field)))
        assert _norm_layer_row(rows, 2, field).abs().sum() == 0  # only two norm layers


def test_features_differ_when_only_running_var_differs():
    a, b = _bn_mlp(), _bn_mlp()
    with torch.no_grad():
        b[4].running_var.mul_(4.0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # same parameters ...
    fa, fb = _rows(weight_stat_features(a)), _rows(weight_stat_features(b))
    assert not torch.allclose(fa, fb)  # ... different features
    changed = {int(i) for i in (fa != fb).any(1).nonzero().reshape(-1)}
    assert changed == {20 + 2 + NORM_FIELDS.index("running_var"), 20 + 2 + 4 * 2 + NORM_FIELDS.index("running_var")}
    with torch.no_grad():
        b[4].running_var.copy_(a[4].running_var)
        b[1].running_mean.add_(1.0)
    assert not torch.allclose(weight_stat_features(a), weight_stat_features(b))


def test_layer_norm_has_affine_rows_but_no_running_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 7), nn.LayerNorm(7), nn.Tanh(), nn.Linear(7, 2))
    rows = _rows(weight_stat_features(model))
    assert _norm_group_row(rows, "weight")[0] == 1 and _norm_group_row(rows, "bias")[0] == 1
    assert _norm_group_row(rows, "running_mean").abs().sum() == 0
    assert _norm_layer_row(rows, 0, "running_var").abs().sum() == 0
    no_affine = nn.Sequential(nn.Linear(3, 7), nn.BatchNorm1d(7, affine=False), nn.Linear(7, 2))
    rows = _rows(weight_stat_features(no_affine))
    assert _norm_group_row(rows, "weight").abs().sum() == 0 and _norm_group_row(rows, "running_var")[0] == 1


def test_norm_rows_match_the_neural_graph_node_features():
    model = _bn_mlp()
    graph = nngraph.to_graph(model, torch.randn(4, 3))
    x = graph.x[graph.node_kind == NodeKind.NORM]  # (12, 5): the two BatchNorms' neurons
    rows = _rows(weight_stat_features(model))
    for field, column in zip(NORM_FIELDS, (NORM_WEIGHT, NORM_BIAS, RUNNING_MEAN, RUNNING_VAR)):
        torch.testing.assert_close(_norm_group_row(rows, field), tensor_stats(x[:, column]))


def test_invariant_to_hidden_permutations_and_sensitive_to_weights():
    for model in (_mlp(), _bn_mlp()):
        permuted, _ = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(1))
        x = torch.randn(4, 3)
        torch.testing.assert_close(permuted(x), model(x))  # the permutation preserves the function ...
        assert not torch.equal(permuted[0].weight, model[0].weight)  # ... and really moved neurons
        torch.testing.assert_close(weight_stat_features(permuted), weight_stat_features(model), rtol=0, atol=1e-6)
        with torch.no_grad():
            model[-1].weight[0, 0] += 1.0
        assert not torch.allclose(weight_stat_features(permuted), weight_stat_features(model))


def test_statistics_of_huge_but_finite_weights_stay_finite():
    import torch

    from tasks.common.weightstats import tensor_stats

    stats = tensor_stats(torch.tensor([1e20, -1e20, 3.0]))  # variance 6.7e39: over float32's range
    assert torch.isfinite(stats).all() and stats[2] == torch.finfo(torch.float32).max
