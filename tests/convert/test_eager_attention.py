"""Attention written out by hand (q @ k^T, scale, mask, softmax, @ v): the same graph as its
scaled_dot_product_attention twin, sound, exact round trips, and symmetries the encoder respects."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.schema import EdgeType, NodeKind
from nngraph.testing import assert_equivariant, assert_invariant

from .graph_checks import (
    assert_falls_back,
    assert_function_preserved,
    assert_round_trip,
    assert_same_up_to_relabelling,
    edge_dict,
)

E, H, T = 8, 2, 5
D = E // H


class Block(nn.Module):
    """A pre-norm transformer block whose attention is written in one of several styles.

    ``style``: ``"timm"`` (fused qkv viewed as (B, T, 3, H, D), ``* scale`` after the product),
    ``"hf"`` (separate projections, ``view`` + ``transpose``), ``"einsum"``; ``sdpa=True`` is the twin (the
    same projections into ``scaled_dot_product_attention``).
    ``mask``: ``None``, ``"buffer"`` (a bool ``tril`` buffer, ``masked_fill``), ``"forward"`` (``tril`` of
    ones built in forward, ``masked_fill(mask == 0, -inf)``), ``"additive"`` (a float ``-inf`` mask added),
    ``"where"``. ``bias``: ``None``, ``"table"`` (Swin's parameter table gathered by a constant index),
    ``"embedding"`` (T5's embedding of relative positions). ``kv_heads``: key/value heads (grouped-query
    attention when fewer than ``H``; repeated with ``repeat_interleave``, or broadcast when 1).
    """

    def __init__(self, style="hf", mask=None, bias=None, kv_heads=H, scale=None, sdpa=False, expand=False):
        super().__init__()
        self.style, self.mask, self.bias_kind, self.kv, self.sdpa = style, mask, bias, kv_heads, sdpa
        self.expand = expand  # one key/value head expanded to H (Hugging Face's repeat_kv) instead of broadcast
        self.scale = D ** -0.5 if scale is None else scale
        self.norm = nn.LayerNorm(E)
        if style == "timm":
            self.qkv = nn.Linear(E, 3 * E)
        else:
            self.q, self.k, self.v = nn.Linear(E, E), nn.Linear(E, kv_heads * D), nn.Linear(E, kv_heads * D)
        self.proj = nn.Linear(E, E)
        self.fc1, self.fc2 = nn.Linear(E, 2 * E), nn.Linear(2 * E, E)
        self.embed, self.head = nn.Linear(3, E), nn.Linear(E, 2)
        self.attn_drop = nn.Dropout(0.1)
        self.register_buffer("tril", torch.tril(torch.ones(T, T, dtype=torch.bool)))
        if bias == "table":
            self.table = nn.Parameter(torch.randn(2 * T - 1, H))
            rel = torch.arange(T)[:, None] - torch.arange(T)[None] + T - 1  # (T, T) in [0, 2T - 2]
            self.register_buffer("index", rel.reshape(-1))
        elif bias == "embedding":
            self.rel = nn.Embedding(2 * T - 1, H)
            self.register_buffer("buckets", torch.arange(T)[:, None] - torch.arange(T)[None] + T - 1)

    def _bias(self):
        if self.bias_kind == "table":
            return self.table[self.index].view(T, T, H).permute(2, 0, 1).unsqueeze(0)  # (1, H, T, T)
        if self.bias_kind == "embedding":
            return self.rel(self.buckets).permute(2, 0, 1).unsqueeze(0)  # (1, H, T, T)
        return None

    def _qkv(self, x):
        b, t, c = x.shape
        if self.style == "timm":
            q, k, v = self.qkv(x).reshape(b, t, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
            return q, k, v
        q = self.q(x).view(b, t, H, D).transpose(1, 2)  # (B, H, T, D)
        k, v = (f(x).view(b, t, self.kv, D).transpose(1, 2) for f in (self.k, self.v))  # (B, H_kv, T, D)
        if 1 < self.kv < H:
            k, v = (z.repeat_interleave(H // self.kv, dim=1) for z in (k, v))
        return q, k, v

    def attention(self, x):
        q, k, v = self._qkv(x)
        bias = self._bias()
        causal = self.mask is not None
        if self.sdpa:
            gqa = self.kv == 1
            scale = None if self.scale == D ** -0.5 else self.scale
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=causal, scale=scale,
                                                  enable_gqa=gqa)
        if self.expand:  # (B, 1, T, D) -> (B, H, T, D): the same neurons on a position-like axis
            b, _, t, d = k.shape
            k, v = (z[:, :, None].expand(b, 1, H, t, d).reshape(b, H, t, d) for z in (k, v))
        if self.style == "einsum":
            a = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale
        else:
            a = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, T, T)
        if bias is not None:
            a = a + bias
        if self.mask == "buffer":
            a = a.masked_fill(~self.tril, float("-inf"))
        elif self.mask == "forward":
            a = a.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf"))  # export: folded by the walk
        elif self.mask == "additive":
            a = a + torch.full((T, T), float("-inf")).triu(1)
        elif self.mask == "where":
            a = torch.where(self.tril, a, torch.finfo(torch.float32).min)  # Hugging Face's "minus infinity"
        a = self.attn_drop(F.softmax(a, dim=-1))
        if self.style == "einsum":
            return torch.einsum("bhij,bhjd->bhid", a, v)
        return a @ v  # (B, H, T, D)

    def forward(self, x):
        h = self.embed(x)
        b, t, c = h.shape
        h = h + self.proj(self.attention(self.norm(h)).transpose(1, 2).reshape(b, t, c))
        h = h + self.fc2(F.gelu(self.fc1(h)))
        return self.head(h)


def _x(dtype=torch.float32):
    return torch.randn(2, T, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _randomized(model):
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.normal_()
    return model.eval()


def _pair(seed=0, **kwargs):
    """A model and its scaled_dot_product_attention twin with the same weights."""
    torch.manual_seed(seed)
    model = _randomized(Block(**kwargs))
    twin = Block(**kwargs, sdpa=True)
    twin.load_state_dict(model.state_dict())
    return model, twin.eval()


CASES = {
    "vit_timm": dict(style="timm"),
    "vit_hf": dict(style="hf"),
    "einsum": dict(style="einsum"),
    "causal_buffer": dict(mask="buffer"),
    "causal_in_forward": dict(mask="forward"),
    "causal_additive": dict(mask="additive"),
    "causal_where": dict(mask="where"),
    "swin_table_bias": dict(bias="table"),
    "t5_embedding_bias": dict(bias="embedding"),
    "t5_bias_causal": dict(bias="embedding", mask="buffer"),
    "grouped_query": dict(kv_heads=1 if H == 2 else H // 2),
    "multi_query_expanded": dict(kv_heads=1, expand=True),
    "scaled": dict(scale=0.3),
}


def _graphs_equal(g1, g2):
    assert g1.keys() == g2.keys()
    for key in g1.keys():
        a, b = g1[key], g2[key]
        if isinstance(a, torch.Tensor):
            assert a.shape == b.shape and torch.equal(a, b), f"{key} differs from the sdpa twin"
        else:
            assert a == b, key


# ----------------------------------------------------------------------- the sdpa twin


#: cases sdpa cannot express in one call nngraph converts (a learned bias and a causal mask together)
NO_TWIN = {"t5_bias_causal"}


@pytest.mark.parametrize("method", ["fx", "export"])
@pytest.mark.parametrize("case", sorted(set(CASES) - NO_TWIN))
def test_eager_attention_gives_the_graph_of_its_sdpa_twin(case, method):
    model, twin = _pair(**CASES[case])
    x = _x()
    with torch.no_grad():  # the twin computes the same function (the comparison checks itself)
        assert torch.allclose(model(x), twin(x), atol=1e-5)
    g1, g2 = nngraph.to_graph(model, x, method=method), nngraph.to_graph(twin, x, method=method)
    _graphs_equal(g1, g2)
    kinds = g1.node_kind
    causal = CASES[case].get("mask") is not None
    assert int((kinds == (NodeKind.CAUSAL_HEAD if causal else NodeKind.HEAD)).sum()) == H
    assert int((kinds == NodeKind.ATTENDED).sum()) == E


def test_the_twin_comparison_can_fail():
    model, _ = _pair(mask="buffer")
    other, _ = _pair()  # no mask: HEAD instead of CAUSAL_HEAD
    with pytest.raises(AssertionError):
        _graphs_equal(nngraph.to_graph(model, _x()), nngraph.to_graph(other, _x()))


# ----------------------------------------------------------------------- reference


def test_attention_edges_against_a_reference_loop():
    model, _ = _pair(style="timm", scale=0.3)
    x = _x()
    g = nngraph.to_graph(model, x)
    layout = nngraph.build_layout(model, (x,))
    qkv = layout.module_nodes["qkv"]  # (3E,) rows [q; k; v], each head-major
    q, k, v = qkv[:E], qkv[E:2 * E], qkv[2 * E:]
    heads = torch.nonzero(g.node_kind == NodeKind.HEAD).reshape(-1)
    attended = torch.nonzero(g.node_kind == NodeKind.ATTENDED).reshape(-1)
    expected = {}
    for h in range(H):
        for j in range(D):
            n = h * D + j
            expected[(int(q[n]), int(k[n]), int(EdgeType.QK_PAIR))] = 0.3 * D ** 0.5
            expected[(int(v[n]), int(attended[n]), int(EdgeType.ATTEND))] = 1.0
            for member in (q[n], k[n], attended[n]):
                expected[(int(heads[h]), int(member), int(EdgeType.HEAD_MEMBER))] = 1.0
    kinds = (EdgeType.QK_PAIR, EdgeType.ATTEND, EdgeType.HEAD_MEMBER)
    got = {key: float(a) for key, a in edge_dict(g).items() if key[2] in [int(t) for t in kinds]}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key  # float32 graph
    # the proj layer reads the attended neurons: its WEIGHT edges start there
    proj = layout.module_nodes["proj"]
    for o in range(E):
        for n in range(E):
            assert edge_dict(g)[(int(attended[n]), int(proj[o]), int(EdgeType.WEIGHT))].item() == \
                model.proj.weight[o, n].item()


# ----------------------------------------------------------------------- soundness and round trips


@pytest.mark.parametrize("method", ["fx", "export"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_eager_attention_is_sound_and_round_trips(case, method):
    model, _ = _pair(**CASES[case])
    x = _x()
    report = nngraph.verify(model, x, method=method)
    assert report.ok and report.moved_fraction > 0.3, report
    assert_round_trip(model, x)


@pytest.mark.parametrize("case", ["vit_timm", "causal_buffer", "swin_table_bias", "grouped_query"])
def test_random_symmetries_keep_the_function_and_relabel_the_graph(case):
    model, _ = _pair(**CASES[case])
    model = model.double()
    x = _x(torch.float64)
    g = nngraph.to_graph(model, x)
    layout = nngraph.build_layout(model, (x,))
    attn = torch.nonzero(g.node_kind == NodeKind.ATTENDED).reshape(-1)
    moved = False
    for seed in range(4):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), (x,))
        assert_function_preserved(model, permuted, x)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)
        moved |= not torch.equal(perm[attn], attn)
    fixed_expected = case == "grouped_query"  # repeated key/value heads: the attention is fixed
    assert moved != fixed_expected, layout.symmetries


@pytest.mark.parametrize("case", ["vit_timm", "causal_in_forward", "t5_embedding_bias"])
def test_encoder_is_invariant_and_equivariant_on_eager_attention(case):
    model, _ = _pair(**CASES[case])
    x = _x(torch.float64)
    encoder = nngraph.NeuralGraphEncoder(4, hidden_dim=8, num_layers=2).double()
    assert assert_invariant(encoder, model, (x,), generator=torch.Generator().manual_seed(0)) < 1e-10
    errors = assert_equivariant(encoder, model, (x,), generator=torch.Generator().manual_seed(1))
    assert max(errors.values()) < 1e-10 and len(errors) >= 2


def test_moving_a_neuron_across_heads_changes_the_function():
    """The symmetry the graph claims is the right one: a permutation that crosses heads is not a symmetry."""
    model, _ = _pair(style="timm")
    model = model.double()
    changed = Block(style="timm").double()
    changed.load_state_dict(model.state_dict())
    rows = torch.arange(E).roll(1)  # q, k, v neuron 0 moves into the other head
    full = torch.cat([rows, E + rows, 2 * E + rows])
    with torch.no_grad():
        changed.qkv.weight.copy_(model.qkv.weight[full])
        changed.qkv.bias.copy_(model.qkv.bias[full])
        changed.proj.weight.copy_(model.proj.weight[:, rows])
    with pytest.raises(AssertionError):
        assert_function_preserved(model.eval(), changed.eval(), _x(torch.float64))


# ----------------------------------------------------------------------- refusals


class Scores(nn.Module):
    """Attention whose scores go through ``fn(self, scores, v, x)`` (which returns the output)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.q, self.k, self.v, self.o = nn.Linear(E, E), nn.Linear(E, E), nn.Linear(E, E), nn.Linear(E, 3)
        self.side = nn.Linear(E, T)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (f(x).view(b, t, H, D).transpose(1, 2) for f in (self.q, self.k, self.v))
        out = self.fn(self, q @ k.transpose(-2, -1), v, x)
        if isinstance(out, tuple):
            return self.o(out[0].transpose(1, 2).reshape(b, t, E)), out[1]
        return self.o(out.transpose(1, 2).reshape(b, t, E))


FALLS_BACK = {
    "softmax_over_queries": (lambda s, a, v, x: a.softmax(-2) @ v, "over axis 2"),
    "softmax_over_heads": (lambda s, a, v, x: a.softmax(1) @ v, "their heads"),
    "no_softmax": (lambda s, a, v, x: a @ v, "no softmax"),
    "log_softmax": (lambda s, a, v, x: F.log_softmax(a, -1) @ v, "log_softmax"),
    "scores_plus_activation": (lambda s, a, v, x: (a + s.side(x)[:, None]).softmax(-1) @ v, "computed from"),
    "scores_mixed_across_heads": (lambda s, a, v, x: a.flip(1).softmax(-1) @ v, "head axis"),
    "scores_mean_over_heads": (lambda s, a, v, x: a.mean(1, keepdim=True).softmax(-1) @ v, "reads attention scores"),
    "scaled_after_softmax": (lambda s, a, v, x: (a.softmax(-1) * 2.0) @ v, "after the softmax"),
    "weights_times_scores": (lambda s, a, v, x: (a.softmax(-1) @ a) @ v, "other than softmax"),
}


@pytest.mark.parametrize("method", ["fx", "export"])
@pytest.mark.parametrize("case", sorted(FALLS_BACK))
def test_what_does_not_fit_falls_back_by_name(case, method):
    fn, match = FALLS_BACK[case]
    assert_falls_back(Scores(fn), torch.randn(2, T, E), match=match, method=method)


@pytest.mark.parametrize("method", ["fx", "export"])
def test_returned_attention_scores_are_refused(method):
    with pytest.raises(nngraph.UnsupportedError, match="returns attention scores"):
        nngraph.to_graph(Scores(lambda s, a, v, x: (a.softmax(-1) @ v, a)), torch.randn(2, T, E), method=method)


class Products(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.c(self.fn(self.a(x), self.b(x)))


@pytest.mark.parametrize("fn, match", [
    (lambda a, b: a @ b, "contracting"),  # (B, 6, 6) @ (B, 6, 6): a's neurons with b's positions
    (lambda a, b: a.transpose(1, 2) @ b, "positions"),  # positions with positions
    (lambda a, b: (lambda h: (h @ h.transpose(1, 2)).softmax(-1) @ b)(a), "Gram"),
])
def test_products_of_activations_that_are_not_attention_fall_back(fn, match):
    assert_falls_back(Products(fn), torch.randn(2, 6, 6), match=match)


def test_softmax_over_positions_of_an_activation_falls_back():
    assert_falls_back(Products(lambda a, b: a.softmax(1) + b), torch.randn(2, 6, 6),
                      match=r"softmax at fx node .*: seen through")  # per neuron: softmax over positions


class SingleHead(nn.Module):
    """One head on (B, T, E) tensors, written with bmm (``sdpa=True``: its twin on (B, 1, T, E))."""

    def __init__(self, sdpa=False, mask=None):
        super().__init__()
        self.sdpa, self.mask = sdpa, mask
        self.q, self.k, self.v, self.o = nn.Linear(3, E), nn.Linear(3, E), nn.Linear(3, E), nn.Linear(E, 2)

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)  # (B, T, E)
        if self.sdpa:
            mask = None if self.mask is None else torch.ones(T, T, dtype=torch.bool).tril()
            o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], attn_mask=mask)[:, 0]
        else:
            a = torch.bmm(q, k.transpose(1, 2)) / E ** 0.5  # (B, T, T)
            if self.mask is not None:
                a = a.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            o = torch.bmm(F.softmax(a, -1), v)
        return self.o(o)


