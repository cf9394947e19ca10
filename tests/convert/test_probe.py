import pytest
import torch
from torch import nn

import nngraph
from nngraph.convert import probe_features
from nngraph.schema import NodeKind, NodeType


def test_probe_reads_inputs_hidden_values_and_outputs():
    m = nn.Sequential(nn.Linear(2, 4), nngraph.Sine(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    p = probe_features(m, x)
    g = nngraph.to_graph(m)
    assert p.shape == (g.num_nodes, 5)
    assert torch.equal(p[g.node_type == NodeType.INPUT], x.t())
    assert torch.allclose(p[g.node_type == NodeType.OUTPUT], m(x).t())
    with torch.no_grad():
        hidden1 = torch.sin(30 * m[0](x))  # after the activation recorded on the layer's neurons
    assert torch.allclose(p[2:6], hidden1.t())


def _equivariant(model, x, seed=0):
    p = probe_features(model, x)
    permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), x)
    assert not torch.equal(perm, torch.arange(perm.numel()))
    assert torch.allclose(probe_features(permuted, x)[perm], p, atol=1e-12)
    return p


def test_probe_permutes_with_the_nodes_of_a_residual_mlp():
    from .test_structural import ResidualMLP

    torch.manual_seed(0)
    m = ResidualMLP().double()
    p = _equivariant(m, torch.randn(6, 3, dtype=torch.float64))
    sums = nngraph.to_graph(m).node_kind == NodeKind.SUM
    assert p[sums].abs().sum() > 0


def test_probe_of_a_cnn_averages_over_pixels():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.Tanh(),
                        nn.Flatten(), nn.Linear(5 * 6 * 6, 3)).double()
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    p = _equivariant(cnn, x)
    conv1 = nngraph.build_layout(cnn, (x,)).module_nodes["0"]
    with torch.no_grad():
        expected = torch.relu(cnn[0](x)).mean((2, 3))  # (P, C)
    assert torch.allclose(p[conv1], expected.t())


def test_probe_refuses_models_reached_through_export():
    from .test_export import ShapeBranching

    m, x = ShapeBranching(), torch.randn(3, 2)
    with pytest.raises(nngraph.UnsupportedError, match="torch.fx"):
        probe_features(m, x, nngraph.build_layout(m, (x,)))
