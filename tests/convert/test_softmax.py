"""Softmax / log-softmax over the neurons of an activation: SOFTMAX / LOG_SOFTMAX nodes tied to their inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.schema import EdgeType, NodeKind, NodeType
from nngraph.testing import assert_equivariant, assert_invariant

from .graph_checks import (
    assert_falls_back,
    assert_function_preserved,
    assert_round_trip,
    assert_same_up_to_relabelling,
    edge_dict,
)


class Mixture(nn.Module):
    """Hidden softmax over 6 neurons (a mixture of experts' gate), then log-probabilities of 3 classes."""

    def __init__(self, style="function"):
        super().__init__()
        self.style = style
        self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.soft, self.log = nn.Softmax(dim=-1), nn.LogSoftmax(dim=1)

    def forward(self, x):
        h = self.a(x)
        gate = self.soft(h) if self.style == "module" else h.softmax(-1)
        h = torch.tanh(self.b(gate)) + gate
        out = self.c(h)
        return self.log(out) if self.style == "module" else F.log_softmax(out, dim=1)


def _x(dtype=torch.float32):
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)


@pytest.mark.parametrize("method", ["fx", "export"])
@pytest.mark.parametrize("style", ["function", "module"])
def test_softmax_nodes_against_a_reference_loop(style, method):
    torch.manual_seed(0)
    model = Mixture(style)
    g = nngraph.to_graph(model, _x(), method=method)
    layout = nngraph.build_layout(model, (_x(),), method=method)
    a, c = layout.module_nodes["a"], layout.module_nodes["c"]
    soft = torch.nonzero(g.node_kind == NodeKind.SOFTMAX).reshape(-1)
    log = torch.nonzero(g.node_kind == NodeKind.LOG_SOFTMAX).reshape(-1)
    assert soft.numel() == 6 and log.numel() == 3
    edges = edge_dict(g)
    norm = {key for key in edges if key[2] == int(EdgeType.NORM)}
    expected = {(int(a[i]), int(soft[i]), int(EdgeType.NORM)) for i in range(6)}
    expected |= {(int(c[i]), int(log[i]), int(EdgeType.NORM)) for i in range(3)}
    assert norm == expected and all(edges[key].item() == 1.0 for key in norm)
    assert (g.node_type[log] == NodeType.OUTPUT).all() and (g.node_type[soft] == NodeType.HIDDEN).all()


@pytest.mark.parametrize("style", ["function", "module"])
def test_softmax_is_sound_round_trips_and_permutes(style):
    torch.manual_seed(1)
    model = Mixture(style).double().eval()
    x = _x(torch.float64)
    report = nngraph.verify(model, x)
    assert report.ok and report.moved_fraction > 0.3, report
    g = assert_round_trip(model, x)
    soft = torch.nonzero(g.node_kind == NodeKind.SOFTMAX).reshape(-1)
    moved = False
    for seed in range(3):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), (x,))
        assert_function_preserved(model, permuted, x)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)
        moved |= not torch.equal(perm[soft], soft)
    assert moved


def test_encoder_is_invariant_and_equivariant_on_softmax_graphs():
    torch.manual_seed(2)
    encoder = nngraph.NeuralGraphEncoder(4, hidden_dim=8, num_layers=2).double()
    model = Mixture()
    assert assert_invariant(encoder, model, (_x(torch.float64),), generator=torch.Generator().manual_seed(0)) < 1e-10
    errors = assert_equivariant(encoder, model, (_x(torch.float64),), generator=torch.Generator().manual_seed(1))
    assert max(errors.values()) < 1e-10


def test_a_permutation_that_moves_only_the_softmax_inputs_changes_the_function():
    """The tie is needed: softmax outputs must move with their inputs (the test can fail)."""
    torch.manual_seed(3)
    model = Mixture().double().eval()
    changed = Mixture().double().eval()
    changed.load_state_dict(model.state_dict())
    p = torch.tensor([1, 0, 2, 3, 4, 5])
    with torch.no_grad():  # permute a's rows but not what reads the softmax (b, and the residual)
        changed.a.weight.copy_(model.a.weight[p])
        changed.a.bias.copy_(model.a.bias[p])
    with pytest.raises(AssertionError):
        assert_function_preserved(model, changed, _x(torch.float64))


@pytest.mark.parametrize("fn, match", [
    (lambda h: h.softmax(1), r"softmax at fx node .*: seen through"),  # over the sequence, per neuron
    (lambda h: h.view(2, 5, 2, 3).softmax(-1).reshape(2, 5, 6), "heads"),  # within groups of neurons
    (lambda h: F.softmax(h), r"softmax at fx node .*: seen through"),  # no dim: over the batch, per neuron
], ids=["position axis", "heads", "without naming"])
def test_softmax_not_over_the_neurons_falls_back(fn, match):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.c = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.c(fn(self.a(x)))

    assert_falls_back(Model(), torch.randn(2, 5, 4), match=match, method="fx")


class Embedder(nn.Module):
    """A normalised embedding (CLIP's projection heads): F.normalize over the features, then a layer."""

    def __init__(self):
        super().__init__()
        self.a, self.c = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.c(F.normalize(torch.relu(self.a(x)), dim=-1))


@pytest.mark.parametrize("method", ["fx", "export"])
def test_l2_normalization_over_the_neurons(method):
    torch.manual_seed(4)
    model = Embedder().double().eval()
    x = _x(torch.float64)
    g = nngraph.to_graph(model, x, method=method)
    a = nngraph.build_layout(model, (x,), method=method).module_nodes["a"]
    normed = torch.nonzero(g.node_kind == NodeKind.L2_NORMALIZED).reshape(-1)
    norm = {key for key in edge_dict(g) if key[2] == int(EdgeType.NORM)}
    assert norm == {(int(a[i]), int(normed[i]), int(EdgeType.NORM)) for i in range(6)}
    report = nngraph.verify(model, x, method=method)
    assert report.ok and report.moved_fraction > 0.5, report
    assert_round_trip(model, x)
