"""Keyword-only arguments of ``forward`` (``def forward(self, x, *, mask=None)``): nngraph converts
``model(*example_inputs)``, so they are traced at their defaults (the branches that call takes), and an
argument the call cannot leave out is refused by name."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nngraph
from nngraph.schema import NodeKind

from .graph_checks import assert_round_trip, assert_sound_under_random_permutations
from .traps import KeywordScale


class Plain(nn.Module):
    """What ``KeywordScale()(x)`` computes, with no arguments to choose from."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.c(torch.relu(self.a(x)) * torch.sigmoid(self.b(x)))


def _x(dtype=torch.float32):
    return torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _graphs_equal(g1, g2):
    assert g1.keys() == g2.keys()
    for key in g1.keys():
        a, b = g1[key], g2[key]
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, key


@pytest.mark.parametrize("method", ["fx", "export"])
def test_keyword_only_arguments_are_traced_at_their_defaults(method):
    torch.manual_seed(0)
    model = KeywordScale().eval()
    twin = Plain().eval()
    twin.load_state_dict(model.state_dict())
    x = _x()
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))
    _graphs_equal(nngraph.to_graph(model, x, method=method), nngraph.to_graph(twin, x, method=method))


def test_the_default_branch_is_the_one_in_the_graph():
    """With ``gate=False`` by default, ``model(x)`` never reads ``b``: the graph has the ungated branch (where fx
    tracing ``gate`` as an input would have taken the gated one), and ``b``'s parameters, read by nothing, are
    kept exactly on fixed PARAMETER nodes that no neuron reads."""

    class NoGate(KeywordScale):
        def forward(self, x, *, scale=None, gate: bool = False):
            return super().forward(x, scale=scale, gate=gate)

    assert nngraph.to_graph(KeywordScale(), _x()).num_nodes == 6 + 6 + 6 + 6 + 3  # inputs, a, b, product, c
    model = NoGate()
    g = assert_round_trip(model, _x())
    parameter = g.node_kind == NodeKind.PARAMETER
    assert int((~parameter).sum()) == 6 + 6 + 3  # inputs, a, c: no product, no b
    assert int(parameter.sum()) == 6 + 6  # b.weight's rows and b.bias's entries
    src, dst = g.edge_index
    assert torch.equal(parameter[src], parameter[dst]), "b's parameters are read by a neuron"
    assert nngraph.verify(model, _x()).ok


def test_a_model_with_keyword_defaults_is_sound_in_float64():
    torch.manual_seed(1)
    model = KeywordScale().double().eval()
    x = _x(torch.float64)
    g = assert_sound_under_random_permutations(model, x)
    assert nngraph.from_graph(g, model) is not None  # from the recorded input spec, no example inputs


class Required(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 3)

    def forward(self, x, *, mask):
        return self.a(x) * mask


class TensorDefault(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 3)

    def forward(self, x, *, shift=torch.zeros(3)):
        return self.a(x) + shift


class TwoPositional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 3), nn.Linear(6, 3)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


@pytest.mark.parametrize("method", ["fx", "export", "auto"])
@pytest.mark.parametrize("cls, match", [
    (Required, "keyword-only argument 'mask' without a default"),
    (TensorDefault, "keyword-only argument 'shift' with a default of type Tensor"),
    (TwoPositional, "needs argument 'y', and only 1 example input"),
])
def test_an_argument_the_call_cannot_leave_out_is_refused_by_name(cls, match, method):
    with pytest.raises(nngraph.UnsupportedError, match=match) as error:
        nngraph.to_graph(cls(), _x(), method=method)
    assert f"the model ({cls.__name__})" in str(error.value)


def test_two_positional_inputs_still_convert():
    g = nngraph.to_graph(TwoPositional(), (_x(), _x()))
    assert g.input_spec == [[[4, 6], "float32"], [[4, 6], "float32"]]
