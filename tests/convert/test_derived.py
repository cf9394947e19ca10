"""Layers whose weight is computed from parameters in forward (nngraph/convert/derived.py): a derivation that
commutes with relabelling the layer's neurons keeps their symmetry, one that does not keeps them fixed. Every
model is permuted for real first (its outputs must not change), then the graph and the encoder are checked, in
float64."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

import nngraph
from nngraph.convert.repair import repair
from nngraph.schema import NORM_WEIGHT, NodeKind
from nngraph.testing import assert_equivariant, assert_invariant

DERIVED = "its weight derived from parameters"


def weight_norm_mlp():
    return nn.Sequential(parametrizations.weight_norm(nn.Linear(4, 8)), nn.Tanh(),
                         parametrizations.weight_norm(nn.Linear(8, 6)), nn.ReLU(), nn.Linear(6, 3))


class WeightNormConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = parametrizations.weight_norm(nn.Conv2d(3, 6, 3, padding=1))
        self.b = parametrizations.weight_norm(nn.Conv2d(6, 5, 3, stride=2))
        self.c = nn.Linear(5, 2)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.tanh(self.a(x)))).mean((2, 3)))


class WSConv2d(nn.Conv2d):
    """Weight-standardised convolution with a gain per output channel (NFNet): ``gain * (w - mean) / std``."""

    def __init__(self, *args, eps: float = 1e-5, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain, self.eps = nn.Parameter(torch.rand(self.out_channels, 1, 1, 1) + 0.5), eps

    def forward(self, x):
        w = self.weight
        mean, var = w.mean((1, 2, 3), keepdim=True), w.var((1, 2, 3), keepdim=True, unbiased=False)
        return F.conv2d(x, self.gain * (w - mean) / torch.sqrt(var + self.eps), self.bias, self.stride, self.padding)


class WSConvNet(nn.Module):
    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.a, self.b = WSConv2d(3, 6, 3, padding=1, eps=eps), WSConv2d(6, 4, 1, bias=False, eps=eps)
        self.c = nn.Linear(4, 2)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))).mean((2, 3)))


class BatchNormStandardised(nn.Module):
    """BiT's weight standardisation: ``F.batch_norm`` over the kernel viewed as ``(1, C_out, -1)``."""

    def __init__(self):
        super().__init__()
        self.a, self.c = nn.Conv1d(3, 6, 3), nn.Linear(6, 2)

    def forward(self, x):
        w = self.a.weight
        w = F.batch_norm(w.reshape(1, 6, -1), None, None, training=True, momentum=0.0, eps=1e-6).reshape_as(w)
        return self.c(torch.relu(F.conv1d(x, w, self.a.bias)).mean(-1))


class Derived(nn.Module):
    """``c(relu(F.linear(x, derive(w, g))))``, ``w`` (8, 4) and ``g`` (8, 1): ``derive`` is the test's."""

    def __init__(self, derive, scale: float = 1.0):
        super().__init__()
        self.derive = derive
        self.w, self.g = nn.Parameter(torch.randn(8, 4) * scale), nn.Parameter(torch.rand(8, 1) + 0.5)
        self.register_buffer("ramp", torch.arange(1.0, 9.0).view(8, 1), persistent=False)
        self.c = nn.Linear(8, 3)

    def forward(self, x):
        return self.c(torch.relu(F.linear(x, self.derive(self, self.w))))


def spiky_rows(w):
    """The identity on entries up to 50, the rows reversed where one exceeds it."""
    return torch.where(w.abs() > 50, w.flip(0), w)


torch.fx.wrap("spiky_rows")  # one fx node, rerun as a whole by the derivation's test


def _vec():
    return (torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),)


def _img():
    return (torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(0)),)


def _seq():
    return (torch.randn(2, 3, 9, generator=torch.Generator().manual_seed(0)),)


COMMUTING = {  # name -> (model, inputs, hidden neurons the derived layers make)
    "weight_norm_linear": (weight_norm_mlp, _vec, 8 + 6),
    "weight_norm_conv": (WeightNormConv, _img, 6 + 5),
    "standardised_conv_with_gain": (WSConvNet, _img, 6 + 4),
    "batch_norm_standardised_conv": (BatchNormStandardised, _seq, 6),
    "column_normalised": (lambda: Derived(lambda s, w: s.g * w / w.norm(dim=0, keepdim=True)), _vec, 8),
}
NOT_COMMUTING = {  # name -> model: a derivation that mixes, orders or scales the rows by their place
    "cumsum_over_rows": lambda: Derived(lambda s, w: torch.cumsum(w, 0)),
    "constant_per_row": lambda: Derived(lambda s, w: w * s.ramp),
    "first_row_subtracted": lambda: Derived(lambda s, w: s.g * (w - w[:1])),
    "rows_rolled": lambda: Derived(lambda s, w: torch.roll(s.g * w, 1, 0)),
}


def _derived_nodes(layout) -> torch.Tensor:
    names = [line.split("fx node '")[1].split("'")[0] for line in layout.fallbacks if DERIVED in line]
    return torch.cat([layout.module_nodes[n] for n in names]) if names else torch.zeros(0, dtype=torch.long)


def _permutable(layout) -> torch.Tensor:
    return torch.cat([g.rows.reshape(-1) for g in layout.symmetries]) if layout.symmetries else torch.zeros(0).long()


