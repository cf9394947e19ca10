"""Attention masks never vanish from the graph: a constant causal mask makes CAUSAL_HEAD heads, a mask
that is a model input MASKED_HEAD (CAUSAL_MASKED_HEAD with both), and any other constant mask is refused
by name (unrecorded it would give the graph of the unmasked attention)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.schema import NodeKind

from .graph_checks import assert_falls_back, assert_round_trip
from .test_op_args import encoder

E, T = 8, 5
CAUSAL = torch.ones(T, T, dtype=torch.bool).triu(1)  # True blocks (torch.nn's convention)
BAND = ~(torch.ones(T, T, dtype=torch.bool).triu(-1) & torch.ones(T, T, dtype=torch.bool).tril(1))


class Module(nn.Module):
    """``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` called with a mask."""

    def __init__(self, mask, layer: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.TransformerEncoderLayer(E, 2, 16, dropout=0.0, batch_first=True) if layer else None
        self.attn = None if layer else nn.MultiheadAttention(E, 2, batch_first=True)
        self.mask = mask
        self.register_buffer("causal", CAUSAL.clone())
        self.register_buffer("band", BAND.clone())

    def forward(self, x, m=None):  # (B, T, E), m (B, T) bool
        kw = {"attn_mask": self.causal} if self.mask == "causal" else {"attn_mask": self.band} \
            if self.mask == "band" else {"key_padding_mask": m} if self.mask == "input" else {}
        if self.layer is not None:
            kw = {{"attn_mask": "src_mask", "key_padding_mask": "src_key_padding_mask"}[k]: v for k, v in kw.items()}
            return self.layer(x, **kw)
        return self.attn(x, x, x, **kw)[0]


class Sdpa(nn.Module):
    """``scaled_dot_product_attention`` with a constant mask or one that is a model input (True attends)."""

    def __init__(self, mask):
        super().__init__()
        torch.manual_seed(0)
        self.qkv, self.out, self.mask = nn.Linear(E, 3 * E), nn.Linear(E, E), mask
        self.register_buffer("allowed", ~(BAND if mask == "band" else CAUSAL))

    def forward(self, x, m=None):  # (B, T, E), m (B, 1, T, T) bool
        q, k, v = (t.view(2, T, 2, E // 2).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        mask = m if self.mask == "input" else None if self.mask == "none" else self.allowed
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.mask == "is_causal")
        return self.out(h.transpose(1, 2).reshape(2, T, E))


def inputs(kind, mask):
    x = torch.randn(2, T, E, generator=torch.Generator().manual_seed(0))
    if mask != "input":
        return (x,)
    return (x, torch.zeros(2, T, dtype=torch.bool)) if kind == "module" else (x, torch.ones(2, 1, T, T, dtype=torch.bool))


def build(kind, mask):
    return Sdpa(mask) if kind == "sdpa" else Module(mask, layer=kind == "layer")


HEADS = {"none": NodeKind.HEAD, "causal": NodeKind.CAUSAL_HEAD, "is_causal": NodeKind.CAUSAL_HEAD,
         "input": NodeKind.MASKED_HEAD}
#: (TransformerEncoderLayer's eval fast path rejects a key padding mask under shape propagation: not tested)
CASES = [(k, m) for k in ("module", "layer", "sdpa") for m in ("none", "causal", "input")
         if (k, m) != ("layer", "input")] + [("sdpa", "is_causal")]


@pytest.mark.parametrize("kind, mask", CASES)
def test_the_mask_is_the_kind_of_the_heads(kind, mask):
    model, x = build(kind, mask).eval(), inputs(kind, mask)
    g = nngraph.to_graph(model, x)
    heads = {int(k) for k in g.node_kind.unique()} & {int(h) for h in HEADS.values()}
    assert heads == {int(HEADS[mask])}
    assert nngraph.verify(model, x).ok
    assert_round_trip(model, *x)


@pytest.mark.parametrize("kind", ["module", "layer", "sdpa"])
def test_masked_and_unmasked_attention_give_graphs_the_encoder_tells_apart(kind):
    enc = encoder().float()
    masks = ("none", "causal") if kind == "layer" else ("none", "causal", "input")
    graphs = {m: nngraph.to_graph(build(kind, m).eval(), inputs(kind, m)) for m in masks}
    for a, b in [(a, b) for i, a in enumerate(masks) for b in masks[i + 1:]]:
        assert not torch.equal(graphs[a].node_kind, graphs[b].node_kind)
        assert (enc(graphs[a]) - enc(graphs[b])).abs().max() > 1e-6


@pytest.mark.parametrize("kind", ["module", "layer", "sdpa"])
def test_a_constant_mask_that_is_not_causal_falls_back_by_name(kind):
    assert_falls_back(build(kind, "band"), inputs(kind, "band"), match="not causal")


class Eager(nn.Module):
    """``softmax(q k^T / sqrt(D) + mask) v`` written out, masked by a model input and causally."""

    def __init__(self, mask):
        super().__init__()
        torch.manual_seed(0)
        self.qkv, self.out, self.mask = nn.Linear(E, 3 * E), nn.Linear(E, E), mask

    def forward(self, x, m):  # (B, T, E), m (B, 1, 1, T) float, 0 or -inf
        q, k, v = (t.view(2, T, 2, E // 2).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        s = q @ k.transpose(-2, -1) / (E // 2) ** 0.5 + m
        if self.mask == "causal":
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        elif self.mask == "band":
            s = s.masked_fill(BAND, float("-inf"))
        return self.out((s.softmax(-1) @ v).transpose(1, 2).reshape(2, T, E))


@pytest.mark.parametrize("mask, kind", [("input", NodeKind.MASKED_HEAD), ("causal", NodeKind.CAUSAL_MASKED_HEAD)])
def test_eager_attention_records_a_mask_that_is_an_input(mask, kind):
    model = Eager(mask).eval()
    x = (torch.randn(2, T, E), torch.zeros(2, 1, 1, T))
    g = nngraph.to_graph(model, x)
    assert int((g.node_kind == kind).sum()) == 2
    assert nngraph.verify(model, x).ok
    assert_falls_back(Eager("band"), x, match="masked_fill.*not causal")
