"""Softmax and log-softmax written out by hand (``exp(x - max) / sum``, ``x - logsumexp``, ``log_softmax(..).exp()``):
the same graph as the ``torch.softmax`` twin, over the neurons and over the key positions of attention scores,
sound in float64, and refused wherever the arithmetic is not exactly that softmax."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import nngraph
from nngraph.convert import trace
from nngraph.convert.softmax_patterns import fold_hand_written_softmax
from nngraph.schema import NodeKind

from .graph_checks import assert_falls_back, assert_sound_under_random_permutations

E, H, T = 8, 2, 5
D = E // H


def _amax(a, d):
    e = (a - a.amax(d, keepdim=True)).exp()
    return e / e.sum(d, keepdim=True)


def _max_values(a, d):
    e = torch.exp(a - a.max(dim=d, keepdim=True).values.detach())
    return e / torch.sum(e, dim=d, keepdim=True)


def _max_item(a, d):
    e = torch.exp(a - torch.max(a, d, True)[0])
    return torch.div(e, e.sum(d, True))


def _unshifted(a, d):
    e = a.exp()
    return e / e.sum(d, keepdim=True)


def _log_softmax_exp(a, d):
    return a.log_softmax(d).exp()


def _logsumexp_exp(a, d):
    return torch.exp(a - torch.logsumexp(a, d, keepdim=True))


def _log_sum_exp_by_hand_exp(a, d):
    y = a - a.amax(d, keepdim=True)
    return (y - y.exp().sum(d, keepdim=True).log()).exp()


#: ways of writing softmax(a, d) by hand; "twin" is the library call they must match
SOFTMAXES = {"amax": _amax, "max_values": _max_values, "max_item": _max_item, "unshifted": _unshifted,
             "log_softmax_exp": _log_softmax_exp, "logsumexp_exp": _logsumexp_exp,
             "log_sum_exp_by_hand_exp": _log_sum_exp_by_hand_exp}


def _twin(a, d):
    return torch.softmax(a, d)


class Gate(nn.Module):
    """A softmax gate over 6 hidden neurons, then log-probabilities (also possibly by hand) of 3 classes."""

    def __init__(self, softmax=_twin, log_softmax=None):
        super().__init__()
        self.softmax, self.log_softmax = softmax, log_softmax
        self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        gate = self.softmax(self.a(x), -1)
        out = self.c(torch.tanh(self.b(gate)) + gate)
        return F.log_softmax(out, -1) if self.log_softmax is None else self.log_softmax(out)


class Attention(nn.Module):
    """One pre-norm attention block of ``H`` heads whose attention weights are ``softmax(q k^T * scale, -1)``
    (``softmax`` spells them; ``sdpa=True`` calls ``scaled_dot_product_attention`` instead)."""

    def __init__(self, softmax=_twin, sdpa=False):
        super().__init__()
        self.softmax, self.sdpa = softmax, sdpa
        self.embed, self.norm = nn.Linear(3, E), nn.LayerNorm(E)
        self.q, self.k, self.v, self.proj = (nn.Linear(E, E) for _ in range(4))
        self.head = nn.Linear(E, 2)

    def forward(self, x):
        h = self.embed(x)
        b, t, _ = h.shape
        q, k, v = (f(self.norm(h)).view(b, t, H, D).transpose(1, 2) for f in (self.q, self.k, self.v))  # (B, H, T, D)
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            o = self.softmax(q @ k.transpose(-2, -1) * D ** -0.5, -1) @ v  # (B, H, T, D)
        h = h + self.proj(o.transpose(1, 2).reshape(b, t, E))
        return self.head(h)


def _pair(cls, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = cls(**kwargs).eval()
    twin = cls(**({"sdpa": True} if cls is Attention else {})).eval()
    twin.load_state_dict(model.state_dict())
    return model, twin


def _gate_x(dtype=torch.float32):
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _seq_x(dtype=torch.float32):
    return torch.randn(2, T, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _graphs_equal(g1, g2):
    assert g1.keys() == g2.keys()
    for key in g1.keys():
        a, b = g1[key], g2[key]
        if isinstance(a, torch.Tensor):
            assert a.shape == b.shape and torch.equal(a, b), f"{key} differs from the twin's"
        else:
            assert a == b, key


@pytest.mark.parametrize("method", ["fx", "export"])
@pytest.mark.parametrize("style", sorted(SOFTMAXES))
def test_hand_written_softmax_over_neurons_gives_the_graph_of_torch_softmax(style, method):
    model, twin = _pair(Gate, softmax=SOFTMAXES[style])
    x = _gate_x()
    with torch.no_grad():  # the comparison checks itself: the two compute one function
        assert torch.allclose(model(x), twin(x), atol=1e-6)
    g = nngraph.to_graph(model, x, method=method)
    _graphs_equal(g, nngraph.to_graph(twin, x, method=method))
    assert int((g.node_kind == NodeKind.SOFTMAX).sum()) == 6


@pytest.mark.parametrize("method", ["fx", "export"])
@pytest.mark.parametrize("style", sorted(SOFTMAXES))
def test_hand_written_softmax_of_attention_scores_gives_the_graph_of_sdpa(style, method):
    model, twin = _pair(Attention, softmax=SOFTMAXES[style])
    x = _seq_x()
    with torch.no_grad():
        assert torch.allclose(model(x), twin(x), atol=1e-6)
    g = nngraph.to_graph(model, x, method=method)
    _graphs_equal(g, nngraph.to_graph(twin, x, method=method))
    assert int((g.node_kind == NodeKind.HEAD).sum()) == H and int((g.node_kind == NodeKind.ATTENDED).sum()) == E


@pytest.mark.parametrize("log_softmax", [
    lambda o: o - o.logsumexp(-1, keepdim=True),
    lambda o: (lambda y: y - y.exp().sum(-1, keepdim=True).log())(o - o.max(-1, keepdim=True)[0]),
])
def test_hand_written_log_softmax_gives_log_softmax_nodes(log_softmax):
    model, twin = _pair(Gate, log_softmax=log_softmax)
    x = _gate_x()
    with torch.no_grad():
        assert torch.allclose(model(x), twin(x), atol=1e-6)
    g = nngraph.to_graph(model, x)
    _graphs_equal(g, nngraph.to_graph(twin, x))
    assert int((g.node_kind == NodeKind.LOG_SOFTMAX).sum()) == 3


@pytest.mark.parametrize("cls, make_x", [(Gate, _gate_x), (Attention, _seq_x)], ids=["neurons", "attention"])
@pytest.mark.parametrize("style", ["amax", "log_softmax_exp"])
def test_hand_written_softmax_is_sound_under_random_permutations_in_float64(cls, make_x, style):
    torch.manual_seed(1)
    model = cls(softmax=SOFTMAXES[style]).double().eval()
    x = make_x(torch.float64)
    assert_sound_under_random_permutations(model, x)


def _folded_targets(model, x):
    gm, _ = trace(model, (x,), method="fx")
    return [n.target for n in gm.graph.nodes if n.op in ("call_function", "call_method")]


def test_folding_leaves_no_arithmetic_behind_and_keeps_what_others_read():
    targets = _folded_targets(Gate(softmax=_max_item), _gate_x())
    assert torch.softmax in targets and not {"exp", "amax", "sum", torch.exp, torch.max} & set(targets)

    def reused(a, d):  # the shifted exponentials are read twice: the sum keeps them, the max goes to the fallback
        e = (a - a.amax(d, keepdim=True)).exp()
        return e / e.sum(d, keepdim=True) + e

    targets = _folded_targets(Gate(softmax=reused), _gate_x())
    assert torch.softmax in targets and {"amax", "exp"} <= set(targets)
    assert_falls_back(Gate(softmax=reused), _gate_x(), match="amax over dimension 1, which holds the neurons")


def test_the_folded_graph_computes_what_the_model_computes():
    model = Attention(softmax=_log_sum_exp_by_hand_exp).double().eval()
    x = _seq_x(torch.float64)
    gm, _ = trace(model, (x,), method="fx")
    with torch.no_grad():
        assert torch.allclose(gm(x), model(x), atol=1e-12, rtol=0)


NOT_A_SOFTMAX = {
    # the shift is in the numerator only: softmax(a) * exp(-max), not a softmax
    "shift_in_numerator_only": (lambda a, d: (a - a.amax(d, keepdim=True)).exp() / a.exp().sum(d, keepdim=True),
                                "amax over dimension"),
    # the sum runs over the batch (positions), the max over the neurons
    "sum_over_another_axis": (lambda a, d: (lambda e: e / e.sum(0, keepdim=True))((a - a.amax(d, keepdim=True)).exp()),
                              "amax over dimension"),
    # the maxima of the rows broadcast along the neurons of a square batch
    "max_without_keepdim": (lambda a, d: (lambda e: e / e.sum(d, keepdim=True))((a - a.amax(d)).exp()),
                            "amax over dimension"),
    # the exponentials summed without keepdim broadcast along the neurons too
    "sum_without_keepdim": (lambda a, d: (lambda e: e / e.sum(d))((a - a.amax(d, keepdim=True)).exp()),
                            "amax over dimension"),
    # over the batch: each neuron alone
    "softmax_over_the_batch": (lambda a, d: _amax(a, 0), r"softmax \(written out by hand.*: seen through"),
}


@pytest.mark.parametrize("case", sorted(NOT_A_SOFTMAX))
def test_arithmetic_that_is_not_exactly_a_softmax_falls_back_by_name(case):
    fn, match = NOT_A_SOFTMAX[case]
    model, twin = _pair(Gate, softmax=fn)
    x = torch.randn(6, 4)  # a square batch: (6, 6) hidden activations
    with torch.no_grad():
        assert not torch.allclose(model(x), twin(x))  # the case is not a softmax
    lines = assert_falls_back(model, x, match=match, method="fx")
    assert any("fx node '" in line for line in lines), lines


def test_softmax_over_the_query_positions_written_by_hand_falls_back():
    model = Attention(softmax=lambda a, d: _amax(a, -2))
    assert_falls_back(model, _seq_x(), match="written out by hand.*query positions")


def test_fold_counts_each_pattern_once():
    model = Gate(softmax=_amax, log_softmax=lambda o: o - o.logsumexp(-1, keepdim=True))
    tracer = fx.Tracer()
    gm = fx.GraphModule(model, tracer.trace(model))
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(gm).propagate(_gate_x())
    assert fold_hand_written_softmax(gm) == 2
    assert fold_hand_written_softmax(gm) == 0
