"""Random-symmetry augmentation keeps each model's function, moves probes with their neurons, keeps positional
features in place, and is what the broken twin (not the equivariant encoder) can learn from."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

import nngraph
from nngraph.zoo import build_model
from tasks.common.permutation import SymmetryAugmented

SPECS = [
    {"family": "mlp", "in_shape": [1, 8, 8], "hidden": [12, 10], "num_classes": 10, "act": "tanh", "norm": "layer",
     "dropout": 0.0},
    {"family": "resnet", "in_shape": [1, 8, 8], "width": 6, "blocks": 2, "stem_stride": 2, "kernel_size": 3,
     "act": "relu", "norm": "batch", "head": "gap", "dropout": 0.0, "num_classes": 10},
    {"family": "gated", "in_shape": [1, 8, 8], "dim": 8, "hidden": 12, "depth": 2, "act": "silu", "num_classes": 10},
]


def _pair(spec, seed=0):
    torch.manual_seed(seed)
    model = build_model(spec).double().eval()
    graph = nngraph.to_graph(model, torch.zeros(1, *spec["in_shape"], dtype=torch.float64))
    return model, graph


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["family"])
def test_augmented_graphs_are_the_same_function_with_moved_neurons(spec):
    model, graph = _pair(spec)
    n = graph.num_nodes
    graph.probe = torch.cat([torch.randn(n, 3, dtype=torch.float64), torch.arange(n, dtype=torch.float64)[:, None]], 1)
    data = SymmetryAugmented([graph], [model], fixed_columns=1)
    x = torch.randn(5, *spec["in_shape"], dtype=torch.float64)
    torch.manual_seed(1)
    moved = 0
    for _ in range(4):
        out = data[0]
        assert torch.equal(out.probe[:, -1], graph.probe[:, -1])  # positional column stays with the position
        # every other node feature moved together: the row of new node j is old node inverse[j]'s
        rows = {tuple(r.tolist()): i for i, r in enumerate(torch.cat([graph.x, graph.probe[:, :-1]], 1))}
        inverse = torch.tensor([rows[tuple(r.tolist())] for r in torch.cat([out.x, out.probe[:, :-1]], 1)])
        moved += int((inverse != torch.arange(n)).sum())
        permuted = nngraph.from_graph(out, model)
        torch.testing.assert_close(permuted(x), model(x), rtol=1e-10, atol=1e-12)
    assert moved > 0  # the test can fail: some neurons were relabelled


def test_only_the_broken_twin_sees_the_augmentation():
    model, graph = _pair(SPECS[0])
    graph.probe = torch.randn(graph.num_nodes, 4, dtype=torch.float64)  # all positional
    data = SymmetryAugmented([graph], [model], fixed_columns=4)
    torch.manual_seed(3)
    augmented = Batch.from_data_list([data[0]])
    plain = Batch.from_data_list([graph])
    torch.manual_seed(0)
    encoder = nngraph.NeuralGraphEncoder(3, hidden_dim=8, num_layers=2).double().eval()
    twin = nngraph.NeuralGraphEncoder(3, hidden_dim=8, num_layers=2, probe_dim=4).double().eval()
    with torch.no_grad():
        plain_probe = plain.clone()
        del plain_probe.probe
        aug_probe = augmented.clone()
        del aug_probe.probe
        torch.testing.assert_close(encoder(aug_probe), encoder(plain_probe), rtol=1e-10, atol=1e-12)
        assert not torch.allclose(twin(augmented), twin(plain), rtol=1e-6, atol=1e-8)


def test_mismatched_inputs_are_refused():
    model, graph = _pair(SPECS[0])
    other, _ = _pair(SPECS[2])
    with pytest.raises(ValueError, match="1 graphs but 2 models"):
        SymmetryAugmented([graph], [model, model])
    with pytest.raises(ValueError, match="nodes"):
        SymmetryAugmented([graph], [other])


def test_zoo_split_graphs_without_input_spec(clf_zoo):
    from nngraph.data.zoo_dataset import example_inputs_for_spec
    from tasks.common.splits import load_split

    split = load_split(clf_zoo, "train")
    assert all("input_spec" not in g for g in split.graphs)  # the zoo cache drops it
    data = SymmetryAugmented.of_split(split.graphs, split)
    torch.manual_seed(0)
    for i in range(len(split)):
        model = split.models[i].eval()
        inputs = example_inputs_for_spec(split.entries[i]["spec"])
        x = torch.randn_like(inputs[0])
        out = data[i]
        assert not torch.equal(out.x, split.graphs[i].x) or not torch.equal(out.edge_attr, split.graphs[i].edge_attr)
        with torch.no_grad():
            torch.testing.assert_close(nngraph.from_graph(out, model, inputs).eval()(x), model(x), rtol=1e-4, atol=1e-5)
