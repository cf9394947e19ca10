"""Sign-flip augmentation keeps the SIREN's function (and probes consistent) while changing its weights."""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch

import nngraph
from nngraph.zoo import build_model, coordinate_grid, siren_spec
from tasks.augment import SignFlip, flippable_nodes, sign_flip


def _siren(seed=0):
    torch.manual_seed(seed)
    return build_model(siren_spec(2, [8, 8], 1, 30.0))


def test_sign_flip_preserves_the_siren():
    model = _siren()
    graph = nngraph.to_graph(model)
    flipped = sign_flip(graph, p=0.5, generator=torch.Generator().manual_seed(0))
    assert int(flippable_nodes(graph).sum()) == 16  # every hidden neuron
    changed = (flipped.edge_attr != graph.edge_attr).any(-1)
    assert 0 < int(changed.sum()) < graph.num_edges  # some weights negated, not all
    coords = coordinate_grid(16, 16)
    torch.testing.assert_close(nngraph.from_graph(flipped, model)(coords), model(coords), rtol=0, atol=1e-5)


def test_flipping_only_incoming_weights_would_change_the_function():
    """The test checks itself: a wrong flip (outgoing weights left alone) is detected by the same comparison."""
    model = _siren()
    graph = nngraph.to_graph(model)
    wrong = graph.clone()
    hidden = flippable_nodes(graph)
    into_hidden = hidden[graph.edge_index[1]]
    wrong.edge_attr = torch.where(into_hidden.unsqueeze(-1), -graph.edge_attr, graph.edge_attr)
    coords = coordinate_grid(16, 16)
    assert not torch.allclose(nngraph.from_graph(wrong, model)(coords), model(coords), atol=1e-3)


def test_sign_flip_on_a_batch_flips_probes_consistently():
    models = [_siren(s) for s in range(3)]
    inputs = torch.rand(5, 2) * 2 - 1
    graphs = []
    for m in models:
        g = nngraph.to_graph(m)
        g.probe = nngraph.probe_features(m, inputs)
        graphs.append(g)
    flipped = sign_flip(Batch.from_data_list(graphs), p=0.5, generator=torch.Generator().manual_seed(3))
    for m, g in zip(models, flipped.to_data_list()):
        edited = nngraph.from_graph(g, m)
        torch.testing.assert_close(edited(inputs), m(inputs), rtol=0, atol=1e-5)
        torch.testing.assert_close(g.probe, nngraph.probe_features(edited, inputs), rtol=0, atol=1e-5)


def test_relu_neurons_are_not_flipped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    graph = nngraph.to_graph(model)
    assert not flippable_nodes(graph).any()
    assert torch.equal(sign_flip(graph, p=1.0).edge_attr, graph.edge_attr)


def _tanh_cnn(pool: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), pool, nn.Conv2d(4, 3, 3, padding=1), nn.Tanh(),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double()


def test_max_pooled_neurons_are_not_flipped_average_pooled_ones_are():
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    for pool, flippable in ((nn.MaxPool2d(2), 3), (nn.AvgPool2d(2), 7)):
        model = _tanh_cnn(pool)
        graph = nngraph.to_graph(model, x)
        assert int(flippable_nodes(graph).sum()) == flippable, pool
        flipped = sign_flip(graph, p=1.0)
        with torch.no_grad():
            torch.testing.assert_close(nngraph.from_graph(flipped, model)(x), model(x), rtol=0, atol=1e-12)


def test_negating_a_max_pooled_neuron_would_change_the_function():
    """The test checks itself: flipping the max-pooled neurons too is caught by the same comparison."""
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    model = _tanh_cnn(nn.MaxPool2d(2))
    graph = nngraph.to_graph(model, x)
    pooled = (graph.pool != 0).any(-1) & (graph.node_kind == 2)  # the first conv's channels
    sign = torch.where(pooled, -1.0, 1.0).double()
    wrong = graph.clone()
    from nngraph.kernels import expand_to_entries
    factor = expand_to_entries(sign[graph.edge_index[0]] * sign[graph.edge_index[1]], graph.kernel_shape,
                               graph.edge_attr.size(0))
    wrong.edge_attr = graph.edge_attr * factor.unsqueeze(-1)
    wrong.x = graph.x.clone()
    wrong.x[:, 0] = graph.x[:, 0] * sign
    with torch.no_grad():
        assert not torch.allclose(nngraph.from_graph(wrong, model)(x), model(x), atol=1e-3)


def test_sign_flip_transform_is_the_function():
    graph = nngraph.to_graph(_siren())
    a = SignFlip(0.5, torch.Generator().manual_seed(3))(graph)
    b = sign_flip(graph, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a.edge_attr, b.edge_attr) and torch.equal(a.x, b.x) and repr(SignFlip()) == "SignFlip(p=0.5)"
