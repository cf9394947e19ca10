"""Attention with the heads merged into the batch for ``bmm`` (``(B, H, T, D) -> (B * H, T, D)``, and
nn.MultiheadAttention's ``(T, B * H, D)`` view): the graph of the ``scaled_dot_product_attention`` twin on
``(B, H, T, D)``, independent of the batch size, sound in float64; mismatched merges are refused."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.schema import EdgeType, NodeKind

from .graph_checks import assert_falls_back, assert_function_preserved, assert_round_trip, assert_same_up_to_relabelling

E, H, T = 8, 2, 5
D = E // H


class Block(nn.Module):
    """A residual attention block; ``style`` says how the heads reach the product: ``"bmm"`` merges them into
    the batch, ``(B * H, T, D)``; ``"mha"`` as nn.MultiheadAttention does, through ``(T, B * H, D)``;
    ``"sdpa"`` is the twin on ``(B, H, T, D)``. ``causal`` adds a ``-inf`` mask above the diagonal."""

    def __init__(self, style="bmm", causal=False):
        super().__init__()
        self.style, self.causal = style, causal
        self.embed, self.norm = nn.Linear(3, E), nn.LayerNorm(E)
        self.q, self.k, self.v, self.proj = (nn.Linear(E, E) for _ in range(4))
        self.head = nn.Linear(E, 2)
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).triu(1))

    def _heads(self, z, b, t):
        if self.style == "mha":
            return z.transpose(0, 1).contiguous().view(t, b * H, D).transpose(0, 1)  # (B * H, T, D)
        z = z.view(b, t, H, D).transpose(1, 2)  # (B, H, T, D)
        return z if self.style == "sdpa" else z.reshape(b * H, t, D)

    def forward(self, x):
        h = self.embed(x)
        b, t, _ = h.shape
        n = self.norm(h)
        q, k, v = (self._heads(f(n), b, t) for f in (self.q, self.k, self.v))
        if self.style == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, D)
            o = o.transpose(1, 2).reshape(b, t, E)
        else:
            a = torch.bmm(q, k.transpose(1, 2)) / D ** 0.5  # (B * H, T, T)
            if self.causal:
                a = a.masked_fill(self.mask, float("-inf"))
            o = torch.bmm(a.softmax(-1), v)  # (B * H, T, D)
            if self.style == "mha":
                o = o.transpose(0, 1).contiguous().view(t, b, E).transpose(0, 1)
            else:
                o = o.view(b, H, t, D).transpose(1, 2).reshape(b, t, E)
        return self.head(h + self.proj(o))


def _x(batch=2, dtype=torch.float32):
    return torch.randn(batch, T, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _pair(style, causal=False, seed=0):
    torch.manual_seed(seed)
    model = Block(style, causal).eval()
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.normal_()
    twin = Block("sdpa", causal).eval()
    twin.load_state_dict(model.state_dict())
    return model, twin


def _graphs_equal(g1, g2):
    assert g1.keys() == g2.keys()
    for key in g1.keys():
        a, b = g1[key], g2[key]
        if isinstance(a, torch.Tensor):
            assert a.shape == b.shape and torch.equal(a, b), f"{key} differs from the sdpa twin's"
        elif key != "input_spec":
            assert a == b, key


@pytest.mark.parametrize("method", ["fx", "export"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("style", ["bmm", "mha"])
def test_merged_heads_give_the_graph_of_the_sdpa_twin(style, causal, method):
    model, twin = _pair(style, causal)
    x = _x()
    with torch.no_grad():  # the twin computes the same function (the comparison checks itself)
        assert torch.allclose(model(x), twin(x), atol=1e-6)
    g = nngraph.to_graph(model, x, method=method)
    _graphs_equal(g, nngraph.to_graph(twin, x, method=method))
    head = NodeKind.CAUSAL_HEAD if causal else NodeKind.HEAD
    assert int((g.node_kind == head).sum()) == H and int((g.node_kind == NodeKind.ATTENDED).sum()) == E


def test_the_twin_comparison_can_fail():
    model, _ = _pair("bmm", causal=True)
    _, twin = _pair("bmm", causal=False)
    with pytest.raises(AssertionError):
        _graphs_equal(nngraph.to_graph(model, _x()), nngraph.to_graph(twin, _x()))


@pytest.mark.parametrize("style", ["bmm", "mha"])
def test_the_graph_does_not_depend_on_the_batch_size(style):
    """With one batch entry the merged axis is just the heads; with three it merges three entries."""
    model, _ = _pair(style)
    graphs = [nngraph.to_graph(model, _x(batch)) for batch in (1, 2, 3)]
    for g in graphs[1:]:
        _graphs_equal(graphs[0], g)


@pytest.mark.parametrize("style", ["bmm", "mha"])
def test_merged_heads_are_sound_under_random_permutations_in_float64(style):
    model = _pair(style, seed=1)[0].double()
    x = _x(dtype=torch.float64)
    report = nngraph.verify(model, x)
    assert report.ok and report.moved_fraction > 0.5, report
    g = assert_round_trip(model, x)
    heads = torch.nonzero(g.node_kind == NodeKind.HEAD).reshape(-1)
    swapped = False
    for seed in range(4):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), (x,))
        assert_function_preserved(model, permuted, x)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)
        swapped |= not torch.equal(perm[heads], heads)
    assert swapped  # whole heads moved at least once


class Probe(nn.Module):
    """``Block("bmm")``'s projections, with ``fn(q, k, v) -> (B * H, T, D)`` in place of the attention."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.q, self.k, self.v, self.proj = (nn.Linear(E, E) for _ in range(4))

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (f(x).view(b, t, H, D).transpose(1, 2).reshape(b * H, t, D) for f in (self.q, self.k, self.v))
        o = self.fn(q, k, v)
        return self.proj(o.view(b, H, t, D).transpose(1, 2).reshape(b, t, E))


