"""A learned per-head score bias plus a constant (Swin's shifted-window mask), as the ``attn_mask`` of
``scaled_dot_product_attention``: the constant is recorded on the heads (``Pool.SCORE_OFFSET``), so two
constants never give one graph; the sum used anywhere else is refused by name."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.convert.attention import score_offset_record
from nngraph.schema import POOL_ARGS, NodeKind, Pool

from .graph_checks import assert_falls_back

HEADS, T, D, WINDOWS = 2, 4, 3, 4  # (B * WINDOWS, T, HEADS * D) windows of tokens


def window_mask(kind: str) -> torch.Tensor:
    """``(WINDOWS, 1, T, T)``: zeros, Swin's ``-100`` between tokens of different halves in the last windows,
    or another pattern."""
    mask = torch.zeros(WINDOWS, 1, T, T)
    if kind in ("shifted", "other"):
        half = torch.arange(T) < T // 2
        apart = (half[:, None] != half[None, :]).float() * -100.0  # (T, T)
        mask[2 if kind == "shifted" else 1:] = apart
    if kind == "per_head":
        mask = torch.zeros(WINDOWS, HEADS, T, T)
        mask[:, 1, 0, 1] = -100.0
    return mask


class WindowAttention(nn.Module):
    """``sdpa(q, k, v, attn_mask=bias + mask)`` per window; ``bias`` a learned ``(HEADS, T, T)`` table."""

    def __init__(self, kind: str = "shifted", reuse: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.qkv, self.out = nn.Linear(HEADS * D, 3 * HEADS * D), nn.Linear(HEADS * D, HEADS * D)
        self.bias = nn.Parameter(torch.randn(HEADS, T, T))
        self.register_buffer("mask", window_mask(kind), persistent=False)
        self.reuse = reuse

    def forward(self, x):  # (B * WINDOWS, T, HEADS * D)
        n = x.shape[0]
        q, k, v = self.qkv(x).chunk(3, -1)
        q, k, v = q.view(n, T, HEADS, D).transpose(1, 2), k.view(n, T, HEADS, D).transpose(1, 2), \
            v.view(n, T, HEADS, D).transpose(1, 2)  # (n, H, T, D)
        mask = self.bias.unsqueeze(0) + self.mask.repeat(n // WINDOWS, 1, 1, 1)  # (n, H, T, T)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (n, H, T, D)
        out = self.out(h.transpose(1, 2).reshape(n, T, HEADS * D))
        return out * mask.mean() if self.reuse else out


def windows(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch * WINDOWS, T, HEADS * D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def _record(graph):
    heads = graph.node_kind == int(NodeKind.HEAD)
    assert int(heads.sum()) == HEADS
    return graph.pool[heads], graph.pool_args[heads]


def test_the_constant_is_recorded_on_the_heads_and_the_model_is_sound():
    model = WindowAttention().double().eval()
    graph = nngraph.to_graph(model, windows())
    back = nngraph.from_graph(graph, model)  # (assert_round_trip would scramble the mask buffer too)
    for name, value in model.named_parameters():
        assert torch.equal(dict(back.named_parameters())[name], value), name
    assert torch.equal(back(windows()), model(windows()))
    pools, args = _record(graph)
    assert (pools[:, 0] == int(Pool.SCORE_OFFSET)).all()
    col = dict(zip(POOL_ARGS, args[0, 0].tolist()))
    assert (col["kernel_d"], col["kernel_h"], col["kernel_w"], col["stride_h"], col["stride_w"]) == (4, T, T, -100, 0)
    assert col["stride_d"] == pytest.approx(0.25)  # 2 of 4 windows masked, half of each window's pairs
    report = nngraph.verify(model, windows())
    assert report.ok and report.moved_fraction > 0.25, report


def test_two_constants_give_two_graphs_and_the_batch_size_does_not_matter():
    a, b, none = (nngraph.to_graph(WindowAttention(kind).double(), windows()) for kind in ("shifted", "other", "zero"))
    assert not torch.equal(_record(a)[1], _record(b)[1])
    assert not torch.equal(_record(a)[1], _record(none)[1])
    twice = nngraph.to_graph(WindowAttention("shifted").double(), windows(batch=2))  # the windows repeat
    assert torch.equal(_record(a)[0], _record(twice)[0]) and torch.equal(_record(a)[1], _record(twice)[1])


def test_the_export_path_records_the_same_constant():
    model = WindowAttention().double().eval()
    fx_graph, export_graph = (nngraph.to_graph(model, windows(), method=m) for m in ("fx", "export"))
    assert torch.equal(_record(fx_graph)[1], _record(export_graph)[1])


def test_a_constant_that_differs_between_heads_falls_back():
    assert_falls_back(WindowAttention("per_head").double(), windows(),
                      match=r"scaled_dot_product_attention at fx node .*: opaque")


def test_the_sum_read_by_another_op_falls_back_by_name():
    # the mask (parameter 'bias' plus a constant) is read by the product too
    assert_falls_back(WindowAttention(reuse=True).double(), windows(),
                      match=r"mul at fx node .*: opaque .*parameters bias on fixed nodes")


def test_the_fingerprint_tells_patterns_apart():
    shape = (WINDOWS, HEADS, T, T)
    base = score_offset_record(None, window_mask("shifted"), shape)[1]
    moved = window_mask("shifted")
    moved[0, 0, 0, 3] = -100.0
    assert score_offset_record(None, moved, shape)[1]["padding_d"] != base["padding_d"]
    assert score_offset_record(None, window_mask("shifted").double(), shape)[1] == base  # dtype does not matter