def _check_permuted_model(model, x, layout, seed: int) -> None:
    """Relabel the hidden neurons of the model itself: its outputs must not change."""
    model = model.double()
    x = tuple(t.double() for t in x)
    graph = layout.to_graph(model)
    perm = layout.random_node_permutation(torch.Generator().manual_seed(seed))
    moved = layout.from_graph(layout.permute_graph(graph, perm), model)
    changed = [n for (n, p), q in zip(model.named_parameters(), moved.parameters()) if not torch.equal(p, q)]
    assert changed, "the permutation moved no parameter"
    with torch.no_grad():
        assert (moved(*x) - model(*x)).abs().max() < 1e-10


@pytest.mark.parametrize("name", sorted(COMMUTING))
def test_a_commuting_derivation_keeps_the_layers_symmetry(name):
    build, inputs, derived = COMMUTING[name]
    torch.manual_seed(0)
    model, x = build().eval().double(), tuple(t.double() for t in inputs())
    report = nngraph.verify(model, x)
    assert report.ok and report.round_trip_error == 0.0, f"{name}: {report}"
    assert report.num_permutable == report.num_hidden, f"{name}: {report}"
    layout = nngraph.build_layout(model, x)
    assert not any(line.startswith("check:") for line in layout.fallbacks), layout.fallbacks
    nodes = _derived_nodes(layout)
    assert nodes.numel() == derived and torch.isin(nodes, _permutable(layout)).all()
    graph = layout.to_graph(model)
    assert (graph.op_code[nodes, 0] > 0).all() and (graph.node_kind == NodeKind.PARAMETER).sum() == 0
    back = nngraph.from_graph(graph, model)
    for (key, p), q in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(p, q), f"{name}: {key} changed in the round trip"
    for seed in range(3):
        _check_permuted_model(model, x, layout, seed)
    encoder = nngraph.NeuralGraphEncoder(4, hidden_dim=8, num_layers=2).double()
    assert assert_invariant(encoder, model, x, generator=torch.Generator().manual_seed(0)) < 1e-10
    errors = assert_equivariant(encoder, model, x, generator=torch.Generator().manual_seed(1))
    assert max(errors.values()) < 1e-10


@pytest.mark.parametrize("name", sorted(NOT_COMMUTING))
def test_a_derivation_that_does_not_commute_keeps_the_layer_fixed(name):
    torch.manual_seed(0)
    model, x = NOT_COMMUTING[name]().eval().double(), tuple(t.double() for t in _vec())
    with torch.no_grad():  # the test checks itself: permuting the rows of w does change the function
        swapped = Derived(model.derive).double()
        swapped.load_state_dict(model.state_dict())
        swapped.w.copy_(model.w.flip(0))
        swapped.g.copy_(model.g.flip(0))
        swapped.c.weight.copy_(model.c.weight.flip(1))
        assert (swapped(*x) - model(*x)).abs().max() > 1e-6
    report = nngraph.verify(model, x)
    assert report.ok and report.round_trip_error == 0.0, f"{name}: {report}"
    layout = nngraph.build_layout(model, x)
    assert not any(DERIVED in line for line in layout.fallbacks), layout.fallbacks
    assert report.num_permutable == 0, report  # the layer's 8 neurons are the model's only hidden ones
    assert (layout.to_graph(model).node_kind == NodeKind.PARAMETER).any()


def test_the_proof_fixes_a_derivation_the_sample_got_wrong():
    """``spiky_rows`` is the identity on the test's standard-normal draws and reverses the rows of the model's
    (scaled) weight: only the proof on the model catches it."""
    torch.manual_seed(0)
    model, x = Derived(lambda s, w: s.g * spiky_rows(w), scale=500.0).eval().double(), tuple(
        t.double() for t in _vec())
    unchecked = nngraph.build_layout(model, x, cache=False, check=False)
    assert any(DERIVED in line for line in unchecked.fallbacks)  # the sample alone was fooled ...
    graph = unchecked.to_graph(model)
    wrong = unchecked.from_graph(unchecked.permute_graph(graph, unchecked.random_node_permutation(
        torch.Generator().manual_seed(0))), model)
    with torch.no_grad():
        assert (wrong(*x) - model(*x)).abs().max() > 1e-3  # its claim is false
    assert not repair(model, unchecked, x).symmetries  # ... and the proof fixed it
    report = nngraph.verify(model, x)
    assert report.ok and report.num_permutable == 0, report


def test_the_gain_is_a_feature_of_its_neuron_and_reads_back():
    torch.manual_seed(0)
    model, x = weight_norm_mlp().eval(), _vec()
    layout = nngraph.build_layout(model, x)
    graph = layout.to_graph(model)
    first = layout.module_nodes["linear"]
    g = model[0].parametrizations.weight.original0
    assert torch.equal(graph.x[first, NORM_WEIGHT], g.detach().reshape(-1))
    edited = graph.clone()
    edited.x = graph.x.clone()
    edited.x[first, NORM_WEIGHT] += 1.0
    assert torch.equal(nngraph.from_graph(edited, model)[0].parametrizations.weight.original0, g + 1.0)


def test_two_derivations_never_give_one_graph():
    x = _img()
    torch.manual_seed(0)
    small, large = WSConvNet(eps=1e-5).eval(), WSConvNet(eps=1.0).eval()
    large.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert (small(*x) - large(*x)).abs().max() > 1e-4
    g_small, g_large = nngraph.to_graph(small, x), nngraph.to_graph(large, x)
    assert torch.equal(g_small.x, g_large.x) and torch.equal(g_small.edge_attr, g_large.edge_attr)
    conv = g_small.node_kind == NodeKind.CONV
    assert torch.equal(g_small.op_code[conv, 0], g_large.op_code[conv, 0])  # the same kind of derivation
    assert not (g_small.op_code[conv, 1] == g_large.op_code[conv, 1]).any()  # its constant differs
