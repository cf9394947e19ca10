"""Sign-flip augmentation keeps the SIREN's function (and probes consistent) while changing its weights."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import nngraph
from nngraph.zoo import build_model, coordinate_grid, siren_spec
from nngraph.symmetry import SignFlip, flippable_nodes, sign_flip


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


# positive scales of relu / leaky_relu neurons, and both symmetries at once, on every family of the wild zoo

from nngraph.zoo import build_model as _build  # noqa: E402
from nngraph.symmetry import apply_scales, positive_scale, scalable_nodes, symmetry_augment  # noqa: E402

_IN = [1, 8, 8]
_WILD_SPECS = {
    "mlp_relu": {"family": "mlp", "in_shape": _IN, "num_classes": 10, "act": "relu", "dropout": 0.1,
                 "hidden": [12, 8], "norm": "none"},
    "mlp_relu_batchnorm": {"family": "mlp", "in_shape": _IN, "num_classes": 10, "act": "relu", "dropout": 0.0,
                           "hidden": [12, 8], "norm": "batch"},
    "mlp_tanh": {"family": "mlp", "in_shape": _IN, "num_classes": 10, "act": "tanh", "dropout": 0.0,
                 "hidden": [12, 8], "norm": "none"},
    "cnn_relu_flatten": {"family": "cnn", "in_shape": _IN, "num_classes": 10, "act": "relu", "dropout": 0.0,
                         "channels": [4, 6], "strides": [1, 2], "kernel_size": 3, "norm": "none", "head": "flatten"},
    "cnn_leaky_gap": {"family": "cnn", "in_shape": _IN, "num_classes": 10, "act": "leaky_relu", "dropout": 0.0,
                      "channels": [4, 6], "strides": [2, 2], "kernel_size": 5, "norm": "none", "head": "gap"},
    "resnet_relu": {"family": "resnet", "in_shape": _IN, "num_classes": 10, "act": "relu", "dropout": 0.0,
                    "width": 4, "blocks": 2, "stem_stride": 1, "kernel_size": 3, "norm": "none", "head": "gap"},
    "vit_relu": {"family": "vit", "in_shape": _IN, "num_classes": 10, "patch": 4, "dim": 8, "depth": 2, "heads": 2,
                 "mlp_ratio": 2, "act": "relu", "dropout": 0.0},
    "gated_relu": {"family": "gated", "in_shape": _IN, "num_classes": 10, "act": "relu", "dim": 8, "hidden": 8,
                   "depth": 2},
}


def _wild_model(name):
    torch.manual_seed(0)
    spec = dict(_WILD_SPECS[name])
    if spec["act"] == "leaky_relu":
        spec["act"] = "relu"
        model = _build(spec)
        for parent in model.modules():  # the zoo draws no leaky relu: swap it in where the relu modules are
            for child_name, child in parent.named_children():
                if isinstance(child, nn.ReLU):
                    setattr(parent, child_name, nn.LeakyReLU(0.1))
    else:
        model = _build(spec)
    model = model.double().eval()
    for m in model.modules():  # batch norm statistics that are not the identity
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


@pytest.mark.parametrize("name", sorted(_WILD_SPECS))
def test_symmetry_augmentation_preserves_every_wild_family(name):
    model = _wild_model(name)
    x = torch.randn(5, *_IN, dtype=torch.float64)
    graph = nngraph.to_graph(model, x)
    augmented = symmetry_augment(graph, p=0.5, max_factor=3.0, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(nngraph.from_graph(augmented, model)(x), model(x), rtol=1e-9, atol=1e-9)
    moved = (augmented.edge_attr != graph.edge_attr).any(-1)
    if name.endswith("batchnorm") or name.startswith("gated"):
        assert not scalable_nodes(graph).any()  # every relu neuron feeds its batch norm / its gate's product
    elif "relu" in name or "leaky" in name:
        assert scalable_nodes(graph).any() and moved.any(), name


def test_a_scale_of_a_neuron_the_rules_exclude_would_change_the_function():
    """The test checks itself: scaling every hidden neuron by its own factor, the excluded ones (the residual
    CNN's neurons that feed residual sums) included, is caught by the same comparison, and scaling a relu
    neuron by a negative number is too."""
    model = _wild_model("resnet_relu")
    x = torch.randn(5, *_IN, dtype=torch.float64)
    graph = nngraph.to_graph(model, x)
    hidden = graph.node_type == int(nngraph.schema.NodeType.HIDDEN)
    assert (hidden & ~scalable_nodes(graph)).any()
    draw = torch.rand(graph.num_nodes, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    wrong = apply_scales(graph, torch.where(hidden, draw, 1.0))
    with torch.no_grad():
        assert not torch.allclose(nngraph.from_graph(wrong, model)(x), model(x), atol=1e-6)
    negative = apply_scales(graph, torch.where(scalable_nodes(graph), -1.0, 1.0).double())
    with torch.no_grad():
        assert not torch.allclose(nngraph.from_graph(negative, model)(x), model(x), atol=1e-6)


def test_positive_scale_draws_within_its_range_and_refuses_a_shrinking_range():
    model = _wild_model("mlp_relu")
    graph = nngraph.to_graph(model)
    scaled = positive_scale(graph, max_factor=2.0, generator=torch.Generator().manual_seed(0))
    ok = scalable_nodes(graph)
    ratio = scaled.x[:, nngraph.schema.BIAS] / graph.x[:, nngraph.schema.BIAS]
    assert ok.sum() == 20 and bool(((ratio[ok] >= 0.5 - 1e-6) & (ratio[ok] <= 2.0 + 1e-6)).all())
    torch.testing.assert_close(ratio[~ok & (graph.x[:, nngraph.schema.BIAS] != 0)],
                               torch.ones_like(ratio[~ok & (graph.x[:, nngraph.schema.BIAS] != 0)]))
    with pytest.raises(ValueError, match="max_factor"):
        positive_scale(graph, max_factor=0.5)


def test_max_pooled_relu_neurons_scale():
    """max(s v) = s max(v) for s > 0: max-pooled relu neurons keep the symmetry that their sign lacks."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    graph = nngraph.to_graph(model, x)
    assert int(scalable_nodes(graph).sum()) == 7
    scaled = positive_scale(graph, max_factor=4.0, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(nngraph.from_graph(scaled, model)(x), model(x), rtol=1e-10, atol=1e-12)


def test_positional_columns_keep_their_sign():
    """The broken twin's positional features (the last probe columns) name a position: a flip or a scale of
    the neuron leaves them alone, and moves the value columns before them."""
    from tasks.common.features import add_positional_features

    model = _siren()
    inputs = torch.rand(5, 2) * 2 - 1
    graph = nngraph.to_graph(model)
    graph.probe = nngraph.probe_features(model, inputs)
    (twin,) = add_positional_features([graph], 3, seed=0)
    flipped = sign_flip(twin, p=1.0, fixed_columns=3)
    ok = flippable_nodes(graph)
    torch.testing.assert_close(flipped.probe[:, -3:], twin.probe[:, -3:], rtol=0, atol=0)
    torch.testing.assert_close(flipped.probe[ok, :5], -twin.probe[ok, :5], rtol=0, atol=0)
    assert (twin.probe[ok, -3:] != 0).any()  # hidden neurons do carry positional features
    scaled = apply_scales(twin, torch.where(ok, 2.0, 1.0), fixed_columns=3)
    torch.testing.assert_close(scaled.probe[:, -3:], twin.probe[:, -3:], rtol=0, atol=0)
    torch.testing.assert_close(scaled.probe[ok, :5], 2 * twin.probe[ok, :5], rtol=0, atol=0)


def test_symmetry_augmentation_of_a_mixed_batch_keeps_every_models_function():
    """One draw over a batch of every wild family at once (what training sees): each graph of the augmented
    batch still computes its own model's function."""
    from torch_geometric.data import Batch

    names = sorted(_WILD_SPECS)
    models = [_wild_model(n) for n in names]
    x = torch.randn(4, *_IN, dtype=torch.float64)
    graphs = [nngraph.to_graph(m, x) for m in models]
    augmented = symmetry_augment(Batch.from_data_list(graphs), p=0.5, max_factor=3.0,
                                 generator=torch.Generator().manual_seed(3))
    changed = 0
    for name, model, graph, before in zip(names, models, augmented.to_data_list(), graphs):
        changed += int((graph.edge_attr != before.edge_attr).any())
        with torch.no_grad():
            torch.testing.assert_close(nngraph.from_graph(graph, model)(x), model(x), rtol=1e-9, atol=1e-9,
                                       msg=lambda m, name=name: f"{name}: {m}")
    assert changed >= 5