def _attend(q, k, v):
    return torch.bmm(torch.bmm(q, k.transpose(1, 2)).softmax(-1), v)


@pytest.mark.parametrize("fn, match", [
    (lambda q, k, v: _attend(q, k, v.roll(1, 0)), "4 heads"),  # values of the neighbouring head
    (lambda q, k, v: torch.tanh(q), "merged with 2 batch entries"),
    (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), "merged with 2 batch entries"),
    (lambda q, k, v: torch.bmm(torch.bmm(q, k.transpose(1, 2)).softmax(-1) + torch.zeros(2 * H, T, T), v),
     None),  # adding a constant after the softmax
])
def test_what_breaks_the_merged_heads_falls_back_by_name(fn, match):
    model = Probe(fn)
    lines = assert_falls_back(model, torch.randn(2, T, E), match=match, method="fx")
    assert any("fx node '" in line for line in lines), lines


def test_a_key_whose_heads_are_swapped_inside_each_batch_entry_is_paired_as_it_is():
    """Head ``h`` of the query meets head ``H - 1 - h`` of the key: the graph pairs those neurons (and the
    heads, no longer one block of query, key and value, are fixed), so it stays sound."""
    torch.manual_seed(0)
    model = Probe(lambda q, k, v: _attend(q, k.view(2, H, T, D).flip(1).reshape(2 * H, T, D), v)).double()
    x = torch.randn(2, T, E, dtype=torch.float64)
    assert nngraph.verify(model, x).ok
    layout = nngraph.build_layout(model, (x,))
    q, k = layout.module_nodes["q"], layout.module_nodes["k"]
    g = nngraph.to_graph(model, x)
    src, dst = g.edge_index[:, g.edge_type == int(EdgeType.QK_PAIR)]
    pairs = dict(zip(src.tolist(), dst.tolist()))
    assert all(pairs[int(q[j])] == int(k[(j + D) % E]) for j in range(E))


def test_a_model_returning_merged_heads_is_refused():
    class Returns(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(E, E)

        def forward(self, x):
            b, t, _ = x.shape
            return self.q(x).view(b, t, H, D).transpose(1, 2).reshape(b * H, t, D)

    with pytest.raises(nngraph.UnsupportedError, match="merged with the batch"):
        nngraph.to_graph(Returns(), torch.randn(2, T, E))
