"""Small models whose forwards mix, reorder, share or hide neurons: each must convert to a sound graph
(``nngraph.verify`` passes). ``expected`` says how: ``"sound"`` by the converters alone, ``"fallback"`` with
the fallback's help (an operation no converter represents exactly, seen through or made opaque with its
neurons fixed, :mod:`nngraph.convert.fallback`); a change in either direction is a change to look at.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nngraph import Sine


@dataclass(frozen=True)
class Trap:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple]
    expected: str  # "sound", "fallback" or "refused" (code no tracer sees, a call that cannot be made)


class Lambda(nn.Module):
    """``forward(x) = fn(self, x)`` on a model with Linear layers ``a`` (6 -> 6), ``c`` (6 -> 3) and,
    if ``with_b``, ``b`` (6 -> 6)."""

    def __init__(self, fn, with_b: bool = False):
        super().__init__()
        self.fn = fn
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6) if with_b else None
        self.c = nn.Linear(6, 3)

    def forward(self, x):
        return self.fn(self, x)


def _vec():
    return (torch.randn(3, 6),)


def _seq():
    return (torch.randn(2, 5, 6),)


def _img():
    return (torch.randn(2, 3, 8, 8),)


class _TransposedMap(nn.Module):
    """A feature map transposed (H <-> W) before a flatten head: another function than without the transpose."""

    def __init__(self):
        super().__init__()
        self.c, self.f = nn.Conv2d(3, 4, 3), nn.Linear(4 * 36, 2)

    def forward(self, x):
        return self.f(torch.relu(self.c(x)).transpose(2, 3).flatten(1))


def lam(fn):
    return lambda: Lambda(fn)


def lam_b(fn):
    return lambda: Lambda(fn, with_b=True)


class TiedHead(nn.Module):
    """An embedding whose matrix is also the output projection (``tie_weights``)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.hidden = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 11, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        h = self.emb(ids)
        h = h + torch.tanh(self.hidden(h))
        return self.head(self.norm(h))


