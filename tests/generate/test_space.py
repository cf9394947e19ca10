"""WeightSpace: graphs <-> parameter vectors, exactly; other architectures refused in one line."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nngraph
from nngraph.generate import WeightSpace

from .zoo import INPUTS, cnn, mlp


@pytest.mark.parametrize("make", [mlp, cnn])
def test_vectors_hold_every_parameter_and_write_back_exactly(make):
    model = make(0)
    space = WeightSpace.of(model, INPUTS)
    assert space.dim == sum(t.numel() for t in nngraph.gather_params(nngraph.to_graph(model, INPUTS), model).values())
    assert space.dim == sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for n, b in model.named_buffers() if b.is_floating_point())  # BatchNorm's running statistics
    flat = space.flatten([nngraph.to_graph(model, INPUTS)])  # (1, D)
    other = make(1)
    graph = space.graphs(flat)[0]
    rebuilt = nngraph.from_graph(graph, other)  # the weights of `model` in a module built from another seed
    for (name, a), b in zip(model.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.equal(a, b), name
    torch.testing.assert_close(rebuilt(INPUTS), model(INPUTS), rtol=0, atol=0)


def test_groups_are_the_parameter_tensors():
    model = mlp(0)
    space = WeightSpace.of(model, INPUTS)
    flat = space.flatten([nngraph.to_graph(model, INPUTS)])[0]  # (D,)
    params = dict(model.named_parameters())
    assert set(space.names) == set(params)
    for g, name in enumerate(space.names):
        assert torch.equal(flat[space.groups == g].sort().values, params[name].detach().reshape(-1).sort().values)


def test_features_and_read_are_inverse_on_a_batch():
    space = WeightSpace.of(mlp(0), INPUTS)
    flat = torch.randn(3, space.dim, dtype=torch.float64)
    x, edge_attr = space.features(flat)  # (3 N, 5), (3 W, 1)
    assert x.shape == (3 * space.num_nodes, 5) and edge_attr.shape == (3 * space.num_entries, 1)
    assert torch.equal(space.read(x, edge_attr), flat)
    batch = nngraph.batch_graphs(space.graphs(flat))
    assert torch.equal(batch.x, x.to(batch.x.dtype)) and torch.equal(batch.edge_attr, edge_attr.to(batch.x.dtype))
    assert torch.equal(space.batch_fields(3)["edge_index"], batch.edge_index)
    assert torch.equal(space.flatten(batch), space.flatten(space.graphs(flat)))  # a Batch or a list


def test_another_architecture_is_a_one_line_error():
    space = WeightSpace.of(mlp(0), INPUTS)
    wider = nn.Sequential(nn.Flatten(), nn.Linear(16, 9), nn.ReLU(), nn.Linear(9, 6), nn.Tanh(), nn.Linear(6, 3))
    other_act = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.GELU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    for model in (wider, other_act, cnn(0)):
        with pytest.raises(nngraph.GraphMismatchError) as info:
            space.check(nngraph.to_graph(model, INPUTS))
        assert "\n" not in str(info.value) and "fitted on" in str(info.value)
    space.check(nngraph.to_graph(mlp(5), INPUTS))  # the same architecture, other weights
    space.check(nngraph.to_graph(mlp(5, torch.float64), INPUTS.double()))  # and another dtype


def test_state_round_trip():
    space = WeightSpace.of(cnn(0), INPUTS)
    again = WeightSpace.from_state(space.state())
    flat = torch.randn(2, space.dim)
    assert again.fingerprint == space.fingerprint
    for a, b in zip(space.graphs(flat), again.graphs(flat)):
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_attr, b.edge_attr)
