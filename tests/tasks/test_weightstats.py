"""Weight-statistics features: shape, permutation invariance, sensitivity to the weights."""
from __future__ import annotations

import torch
from torch import nn

import nngraph
from tasks.weightstats import STATS, feature_dim, weight_stat_features


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 7), nn.Tanh(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 2))


def test_shape_and_padding():
    f = weight_stat_features(_mlp(), max_tensors=8)
    assert f.shape == (feature_dim(8),) == (len(STATS) * 10,)
    rows = f.reshape(10, len(STATS))
    assert rows[:6, 0].tolist() == [1.0] * 6 and rows[6:8].abs().sum() == 0  # 6 tensors, 2 padded rows
    bias0 = _mlp()[0].bias.detach().double()
    assert rows[1, 1].item() == torch.tensor(float(bias0.mean())).float().item()
    assert rows[1, 7].item() == torch.tensor(float(bias0.max())).float().item()


def test_invariant_to_hidden_permutations_and_sensitive_to_weights():
    model = _mlp()
    permuted, _ = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(1))
    x = torch.randn(4, 3)
    torch.testing.assert_close(permuted(x), model(x))  # the permutation preserves the function ...
    assert not torch.equal(permuted[0].weight, model[0].weight)  # ... and really moved neurons
    torch.testing.assert_close(weight_stat_features(permuted), weight_stat_features(model), rtol=0, atol=1e-6)
    with torch.no_grad():
        model[2].weight[0, 0] += 1.0
    assert not torch.allclose(weight_stat_features(permuted), weight_stat_features(model))