class SharedBias(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.b.bias = self.a.bias

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


class SharedTransposed(nn.Module):
    """One Parameter used as ``a.weight`` (6 -> 4) and as ``b.weight`` of a 4 -> 6 layer would need a
    transpose; here ``b`` reuses it as 6 -> 4 on another branch, so its neurons tie across branches."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 4), nn.Linear(6, 4), nn.Linear(4, 2)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.c(torch.relu(self.a(x)) + torch.tanh(self.b(torch.sigmoid(x))))


class SharedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 3, padding=1)
        self.c.weight = self.b.weight
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = torch.relu(self.c(torch.relu(self.b(h))))
        return self.head(h.mean((2, 3)))


def _hooked(kind):
    def build():
        m = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
        if kind == "forward":
            m[0].register_forward_hook(lambda mod, i, o: o * 2)
        elif kind == "pre":
            m[2].register_forward_pre_hook(lambda mod, i: (i[0].flip(-1),))
        else:
            m[0].forward = lambda x: F.linear(x, m[0].weight.flip(0), m[0].bias)
        return m
    return build


class SliceHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(3, 2)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x))))[:, 1:4])


class MHAReuse(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(6, 2, batch_first=True)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        o = self.att(x, x, x)
        return self.out(torch.relu(o[0]) + o[0])


class MixedAxes(nn.Module):
    """``(B, C, L) + (B, L, C)`` with ``C == L``: neurons added to positions."""

    def __init__(self):
        super().__init__()
        self.conv, self.lin, self.out = nn.Conv1d(5, 5, 1), nn.Linear(5, 5), nn.Linear(5, 2)

    def forward(self, x, y):
        return self.out(self.conv(x) + self.lin(y))


class BufferShift(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.c = nn.Linear(6, 6), nn.Linear(6, 3)
        self.register_buffer("shift", torch.randn(6))

    def forward(self, x):
        return self.c(torch.relu(self.a(x) + self.shift))


class RawMatmul(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 6))
        self.c = nn.Linear(6, 3)

    def forward(self, x):
        return self.c(torch.relu(x @ self.w))


class ResidualBlock(nn.Module):
    def __init__(self, shortcut: bool):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.proj = nn.Conv2d(3, 8, 1) if shortcut else None
        self.c0 = None if shortcut else nn.Conv2d(3, 8, 1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        skip = self.proj(x) if self.proj is not None else torch.relu(self.c0(x))
        h = torch.relu(self.bn1(self.c1(x)))
        h = torch.relu(self.bn2(self.c2(h)) + skip)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 2), nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h), self.c(h)


class DoubleResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = self.a(x)
        h = h + torch.relu(self.b(h)) + torch.tanh(self.c(h))
        return self.d(h)


def _transformer():
    layer = nn.TransformerEncoderLayer(6, 2, dim_feedforward=12, dropout=0.0, batch_first=True)
    return nn.Sequential(nn.Linear(6, 6), layer, nn.Linear(6, 3))


def _cnn(*mid):
    return lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), *mid, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(8, 2))


TRAPS: list[Trap] = [
    # neuron selection and reordering: a reorder is a relabelling, a selection fixes the neurons
    Trap("slice_neurons", lam(lambda s, x: s.c(F.pad(torch.relu(s.a(x))[:, :3], (0, 3)))), _vec, "fallback"),
    Trap("select_neurons", SliceHead, _vec, "sound"),  # sound because the selected space is fixed
    Trap("fancy_index_neurons", lam(lambda s, x: s.c(s.a(x)[:, [5, 4, 3, 2, 1, 0]])), _vec, "sound"),
    Trap("ellipsis_index", lam(lambda s, x: s.c(s.a(x)[..., :])), _vec, "sound"),
    Trap("flip_neurons", lam(lambda s, x: s.c(s.a(x).flip(-1))), _vec, "sound"),
    Trap("roll_neurons", lam(lambda s, x: s.c(torch.roll(s.a(x), 1, -1))), _vec, "sound"),
    Trap("cumsum_neurons", lam(lambda s, x: s.c(torch.cumsum(s.a(x), -1))), _vec, "fallback"),
    Trap("sort_neurons", lam(lambda s, x: s.c(torch.sort(s.a(x), -1).values)), _vec, "fallback"),
    Trap("transpose_seq", lam(lambda s, x: s.c(s.a(x).transpose(1, 2).transpose(1, 2))), _seq, "sound"),
    Trap("permute_seq", lam(lambda s, x: s.c(s.a(x).permute(0, 2, 1).permute(0, 2, 1))), _seq, "sound"),
    Trap("view_split_neurons", lam(lambda s, x: s.c(s.a(x).view(3, 2, 3).flip(1).reshape(3, 6))), _vec, "sound"),  # fixed: reordered or joined spaces
    Trap("chunk_neurons", lam(lambda s, x: s.c(torch.cat(s.a(x).chunk(2, -1)[::-1], -1))), _vec, "sound"),  # fixed: reordered or joined spaces
    Trap("split_neurons", lam(lambda s, x: s.c(torch.cat(s.a(x).split(3, -1)[::-1], -1))), _vec, "sound"),  # fixed: reordered or joined spaces
    Trap("cat_neurons", lam_b(lambda s, x: s.c(torch.cat([s.a(x)[:, :3], s.b(x)[:, 3:]], -1))), _vec, "sound"),  # fixed: reordered or joined spaces
    Trap("max_over_neurons", lam(lambda s, x: s.c(s.a(x) - s.a(x).max(-1, keepdim=True).values)), _vec, "fallback"),
    Trap("softmax_neurons", lam(lambda s, x: s.c(torch.softmax(s.a(x), -1))), _vec, "sound"),  # SOFTMAX nodes
    Trap("softmax_positions", lam(lambda s, x: s.c(torch.softmax(s.a(x), 1))), _seq, "fallback"),
    Trap("log_softmax_output", lam(lambda s, x: F.log_softmax(s.c(torch.relu(s.a(x))), -1)), _vec, "sound"),
    Trap("softmax_flattened_map", lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Softmax(-1),
                                                        nn.Linear(4 * 36, 2)), _img, "fallback"),
    Trap("normalize_neurons", lam(lambda s, x: s.c(F.normalize(s.a(x), dim=-1))), _vec, "sound"),  # L2_NORMALIZED
    Trap("normalize_positions", lam(lambda s, x: s.c(F.normalize(s.a(x), dim=1))), _seq, "fallback"),
    Trap("normalize_l1", lam(lambda s, x: s.c(F.normalize(s.a(x), p=1.0, dim=-1))), _vec, "fallback"),
    Trap("where_neurons", lam_b(lambda s, x: s.c(torch.where(s.a(x) > 0, s.a(x), s.b(x)))), _vec, "fallback"),
    # arithmetic: sums, differences, products and scales by numbers have nodes; the rest is refused
    Trap("self_sum", lam(lambda s, x: s.c(s.a(x) + s.a(x))), _vec, "sound"),  # two calls: two spaces
    Trap("h_plus_h", lam(lambda s, x: (lambda h: s.c(h + h))(s.a(x))), _vec, "fallback"),
    Trap("scale_constant", lam(lambda s, x: s.c(2.0 * s.a(x))), _vec, "sound"),
    Trap("add_scalar", lam(lambda s, x: s.c(s.a(x) + 1.0)), _vec, "fallback"),
    Trap("subtract", lam_b(lambda s, x: s.c(s.a(x) - s.b(x))), _vec, "sound"),
    Trap("gate_product", lam_b(lambda s, x: s.c(s.a(x) * torch.sigmoid(s.b(x)))), _vec, "sound"),
    Trap("divide", lam_b(lambda s, x: s.c(s.a(x) / (1 + s.b(x) ** 2))), _vec, "fallback"),
    Trap("abs", lam(lambda s, x: s.c(s.a(x).abs())), _vec, "fallback"),
    Trap("add_alpha", lam_b(lambda s, x: s.c(torch.add(s.a(x), s.b(x), alpha=2.0))), _vec, "fallback"),
    Trap("buffer_shift", BufferShift, _vec, "sound"),  # a float buffer added: a per-neuron shift
    Trap("raw_parameter_matmul", RawMatmul, _vec, "fallback"),
    Trap("weight_read_in_forward", lam(lambda s, x: s.c(F.linear(x, s.a.weight.flip(0), s.a.bias))), _vec, "fallback"),
    # sums across axes and repeated uses
    Trap("mixed_axes_sum", MixedAxes, lambda: (torch.randn(2, 5, 5), torch.randn(2, 5, 5)), "fallback"),
    Trap("tuple_item_reused", MHAReuse, _seq, "sound"),
    Trap("value_reused_raw_and_activated", lam(lambda s, x: (lambda h: s.c(torch.relu(h) + h))(s.a(x))), _vec, "sound"),
    Trap("activation_twice", lam(lambda s, x: (lambda h: s.c(torch.relu(h) + torch.tanh(h)))(s.a(x))), _vec, "sound"),
    Trap("double_residual", DoubleResidual, _vec, "sound"),
    Trap("residual_identity", lambda: ResidualBlock(False), _img, "sound"),
    Trap("residual_projection", lambda: ResidualBlock(True), _img, "sound"),
    Trap("two_outputs", TwoOutputs, _vec, "sound"),
    # shared parameters
    Trap("module_called_twice", lam_b(lambda s, x: s.c(torch.relu(s.a(torch.relu(s.a(s.b(x))))))), _vec, "sound"),
    Trap("tied_embedding_head", TiedHead, lambda: (torch.randint(0, 11, (2, 5)),), "sound"),
    Trap("shared_bias", SharedBias, _vec, "sound"),
    Trap("shared_weight_two_branches", SharedTransposed, _vec, "sound"),
    Trap("shared_conv_kernel", SharedConv, _img, "sound"),
    # code the tracer does not see
    Trap("forward_hook", _hooked("forward"), _vec, "refused"),
    Trap("forward_pre_hook", _hooked("pre"), _vec, "refused"),
    Trap("instance_forward", _hooked("instance"), _vec, "refused"),
    # indexing that keeps the neuron axis whole, and ordinary layers
    Trap("select_token", lam(lambda s, x: s.c(torch.relu(s.a(x))[:, 0])), _seq, "sound"),
    Trap("mean_over_sequence", lam(lambda s, x: s.c(torch.relu(s.a(x)).mean(1))), _seq, "sound"),
    Trap("transformer_layer", _transformer, _seq, "sound"),
    Trap("grouped_conv", _cnn(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU()), _img, "sound"),
    Trap("depthwise_conv", _cnn(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU()), _img, "sound"),
    Trap("group_norm", _cnn(nn.GroupNorm(2, 8), nn.SiLU()), _img, "sound"),
    Trap("max_pool", _cnn(nn.ReLU(), nn.MaxPool2d(2)), _img, "sound"),
    Trap("layer_norm_mlp", lambda: nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6), nn.GELU(), nn.Linear(6, 3)), _vec, "sound"),
    Trap("siren", lambda: nn.Sequential(nn.Linear(6, 8), Sine(30.0), nn.Linear(8, 8), Sine(1.0), nn.Linear(8, 1)), _vec, "sound"),
    Trap("flatten_head", lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2)), _img, "sound"),
]


class UsesAttentionWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(6, 2, batch_first=True)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        o, w = self.att(x, x, x)
        return self.out(o + torch.bmm(w, x))


TRAPS.append(Trap("attention_weights_used", UsesAttentionWeights, _seq, "fallback"))


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc(relu(fc(mean(x))))): a product of activations that broadcasts positions."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc1, self.fc2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(h.mean((2, 3), keepdim=True)))))
        return self.head((h * s).mean((2, 3)))


class SwiGLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(6, 8), nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class ZeroPadConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3, stride=2)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.a(F.pad(x, (1, 1, 1, 1))))
        h = torch.relu(self.b(F.pad(h, (0, 1, 0, 1))))  # TF 'same' padding before a strided conv
        return self.head(h.mean((2, 3)))


TRAPS += [
    Trap("squeeze_excitation", SqueezeExcite, _img, "sound"),
    Trap("swiglu", SwiGLU, _vec, "sound"),
    Trap("square_by_product", lam(lambda s, x: (lambda h: s.c(h * h))(s.a(x))), _vec, "fallback"),
    Trap("negate", lam(lambda s, x: s.c(-torch.relu(s.a(x)))), _vec, "sound"),
    Trap("zero_pad_then_conv", ZeroPadConv, _img, "sound"),
    Trap("zero_pad_features", lam(lambda s, x: s.c(F.pad(s.a(x), (0, 2))[:, :6])), _vec, "fallback"),
    Trap("reflect_pad_then_linear", lam(lambda s, x: s.c(F.pad(s.a(x)[:, None], (1, 1), mode="reflect")[:, 0, 1:7])),
         _vec, "fallback"),
]


class PatchMerging(nn.Module):
    """Swin's downsampling: four position offsets of one feature map joined along the features."""

    def __init__(self):
        super().__init__()
        self.embed, self.norm, self.reduce = nn.Conv2d(3, 4, 1), nn.LayerNorm(16), nn.Linear(16, 2)

    def forward(self, x):
        h = self.embed(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        parts = [h[:, 0::2, 0::2], h[:, 1::2, 0::2], h[:, 0::2, 1::2], h[:, 1::2, 1::2]]
        return self.reduce(self.norm(torch.cat(parts, -1))).mean((1, 2))


class ReshapedReuse(nn.Module):
    """An activation applied to a reshaped view of a value that is also used raw."""

    def __init__(self):
        super().__init__()
        self.a, self.c = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.a(x)  # (B, T, 6)
        r = torch.relu(h.transpose(1, 2)).transpose(1, 2)
        return self.c(r + h)


class GroupedQueryAttention(nn.Module):
    """Two key/value heads shared by four query heads (repeat_kv), HF style."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(8, 4), nn.Linear(8, 3)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, 4, 2).transpose(1, 2)
        k, v = (f(x).view(b, t, 2, 2).transpose(1, 2) for f in (self.k, self.v))
        k, v = (z[:, :, None].expand(b, 2, 2, t, 2).reshape(b, 4, t, 2) for z in (k, v))
        o = F.scaled_dot_product_attention(q, k, v)
        return self.o(o.transpose(1, 2).reshape(b, t, 8))


def _seq8():
    return (torch.randn(2, 5, 8),)


TRAPS += [
    Trap("activation_on_a_view_of_a_reused_value", ReshapedReuse, _seq, "sound"),
    Trap("grouped_query_attention", GroupedQueryAttention, _seq8, "sound"),
    Trap("activation_on_one_chunk", lam(lambda s, x: (lambda h: s.c(torch.cat([torch.relu(h[0]), h[1]], -1)))(
        s.a(x).chunk(2, -1))), _vec, "sound"),
]


TRAPS += [
    Trap("cat_with_itself", lambda: Lambda(lambda s, x: s.c(torch.cat([s.a(x)[:, :3], s.a(x)[:, :3]], -1))), _vec,
         "sound"),  # two calls of a: two spaces, so no neuron is repeated
    Trap("cat_value_with_itself", lam(lambda s, x: (lambda h: s.c(torch.cat([h[:, :3], h[:, :3]], -1)))(s.a(x))),
         _vec, "sound"),  # two CONCAT blocks tied to one (fixed) selection
    Trap("patch_merging", PatchMerging, lambda: (torch.randn(2, 3, 8, 8),), "sound"),
]


class EagerAttention(nn.Module):
    """Attention written out by hand on 8 features, 4 query heads of 2 and ``kv`` key/value heads
    (``repeat_interleave`` for grouped-query attention); ``fn(self, q, k, v, x)`` returns the (B, H, T, 2)
    result, so each trap spells one way the scores can be used."""

    def __init__(self, fn, kv: int = 4, side: bool = False):
        super().__init__()
        self.fn, self.kv = fn, kv
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 2 * kv), nn.Linear(8, 2 * kv)
        self.side = nn.Linear(8, 5) if side else None  # a layer whose output is added to the scores
        self.o = nn.Linear(8, 3)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, 4, 2).transpose(1, 2)
        k, v = (f(x).view(b, t, self.kv, 2).transpose(1, 2) for f in (self.k, self.v))
        if self.kv < 4:
            k, v = (z.repeat_interleave(4 // self.kv, dim=1) for z in (k, v))
        out = self.fn(self, q, k, v, x)
        return self.o(out.transpose(1, 2).reshape(b, t, 8))


def _eager(fn, kv=4, side=False):
    return lambda: EagerAttention(fn, kv, side)


def _attend(scores, v):
    return scores.softmax(-1) @ v


class Lambda2(Lambda):
    """:class:`Lambda` whose ``c`` reads 12 features (a value repeated along its neurons)."""

    def __init__(self, fn):
        super().__init__(fn)
        self.c = nn.Linear(12, 3)


class HeadSplitMismatch(nn.Module):
    """The key split into heads the other way round (neuron d * H + h) from the query (h * D + d)."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        b, t, _ = x.shape
        q, v = (f(x).view(b, t, 4, 2).transpose(1, 2) for f in (self.q, self.v))
        k = self.k(x).view(b, t, 2, 4).permute(0, 3, 1, 2)  # (B, 4, T, 2): head h holds neurons d * 4 + h
        o = (q @ k.transpose(-2, -1) * 0.7).softmax(-1) @ v
        return self.o(o.transpose(1, 2).reshape(b, t, 8))


TRAPS += [
    Trap("eager_attention", _eager(lambda s, q, k, v, x: _attend(q @ k.transpose(-2, -1) / 2 ** 0.5, v)), _seq8,
         "sound"),
    Trap("eager_causal_attention", _eager(lambda s, q, k, v, x: _attend(
        (q @ k.transpose(-2, -1)).masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf")), v)),
         _seq8, "sound"),
    Trap("eager_grouped_query_attention", _eager(lambda s, q, k, v, x: _attend(q @ k.transpose(-2, -1), v), kv=2),
         _seq8, "sound"),  # repeated key/value heads: the attention is fixed
    Trap("eager_key_split_differently", HeadSplitMismatch, _seq8, "sound"),  # the reordered key fixes the heads
    Trap("eager_scores_mixed_across_heads", _eager(lambda s, q, k, v, x: _attend(
        (q @ k.transpose(-2, -1)).roll(1, 1), v)), _seq8, "fallback"),
    Trap("eager_scores_summed_over_heads", _eager(lambda s, q, k, v, x: _attend(
        (q @ k.transpose(-2, -1)).sum(1, keepdim=True), v)), _seq8, "fallback"),
    Trap("eager_softmax_over_queries", _eager(lambda s, q, k, v, x: (q @ k.transpose(-2, -1)).softmax(-2) @ v),
         _seq8, "fallback"),
    Trap("eager_softmax_over_heads", _eager(lambda s, q, k, v, x: (q @ k.transpose(-2, -1)).softmax(1) @ v),
         _seq8, "fallback"),
    Trap("eager_scores_added_to_a_value", _eager(lambda s, q, k, v, x: _attend(q @ k.transpose(-2, -1), v)
                                                 + (q @ k.transpose(-2, -1))[..., :2]), _seq8, "fallback"),
    Trap("eager_scores_plus_activation", _eager(lambda s, q, k, v, x: _attend(
        q @ k.transpose(-2, -1) + s.side(x)[:, None], v), side=True), _seq8, "fallback"),
    Trap("eager_linear_attention", _eager(lambda s, q, k, v, x: (q @ k.transpose(-2, -1)) @ v), _seq8, "fallback"),
    Trap("eager_neurons_times_positions", _eager(lambda s, q, k, v, x: q @ v[..., :2, :]), _seq8, "fallback"),
    Trap("eager_gram_matrix", _eager(lambda s, q, k, v, x: _attend(q @ q.transpose(-2, -1), v)), _seq8, "fallback"),
    Trap("repeat_neurons", lambda: Lambda2(lambda s, x: s.c(torch.relu(s.a(x)).repeat(1, 2))), _vec, "fallback"),
    Trap("repeat_interleave_neurons", lambda: Lambda2(lambda s, x: s.c(torch.relu(s.a(x)).repeat_interleave(2, 1))),
         _vec, "fallback"),
    Trap("eager_key_heads_not_repeated", _eager(lambda s, q, k, v, x: _attend(
        q @ k[:, :2].repeat(1, 2, 1, 1).transpose(-2, -1), v)), _seq8, "sound"),  # a selection: fixed, sound
]


class Recurrent(nn.Module):
    """``forward(x) = fn(self, x)`` with ``rnn`` a recurrent layer (6 -> 3 units per direction, 2 layers,
    bidirectional, batch first), ``emb`` a Linear 6 -> 6 and ``c`` a Linear ``c_in`` -> 3."""

    def __init__(self, fn, kind=nn.GRU, c_in: int = 6, hidden: int = 3, layers: int = 2, bidirectional: bool = True):
        super().__init__()
        self.fn = fn
        self.emb = nn.Linear(6, 6)
        self.rnn = kind(6, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=True)
        self.c = nn.Linear(c_in, 3)

    def forward(self, x):
        return self.fn(self, x)


def rec(fn, **kw):
    return lambda: Recurrent(fn, **kw)


TRAPS += [
    # what a recurrent layer's output and final states may be read as
    Trap("rnn_last_step", rec(lambda s, x: s.c(s.rnn(s.emb(x))[0][:, -1])), _seq, "sound"),
    Trap("rnn_output_plus_input", rec(lambda s, x: (lambda e: s.c(s.rnn(e)[0] + e))(s.emb(x))), _seq,
         "sound"),  # both directions joined: the sum ties them with the embedding, soundly fixed
    Trap("rnn_output_plus_input_unidirectional", rec(lambda s, x: (lambda e: s.c((s.rnn(e)[0] + e)[:, 0]))(s.emb(x)),
                                                     hidden=6, bidirectional=False, layers=1), _seq, "sound"),
    Trap("rnn_halves_swapped_by_flip", rec(lambda s, x: s.c(s.rnn(s.emb(x))[0].flip(-1)[:, 0])), _seq, "sound"),
    Trap("rnn_halves_swapped_by_slices", rec(lambda s, x: (lambda o: s.c(torch.cat([o[..., 3:], o[..., :3]], -1)))(
        s.rnn(s.emb(x))[0][:, -1])), _seq, "sound"),
    Trap("rnn_half_of_a_direction", rec(lambda s, x: s.c(F.pad(s.rnn(s.emb(x))[0][:, -1, :2], (0, 4)))), _seq,
         "fallback"),  # padding the feature axis
    Trap("rnn_some_units", rec(lambda s, x: s.c(s.rnn(s.emb(x))[0][:, -1, 1:4]), c_in=3), _seq,
         "sound"),  # a cut through both directions: both fixed
    Trap("rnn_h_n_both_directions", rec(lambda s, x: (lambda h: s.c(torch.cat([h[-2], h[-1]], 1)))(s.rnn(s.emb(x))[1])),
         _seq, "sound"),
    Trap("rnn_h_n_every_layer", rec(lambda s, x: s.c(s.rnn(s.emb(x))[1].permute(1, 0, 2).reshape(2, -1)), c_in=12),
         _seq, "sound"),
    Trap("rnn_h_n_first_layer_backward", rec(lambda s, x: s.c(s.rnn(s.emb(x))[1][1]), c_in=3), _seq, "sound"),
    Trap("lstm_c_n", rec(lambda s, x: s.c(s.rnn(s.emb(x))[1][1][-1]), kind=nn.LSTM, c_in=3), _seq, "sound"),
    Trap("lstm_h_n_and_c_n", rec(lambda s, x: (lambda hc: s.c(torch.cat([hc[0][-1], hc[1][-1]], 1)))(
        s.rnn(s.emb(x))[1]), kind=nn.LSTM), _seq, "sound"),
    Trap("rnn_linear_on_stacked_h_n", rec(lambda s, x: s.c(s.rnn(s.emb(x))[1]), c_in=3), _seq,
         "fallback"),  # one Linear over four spaces' neurons
    Trap("rnn_h_n_summed_over_layers", rec(lambda s, x: s.c(s.rnn(s.emb(x))[1].sum(0)), c_in=3), _seq, "fallback"),
    Trap("rnn_mean_over_time", rec(lambda s, x: s.c(torch.relu(s.rnn(s.emb(x))[0]).mean(1)), kind=nn.RNN), _seq,
         "sound"),
    Trap("rnn_called_twice", rec(lambda s, x: s.c(s.rnn(s.rnn(s.emb(x))[0])[0][:, -1]), kind=nn.LSTM, hidden=6,
                                 bidirectional=False, layers=1), _seq, "sound"),  # shared weights: units fixed
    Trap("rnn_stacked_by_hand", rec(lambda s, x: s.c(s.rnn(torch.tanh(s.rnn(s.emb(x))[0]))[0][:, -1]), kind=nn.RNN,
                                    hidden=6, bidirectional=False, layers=1), _seq,
         "sound"),  # one layer called twice: shared weights, the units of both calls fixed
    Trap("rnn_initial_state_from_a_layer", rec(lambda s, x: s.c(s.rnn(x, s.emb(x[:, 0]).view(1, 2, 6))[0][:, -1]),
                                               hidden=6, bidirectional=False, layers=1), _seq, "fallback"),
    Trap("rnn_state_reused_raw_and_activated", rec(lambda s, x: (lambda o: s.c(torch.tanh(o) + o))(
        s.rnn(s.emb(x))[0][:, -1]), kind=nn.LSTM), _seq, "sound"),
]


def _stable_softmax(h, dim=-1, sum_dim=None, keepdim=True):
    """``softmax(h, dim)`` written out by hand, shifted by the maximum (``sum_dim`` / ``keepdim`` spell traps)."""
    e = (h - h.amax(dim, keepdim=keepdim)).exp()
    return e / e.sum(dim if sum_dim is None else sum_dim, keepdim=True)


def _square():
    return (torch.randn(6, 6),)


TRAPS += [
    # softmax and log-softmax written out by hand: folded into one softmax node, or refused
    Trap("hand_softmax_neurons", lam(lambda s, x: s.c(_stable_softmax(s.a(x)))), _vec, "sound"),
    Trap("hand_softmax_max_values_detached", lam(lambda s, x: (lambda h: s.c(torch.exp(
        h - h.max(-1, keepdim=True).values.detach()) / torch.exp(h - h.max(-1, keepdim=True).values).sum(
        -1, keepdim=True)))(s.a(x))), _vec, "sound"),
    Trap("hand_softmax_unshifted", lam(lambda s, x: (lambda e: s.c(e / e.sum(-1, keepdim=True)))(s.a(x).exp())),
         _vec, "sound"),
    Trap("hand_log_softmax_logsumexp", lam(lambda s, x: (lambda h: s.c(h - h.logsumexp(-1, keepdim=True)))(s.a(x))),
         _vec, "sound"),
    Trap("hand_softmax_over_positions", lam(lambda s, x: s.c(_stable_softmax(s.a(x), 1))), _seq, "fallback"),
    Trap("hand_softmax_sum_over_positions", lam(lambda s, x: s.c(_stable_softmax(s.a(x), -1, 1))), _seq, "fallback"),
    # without keepdim the row maxima broadcast along the neurons of a square batch: not a softmax
    Trap("hand_softmax_max_without_keepdim", lam(lambda s, x: s.c(_stable_softmax(s.a(x), keepdim=False))), _square,
         "fallback"),
    Trap("hand_softmax_shift_only_in_numerator", lam(lambda s, x: (lambda h: s.c(
        (h - h.amax(-1, keepdim=True)).exp() / h.exp().sum(-1, keepdim=True)))(s.a(x))), _vec, "fallback"),
    Trap("hand_softmax_exp_reused", lam(lambda s, x: (lambda e: s.c(e / e.sum(-1, keepdim=True)) + s.c(e))(
        (lambda h: (h - h.amax(-1, keepdim=True)).exp())(s.a(x)))), _vec, "fallback"),
    Trap("hand_softmax_other_denominator", lam_b(lambda s, x: s.c(s.a(x).exp() / s.b(x).exp().sum(-1, keepdim=True))),
         _vec, "fallback"),
    Trap("eager_hand_softmax", _eager(lambda s, q, k, v, x: _stable_softmax(q @ k.transpose(-2, -1) * 0.5) @ v),
         _seq8, "sound"),
    Trap("eager_hand_softmax_over_queries", _eager(lambda s, q, k, v, x: _stable_softmax(
        q @ k.transpose(-2, -1), -2) @ v), _seq8, "fallback"),
    Trap("eager_hand_softmax_max_over_queries", _eager(lambda s, q, k, v, x: _stable_softmax(
        q @ k.transpose(-2, -1), -2, -1) @ v), _seq8, "fallback"),
    # attention weights kept in log space
    Trap("eager_log_softmax_exp", _eager(lambda s, q, k, v, x: (q @ k.transpose(-2, -1)).log_softmax(-1).exp() @ v),
         _seq8, "sound"),
    Trap("eager_logsumexp_weights", _eager(lambda s, q, k, v, x: (lambda a: (a - a.logsumexp(-1, keepdim=True)).exp()
                                                                   @ v)(q @ k.transpose(-2, -1))), _seq8, "sound"),
    Trap("eager_log_softmax_over_queries_exp", _eager(lambda s, q, k, v, x: F.log_softmax(
        q @ k.transpose(-2, -1), dim=-2).exp() @ v), _seq8, "fallback"),
    Trap("eager_log_weights_times_values", _eager(lambda s, q, k, v, x: (q @ k.transpose(-2, -1)).log_softmax(-1)
                                                  @ v), _seq8, "fallback"),
]


class MergedHeads(nn.Module):
    """Attention of 2 heads of 4 on 8 features with the heads merged into the batch for ``bmm``: ``(B, H, T, D)``
    reshaped to ``(B * H, T, D)`` (``"batch_major"``), nn.MultiheadAttention's ``(T, B * H, D)`` view
    (``"mha"``), the head-major ``(H * B, T, D)`` (``"head_major"``), or the query merged batch-major and the
    key head-major (``"mismatched"``, which pairs heads of different batch entries). ``fn(weights, v)``
    after the softmax."""

    def __init__(self, style="batch_major", fn=None):
        super().__init__()
        self.style, self.fn = style, fn
        self.q, self.k, self.v, self.o = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def _merge(self, z, b, t, style):
        if style == "mha":
            return z.transpose(0, 1).contiguous().view(t, b * 2, 4).transpose(0, 1)  # (B * H, T, D)
        z = z.view(b, t, 2, 4).transpose(1, 2)  # (B, H, T, D)
        return (z.transpose(0, 1) if style == "head_major" else z).reshape(b * 2, t, 4)

    def forward(self, x):
        b, t, _ = x.shape
        q = self._merge(self.q(x), b, t, "batch_major" if self.style == "mismatched" else self.style)
        k = self._merge(self.k(x), b, t, "head_major" if self.style == "mismatched" else self.style)
        v = self._merge(self.v(x), b, t, "batch_major" if self.style == "mismatched" else self.style)
        w = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * 0.5, -1)  # (B * H, T, T)
        o = self.fn(w, v) if self.fn is not None else torch.bmm(w, v)  # (B * H, T, D)
        if self.style == "mha":
            o = o.transpose(0, 1).contiguous().view(t, b, 8).transpose(0, 1)
        elif self.style == "head_major":
            o = o.view(2, b, t, 4).permute(1, 2, 0, 3).reshape(b, t, 8)
        else:
            o = o.view(b, 2, t, 4).transpose(1, 2).reshape(b, t, 8)
        return self.o(o)


TRAPS += [
    # heads merged into the batch for bmm: the heads of sdpa, or refused
    Trap("bmm_heads_merged_into_batch", MergedHeads, _seq8, "sound"),
    Trap("bmm_heads_merged_mha_style", lambda: MergedHeads("mha"), _seq8, "sound"),
    Trap("bmm_heads_merged_head_major", lambda: MergedHeads("head_major"), _seq8, "fallback"),
    Trap("bmm_query_and_key_merged_differently", lambda: MergedHeads("mismatched"), _seq8, "fallback"),
    Trap("bmm_merged_weights_split_by_view", lambda: MergedHeads(fn=lambda w, v: torch.bmm(
        w.view(2, 2, 5, 5).flip(1).reshape(4, 5, 5), v)), _seq8, "fallback"),  # heads swapped per batch entry
    Trap("bmm_merged_values_activated", lambda: MergedHeads(fn=lambda w, v: torch.bmm(w, torch.relu(v))), _seq8,
         "fallback"),
    Trap("bmm_merged_values_rolled_over_batch", lambda: MergedHeads(fn=lambda w, v: torch.bmm(w, v.roll(1, 0))),
         _seq8, "fallback"),  # each query head would read the other head's values
]


class RepeatedQueryHeads(nn.Module):
    """Query, key and value of 2 heads of 2, each head listed twice (``repeat(1, 2, 1, 1)``): 4 heads in form,
    2 in fact; the graph's heads would be parallel edges."""

    def __init__(self, eager: bool):
        super().__init__()
        self.eager = eager
        self.q, self.k, self.v, self.o = nn.Linear(8, 4), nn.Linear(8, 4), nn.Linear(8, 4), nn.Linear(8, 3)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (f(x).view(b, t, 2, 2).transpose(1, 2).repeat(1, 2, 1, 1) for f in (self.q, self.k, self.v))
        o = (q @ k.transpose(-1, -2)).softmax(-1) @ v if self.eager else F.scaled_dot_product_attention(q, k, v)
        return self.o(o.transpose(1, 2).reshape(b, t, 8))


TRAPS += [
    Trap("sdpa_query_heads_repeated", lambda: RepeatedQueryHeads(False), _seq8, "fallback"),
    Trap("eager_query_heads_repeated", lambda: RepeatedQueryHeads(True), _seq8, "fallback"),
]


class KeywordScale(nn.Module):
    """``forward(x, *, scale=None)``: the call ``model(x)`` leaves ``scale`` out, so the branch it skips must
    not be in the graph (fx would trace ``scale`` as a tensor and take it)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x, *, scale=None, gate: bool = True):
        h = torch.relu(self.a(x))
        if scale is not None:
            h = h * scale
        if gate:
            h = h * torch.sigmoid(self.b(x))
        return self.c(h)


class KeywordMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.c = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x, *, mask):
        return self.c(torch.relu(self.a(x)) * mask)


TRAPS += [
    Trap("keyword_only_defaults", KeywordScale, _vec, "sound"),
    Trap("keyword_only_required", KeywordMask, _vec, "refused"),
]

# positions picked out of an activation: recorded (Pool.SELECT / SLICE) or refused, never one graph for two picks
TRAPS += [
    Trap("select_last_token", lam(lambda s, x: s.c(torch.relu(s.a(x))[:, -1])), _seq, "sound"),
    Trap("select_first_and_last_token", lam(lambda s, x: (lambda h: s.c(h[:, 0] * h[:, -1]))(torch.relu(s.a(x)))),
         _seq, "sound"),
    Trap("slice_tokens_then_mean", lam(lambda s, x: s.c(torch.relu(s.a(x))[:, 1:].mean(1))), _seq, "sound"),
    Trap("strided_tokens_then_mean", lam(lambda s, x: s.c(torch.relu(s.a(x))[:, ::2].mean(1))), _seq, "sound"),
    Trap("unbind_tokens", lam(lambda s, x: (lambda t: s.c(t[1] * t[3]))(torch.relu(s.a(x)).unbind(1))), _seq, "sound"),
    Trap("flip_tokens_then_first", lam(lambda s, x: s.c(torch.relu(s.a(x)).flip(1)[:, 0])), _seq, "sound"),
    Trap("roll_tokens_then_first", lam(lambda s, x: s.c(torch.roll(torch.relu(s.a(x)), 2, 1)[:, 0])), _seq, "sound"),
    Trap("flip_tokens_used_twice", lam(lambda s, x: (lambda h: s.c(h.flip(1)[:, 0] + h[:, 0]))(torch.relu(s.a(x)))),
         _seq, "sound"),
    Trap("transpose_feature_map_then_flatten", lambda: _TransposedMap(), _img, "sound"),  # Pool.REORDER
    Trap("transpose_batch_and_tokens", lam(lambda s, x: s.c(torch.relu(s.a(x)).transpose(0, 1)[0])), _seq, "sound"),
    Trap("four_position_records_in_a_row", lam(lambda s, x: s.c(torch.roll(torch.relu(s.a(x)).flip(1), 1, 1).flip(1)[:, 0])),
         _seq, "fallback"),  # flip, roll, flip, select: more records in a row than MAX_POOLS, refused by name
    Trap("roll_flattened_sequence", lam(lambda s, x: s.c(torch.roll(torch.relu(s.a(x)), 3)[:, 0])), _seq, "fallback"),
    Trap("select_tokens_by_list", lam(lambda s, x: s.c(torch.relu(s.a(x))[:, [0, 3]].mean(1))), _seq, "fallback"),
    Trap("select_tokens_by_mask", lam(lambda s, x: s.c(torch.relu(s.a(x))[:, torch.tensor([True, False, True, False,
                                                                                             False])].mean(1))),
         _seq, "fallback"),
]

# attention masks: causal (CAUSAL_HEAD) or a model input (MASKED_HEAD) are recorded, other constants refused
from .test_masks import Module as _MaskedModule, Sdpa as _MaskedSdpa, inputs as _mask_inputs  # noqa: E402

TRAPS += [
    Trap("mha_causal_buffer_mask", lambda: _MaskedModule("causal"), lambda: _mask_inputs("module", "causal"), "sound"),
    Trap("mha_band_buffer_mask", lambda: _MaskedModule("band"), lambda: _mask_inputs("module", "band"), "fallback"),
    Trap("mha_padding_mask_input", lambda: _MaskedModule("input"), lambda: _mask_inputs("module", "input"), "sound"),
    Trap("encoder_layer_band_mask", lambda: _MaskedModule("band", layer=True), lambda: _mask_inputs("layer", "band"),
         "fallback"),
    Trap("sdpa_band_buffer_mask", lambda: _MaskedSdpa("band"), lambda: _mask_inputs("sdpa", "band"), "fallback"),
    Trap("sdpa_mask_input", lambda: _MaskedSdpa("input"), lambda: _mask_inputs("sdpa", "input"), "sound"),
]


class _WeightNormed(nn.Module):
    """``torch.nn.utils.parametrizations.weight_norm``: the Linear's weight is computed in forward."""

    def __init__(self):
        super().__init__()
        self.a = nn.utils.parametrizations.weight_norm(nn.Linear(6, 6))
        self.c = nn.Linear(6, 3)

    def forward(self, x):
        return self.c(torch.tanh(self.a(x)))


class _LoRA(nn.Module):
    """``W + A @ B`` written on parameters in forward (a low-rank update merged on the fly)."""

    def __init__(self):
        super().__init__()
        self.w, self.lora_a, self.lora_b = (nn.Parameter(torch.randn(6, 6) / 3), nn.Parameter(torch.randn(6, 2)),
                                            nn.Parameter(torch.randn(2, 6)))
        self.c = nn.Linear(6, 3)

    def forward(self, x):
        return self.c(torch.relu(F.linear(x, self.w + self.lora_a @ self.lora_b)))


class _Standardised(nn.Conv2d):
    """A kernel standardised before use: per output channel (``over=(1, 2, 3)``, BiT), across the output
    channels (``over=0``: per input entry, which also commutes), or summed over the output channels in order
    (``over=None``: ``cumsum``, which does not)."""

    def __init__(self, *args, over=(1, 2, 3), **kwargs):
        super().__init__(*args, **kwargs)
        self.over = over

    def forward(self, x):
        w = self.weight
        if self.over is None:
            w = torch.cumsum(w, 0)
        else:
            w = (w - w.mean(self.over, keepdim=True)) / torch.sqrt(w.var(self.over, keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias)


class _Derived(nn.Module):
    """``c(mean(relu(conv(x))))`` around a convolution whose kernel is computed in forward."""

    def __init__(self, conv):
        super().__init__()
        self.conv, self.c = conv, nn.Linear(6, 3)

    def forward(self, x):
        return self.c(torch.relu(self.conv(x)).mean((2, 3)))


# operations no converter names: seen through where a float64 test shows they act per neuron, else fixed
TRAPS += [
    Trap("erf_neurons", lam(lambda s, x: s.c(torch.erf(s.a(x)))), _vec, "fallback"),
    Trap("pow_then_expm1", lam(lambda s, x: s.c(torch.expm1(s.a(x).pow(3)))), _seq, "fallback"),
    Trap("times_own_flip", lam(lambda s, x: (lambda h: s.c(h * h.flip(-1)))(s.a(x))), _vec, "sound"),  # fixed
    Trap("gather_by_own_order", lam(lambda s, x: (lambda h: s.c(torch.gather(h, -1, h.argsort(-1))))(s.a(x))),
         _vec, "fallback"),
    Trap("logcumsumexp_neurons", lam(lambda s, x: s.c(torch.logcumsumexp(s.a(x), -1))), _seq, "fallback"),
    Trap("cummax_positions", lam(lambda s, x: s.c(torch.cummax(s.a(x), 1).values)), _seq, "fallback"),
    Trap("weight_norm_linear", _WeightNormed, _vec, "fallback"),
    Trap("lora_on_parameters", _LoRA, _vec, "fallback"),
    Trap("weight_norm_conv", lambda: _Derived(nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 6, 3))), _img,
         "fallback"),  # the derivation commutes with the neurons: their symmetry kept (convert/derived.py)
    Trap("standardised_conv", lambda: _Derived(_Standardised(3, 6, 3)), _img, "fallback"),
    Trap("standardised_across_channels", lambda: _Derived(_Standardised(3, 6, 3, over=0)), _img, "fallback"),
    Trap("weight_rows_cumsum", lambda: _Derived(_Standardised(3, 6, 3, over=None)), _img, "fallback"),
    Trap("topk_values", lam(lambda s, x: s.c(torch.cat([torch.topk(s.a(x), 3, -1).values] * 2, -1))), _vec,
         "fallback"),
]


class _OddFlipProduct(nn.Module):
    """``h * h.flip(-1)`` over 5 neurons: the middle neuron multiplies itself (two parallel FACTOR edges)."""

    def __init__(self):
        super().__init__()
        self.a, self.c = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x):
        h = self.a(x)
        return self.c(h * h.flip(-1))


TRAPS.append(Trap("times_own_flip_odd_width", _OddFlipProduct, _vec, "sound"))