@pytest.mark.parametrize("method", ["fx", "export"])
@pytest.mark.parametrize("mask", [None, "causal"])
def test_single_head_bmm_attention_gives_the_graph_of_its_twin(mask, method):
    torch.manual_seed(0)
    model, twin = SingleHead(mask=mask), SingleHead(sdpa=True, mask=mask)
    twin.load_state_dict(model.state_dict())
    x = _x()
    with torch.no_grad():
        assert torch.allclose(model(x), twin(x), atol=1e-5)
    g = nngraph.to_graph(model, x, method=method)
    _graphs_equal(g, nngraph.to_graph(twin, x, method=method))
    assert int((g.node_kind == (NodeKind.CAUSAL_HEAD if mask else NodeKind.HEAD)).sum()) == 1
    assert nngraph.verify(model, x, method=method).ok


def test_a_constant_causal_attn_mask_reads_as_is_causal():
    """sdpa with a materialised tril mask (Hugging Face's) gives the graph of is_causal=True."""
    torch.manual_seed(0)
    masked, causal = _pair(mask="buffer")  # the twin calls sdpa with is_causal=True
    x = _x()

    def with_mask(self, h):
        q, k, v = self._qkv(h)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.tril)

    masked.attention = with_mask.__get__(masked)
    with torch.no_grad():
        assert torch.allclose(masked(x), causal(x), atol=1e-5)
    for method in ("fx", "export"):
        _graphs_equal(nngraph.to_graph(masked, x, method=method), nngraph.to_graph(causal, x, method=method))


def test_one_key_head_expanded_to_all_heads_gives_one_graph_for_sdpa_and_eager():
    """Hugging Face's repeat_kv of a single key/value head: (B, 1, T, D) expanded to (B, H, T, D)."""
    model, twin = _pair(kv_heads=1, expand=True)
    expanded_sdpa = Block(kv_heads=1, expand=True, sdpa=True)
    expanded_sdpa.load_state_dict(model.state_dict())

    def attention(self, h):
        q, k, v = self._qkv(h)
        b, _, t, d = k.shape
        k, v = (z[:, :, None].expand(b, 1, H, t, d).reshape(b, H, t, d) for z in (k, v))
        return F.scaled_dot_product_attention(q, k, v)

    expanded_sdpa.attention = attention.__get__(expanded_sdpa)
    x = _x()
    with torch.no_grad():
        assert torch.allclose(model(x), expanded_sdpa(x.clone()), atol=1e-5)
    for method in ("fx", "export"):
        g = nngraph.to_graph(model, x, method=method)
        _graphs_equal(g, nngraph.to_graph(expanded_sdpa, x, method=method))
        _graphs_equal(g, nngraph.to_graph(twin, x, method=method))
        assert nngraph.verify(expanded_sdpa.eval(), x, method=method).ok
