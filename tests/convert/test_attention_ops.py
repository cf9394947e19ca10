"""Attention written as plain ops (scaled_dot_product_attention on heads): the scale is in the graph, and a
learned per-head score bias (T5's relative positions) moves with its head, or fixes the attention when
several layers share it."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.schema import EdgeType, NodeKind


class BiasedAttention(nn.Module):
    """Self-attention with a per-head bias from an embedding of relative positions, in ``layers`` layers."""

    def __init__(self, layers: int = 1, scale: float | None = None, heads: int = 2, e: int = 8, t: int = 5):
        super().__init__()
        self.heads, self.scale, self.t = heads, scale, t
        self.embed = nn.Linear(3, e)
        self.qkv = nn.ModuleList(nn.Linear(e, 3 * e) for _ in range(layers))
        self.out = nn.ModuleList(nn.Linear(e, e) for _ in range(layers))
        self.rel = nn.Embedding(2 * t, heads)
        self.head = nn.Linear(e, 2)
        self.register_buffer("buckets", (torch.arange(t)[None] - torch.arange(t)[:, None] + t).clamp(0, 2 * t - 1))

    def forward(self, x):
        h = self.embed(x)
        b, t, e = h.shape
        bias = self.rel(self.buckets).permute(2, 0, 1).unsqueeze(0)  # (1, H, T, T)
        for qkv, out in zip(self.qkv, self.out):
            q, k, v = (z.view(b, t, self.heads, e // self.heads).transpose(1, 2) for z in qkv(h).split(e, -1))
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
            h = h + out(o.transpose(1, 2).reshape(b, t, e))
        return self.head(h.mean(1))


def _x():
    return torch.randn(2, 5, 3)


def test_a_per_head_score_bias_moves_with_its_head():
    model, x = BiasedAttention(1), _x()
    report = nngraph.verify(model, x)
    assert report.ok, report
    layout = nngraph.build_layout(model, (x,))
    bias_nodes = layout.module_nodes["rel"]
    satellites = [g.satellites for g in layout.symmetries if g.satellites is not None]
    assert any(torch.isin(bias_nodes, s).all() for s in satellites)  # the bias is permuted with the heads
    moved = 0
    for seed in range(8):  # 2 heads: a draw keeps them in place half of the time
        permuted, _ = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), (x,))
        moved += not torch.equal(permuted.rel.weight, model.rel.weight)
        assert torch.allclose(permuted(x), model(x), atol=1e-6)
    assert moved > 0


def test_a_score_bias_shared_by_layers_fixes_the_attention():
    model, x = BiasedAttention(2), _x()
    assert nngraph.verify(model, x).ok
    layout = nngraph.build_layout(model, (x,))
    assert not any(g.satellites is not None and torch.isin(layout.module_nodes["rel"], g.satellites).any()
                   for g in layout.symmetries)


def test_the_attention_scale_is_in_the_graph():
    x = _x()
    torch.manual_seed(0)
    default = BiasedAttention(1)
    scaled = BiasedAttention(1, scale=0.3)
    scaled.load_state_dict(default.state_dict())
    g1, g2 = nngraph.to_graph(default, x), nngraph.to_graph(scaled, x)
    qk = g1.edge_type == EdgeType.QK_PAIR
    assert torch.equal(g1.edge_attr[qk], torch.ones_like(g1.edge_attr[qk]))
    assert torch.allclose(g2.edge_attr[qk], torch.full_like(g2.edge_attr[qk], 0.3 * 4 ** 0.5))
    assert int((g1.node_kind == NodeKind.HEAD).sum()) == 2
    assert nngraph.verify(scaled, x).ok
