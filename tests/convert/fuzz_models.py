"""Random architectures for the property-based converter tests.

A model is a list of steps interpreted by :class:`FuzzNet` (a static list, so torch.fx traces it).
Three families: vectors ``(B, F)`` through Linear / norm / residual / layer-scale steps; feature maps
``(B, C, H, W)`` through convolutions (kernels 1/3/5, stride, dilation, groups, padding modes), norms,
pools and residual blocks, ending in a global pool or a flatten head; sequences ``(B, T, E)`` through
Linear steps, attention written as plain ops (view into heads, transpose, scaled_dot_product_attention,
a fused q/k/v projection split in three), nn.TransformerEncoderLayer, a positional embedding parameter,
a class token concatenated along positions, a Conv1d over the transposed sequence, and a token selected or the
sequence averaged at the end. Every family also draws the steps that follow products of activations and numbers:
gates ``x * sigmoid(f(x))``, scales by numbers, joins of two layers along the features (``cat``), zero padding
before a convolution, attention written out by hand (matmul or einsum, a fused ``(B, T, 3, H, D)`` projection
or a split one, scaled by a number, causal masks by ``masked_fill``, ``where`` or an additive ``-inf`` mask),
a final ``log_softmax`` over the outputs, and operations no converter names (``UNKNOWN``: the fallback's); feature maps and sequences also draw positions reversed, rotated or
(maps) transposed (``flip``, ``roll``, ``transpose``), which the graph records.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from nngraph import Sine, Swish

ACTIVATIONS = [
    lambda: nn.ReLU(), lambda: nn.Tanh(), lambda: nn.GELU(), lambda: nn.GELU(approximate="tanh"),
    lambda: nn.SiLU(), lambda: nn.LeakyReLU(0.2), lambda: nn.ELU(0.5), lambda: nn.Softplus(2.0),
    lambda: Sine(3.0), lambda: nn.Hardtanh(-0.5, 1.5), lambda: nn.Mish(), lambda: Swish(1.702), lambda: nn.Identity(),
]


#: Operations no converter names, each keeping the shape: some act on every entry alone (the fallback sees
#: through them), some mix the last axis (neurons of vectors and sequences, positions of maps: fixed or kept).
UNKNOWN = [
    torch.erf, torch.expm1, lambda x: x.pow(2), lambda x: torch.special.i0e(x), torch.atan,
    lambda x: torch.cumsum(x, -1), lambda x: torch.sort(x, -1).values, lambda x: x * x.flip(-1),
    lambda x: torch.gather(x, -1, x.argsort(-1)), lambda x: torch.logcumsumexp(x, -1),
    lambda x: x - x.amax(-1, keepdim=True).detach(), lambda x: torch.nan_to_num(x / x.abs().sum(-1, keepdim=True)),
]


class FuzzNet(nn.Module):
    def __init__(self, family: str, steps: list[tuple], layers: nn.ModuleDict, params: nn.ParameterDict):
        super().__init__()
        self.family, self.steps = family, steps
        self.layers, self.params = layers, params

    def forward(self, x):
        for step in self.steps:
            kind, name = step[0], step[1]
            if kind == "layer":
                x = self.layers[name](x)
            elif kind == "residual":  # x + f(x), f = layers[name] (a Sequential)
                x = x + self.layers[name](x)
            elif kind == "scale":
                x = x * self.params[name]
            elif kind == "shift":
                x = x + self.params[name]
            elif kind == "cls":
                x = torch.cat([self.params[name].expand(x.shape[0], -1, -1), x], dim=1)
            elif kind == "swap":  # the sequence and feature axes swapped and back around a Conv1d
                x = self.layers[name](x.transpose(1, 2)).transpose(1, 2)
            elif kind == "attention":  # HF-style self-attention with a fused projection
                heads = step[2]
                b, t, e = x.shape
                q, k, v = self.layers[name](x).split(e, dim=-1)
                q, k, v = (z.view(b, t, heads, e // heads).transpose(1, 2) for z in (q, k, v))
                o = F.scaled_dot_product_attention(q, k, v, is_causal=step[3])
                x = x + self.layers[name + "_out"](o.transpose(1, 2).reshape(b, t, e))
            elif kind == "eager":  # attention written out by hand
                x = x + self.layers[name + "_out"](self._eager(self.layers[name], x, *step[2:]))
            elif kind == "gate":
                x = x * torch.sigmoid(self.layers[name](x))
            elif kind == "times":
                x = x * step[2]
            elif kind == "unknown":  # an operation no converter names (UNKNOWN[step[2]])
                x = UNKNOWN[step[2]](x)
            elif kind == "join":  # two layers side by side along the features
                x = torch.cat([self.layers[name](x), self.layers[name + "_b"](x)], dim=-1)
            elif kind == "pad":  # zeros around the positions, read by the convolution of layers[name]
                x = self.layers[name](F.pad(x, step[2]))
            elif kind == "log_softmax":
                x = F.log_softmax(x, dim=-1)
            elif kind == "select":
                x = x[:, 0]
            elif kind == "mean":
                x = x.mean(1)
            elif kind == "flatten":
                x = torch.flatten(x, 1)
            elif kind == "reorder":  # positions reversed, rotated or (feature maps) transposed
                op, dim = step[2], step[3]  # dim: a position axis
                x = x.flip(dim) if op == "flip" else torch.roll(x, 1, dim) if op == "roll" else x.transpose(-2, -1)
        return x


    @staticmethod
    def _eager(qkv, x, heads, style, scale, mask, t):
        b, e = x.shape[0], x.shape[2]
        d = e // heads
        if style == "timm":
            q, k, v = qkv(x).reshape(b, t, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q, k, v = qkv(x).split(e, dim=-1)
            q, k, v = (z.view(b, t, heads, d).transpose(1, 2) for z in (q, k, v))
        a = torch.einsum("bhid,bhjd->bhij", q, k) if style == "einsum" else q @ k.transpose(-2, -1)
        a = a * scale if scale != 1.0 else a / 2.0
        blocked = torch.ones(t, t, dtype=torch.bool).triu(1)
        if mask == "masked_fill":
            a = a.masked_fill(blocked, float("-inf"))
        elif mask == "where":
            a = torch.where(~blocked, a, torch.finfo(torch.float32).min)
        elif mask == "additive":
            a = a + torch.zeros(t, t).masked_fill(blocked, float("-inf"))
        a = F.softmax(a, dim=-1)
        o = torch.einsum("bhij,bhjd->bhid", a, v) if style == "einsum" else a @ v
        return o.transpose(1, 2).reshape(b, t, e)


def _extra_vector_step(draw, name, width, layers, steps) -> int:
    """A gate, a scale by a number, a join of two layers or an operation no converter names; returns the new
    width."""
    choice = draw(st.sampled_from(["gate", "times", "join", "unknown"]))
    if choice == "unknown":
        steps.append(("unknown", name, draw(st.integers(0, len(UNKNOWN) - 1))))
    elif choice == "gate":
        layers[name] = nn.Linear(width, width)
        steps.append(("gate", name))
    elif choice == "times":
        steps.append(("times", name, draw(st.sampled_from([-1.5, 0.5, 3.0]))))
    else:
        a, b = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        layers[name] = nn.Sequential(nn.Linear(width, a), draw(st.sampled_from(ACTIVATIONS))())
        layers[name + "_b"] = nn.Linear(width, b)
        steps.append(("join", name))
        return a + b
    return width


@st.composite
def vector_net(draw):
    width = draw(st.integers(2, 7))
    features = draw(st.integers(1, 5))
    layers, params, steps = nn.ModuleDict(), nn.ParameterDict(), []
    current = features
    for i in range(draw(st.integers(1, 4))):
        choice = draw(st.sampled_from(["linear", "norm", "residual", "scale", "shift", "extra"] if i else ["linear"]))
        name = f"s{i}"
        if choice == "extra":
            current = _extra_vector_step(draw, name, current, layers, steps)
            continue
        if choice == "linear" or current != width:
            layers[name] = nn.Sequential(nn.Linear(current, width), draw(st.sampled_from(ACTIVATIONS))())
            current = width
        elif choice == "norm":
            layers[name] = draw(st.sampled_from([lambda: nn.LayerNorm(width), lambda: nn.BatchNorm1d(width)]))()
        elif choice == "residual":
            layers[name] = nn.Sequential(nn.Linear(width, width), draw(st.sampled_from(ACTIVATIONS))(),
                                         nn.Linear(width, width))
            steps.append(("residual", name))
            continue
        else:
            params[name] = nn.Parameter(torch.randn(width))
            steps.append((choice, name))
            continue
        steps.append(("layer", name))
    layers["head"] = nn.Linear(current, draw(st.integers(1, 3)))
    steps.append(("layer", "head"))
    if draw(st.booleans()):
        steps.append(("log_softmax", ""))
    return FuzzNet("vector", steps, layers, params), (torch.randn(4, features),)


@st.composite
def conv_net(draw):
    dims = draw(st.sampled_from([1, 2]))
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    pool = {1: (nn.MaxPool1d, nn.AvgPool1d), 2: (nn.MaxPool2d, nn.AvgPool2d)}[dims]
    in_size = draw(st.sampled_from([8, 9]))
    size = in_size
    channels_in = draw(st.integers(1, 3))
    layers, params, steps = nn.ModuleDict(), nn.ParameterDict(), []
    current = channels_in
    for i in range(draw(st.integers(1, 3))):
        name = f"s{i}"
        width = draw(st.sampled_from([2, 4, 6]))
        choice = draw(st.sampled_from(["conv", "residual", "pool"] if i else ["conv"]))
        if choice == "residual" and current == width:
            k = draw(st.sampled_from([1, 3]))
            layers[name] = nn.Sequential(conv(width, width, k, padding=k // 2), bn(width),
                                         draw(st.sampled_from(ACTIVATIONS))())
            steps.append(("residual", name))
            continue
        reordered = any(step[0] == "reorder" for step in steps)  # records in a row are capped (MAX_POOLS): one
        if choice == "pool" and not reordered and draw(st.integers(0, 2)) == 0:  # the positions reordered instead
            steps.append(("reorder", name, draw(st.sampled_from(["flip", "roll"] + (["transpose"] if dims == 2 else []))),
                          draw(st.sampled_from(list(range(2, 2 + dims))))))
            continue
        if choice == "pool":
            layers[name] = draw(st.sampled_from(pool))(2)
            steps.append(("layer", name))
            size //= 2
            continue
        k = draw(st.sampled_from([1, 3, 5]))
        if choice == "conv" and draw(st.integers(0, 3)) == 0:  # zero padding (TF "same") before the conv
            before, after = draw(st.integers(0, 2)), draw(st.integers(0, 2))
            if size + before + after >= k:
                layers[name] = nn.Sequential(conv(current, width, k), draw(st.sampled_from(ACTIVATIONS))())
                steps.append(("pad", name, (before, after) * dims))
                size, current = size + before + after - k + 1, width
                continue
        dilation = draw(st.sampled_from([1, 2])) if k > 1 else 1
        groups = draw(st.sampled_from([g for g in (1, 2) if current % g == 0 and width % g == 0]))
        mode = draw(st.sampled_from(["zeros", "reflect", "circular"]))
        pad = dilation * (k // 2)
        if pad >= size:
            mode = "zeros"
        norm = draw(st.sampled_from([lambda c: nn.Identity(), lambda c: bn(c),
                                     lambda c: nn.GroupNorm(2, c) if c % 2 == 0 else nn.Identity()]))
        layers[name] = nn.Sequential(
            conv(current, width, k, padding=pad, dilation=dilation, groups=groups, padding_mode=mode),
            norm(width), draw(st.sampled_from(ACTIVATIONS))())
        steps.append(("layer", name))
        current = width
    if draw(st.booleans()):
        layers["pool"] = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}[dims](1)
        steps += [("layer", "pool"), ("flatten", "")]
        features = current
    else:
        steps.append(("flatten", ""))
        features = current * size ** dims
    layers["head"] = nn.Linear(features, 2)
    steps.append(("layer", "head"))
    shape = (3, channels_in) + (in_size,) * dims
    return FuzzNet("conv", steps, layers, params), (torch.randn(*shape),)


@st.composite
def sequence_net(draw):
    heads = draw(st.sampled_from([1, 2]))
    e = heads * draw(st.sampled_from([2, 3]))
    t = draw(st.integers(2, 5))
    layers, params, steps = nn.ModuleDict(), nn.ParameterDict(), []
    layers["embed"] = nn.Linear(3, e)
    steps.append(("layer", "embed"))
    length = t
    if draw(st.booleans()):
        params["cls"] = nn.Parameter(torch.randn(1, 1, e))
        steps.append(("cls", "cls"))
        length += 1
    if draw(st.booleans()):
        params["pos"] = nn.Parameter(torch.randn(1, length, e))
        steps.append(("shift", "pos"))
    for i in range(draw(st.integers(1, 3))):
        name = f"s{i}"
        reordered = any(step[0] == "reorder" for step in steps)  # records in a row are capped (MAX_POOLS): one
        choice = draw(st.sampled_from(["attention", "eager", "encoder", "mlp", "swap", "norm", "gate", "times",
                                       "unknown"] + ([] if reordered else ["reorder"])))
        if choice == "unknown":
            steps.append(("unknown", name, draw(st.integers(0, len(UNKNOWN) - 1))))
        elif choice == "reorder":
            steps.append(("reorder", name, draw(st.sampled_from(["flip", "roll"])), 1))
        elif choice == "eager":
            layers[name] = nn.Linear(e, 3 * e)
            layers[name + "_out"] = nn.Linear(e, e)
            steps.append(("eager", name, heads, draw(st.sampled_from(["matmul", "einsum", "timm"])),
                          draw(st.sampled_from([1.0, 0.7, -0.4])),
                          draw(st.sampled_from([None, "masked_fill", "where", "additive"])), length))
        elif choice == "gate":
            layers[name] = nn.Linear(e, e)
            steps.append(("gate", name))
        elif choice == "times":
            steps.append(("times", name, draw(st.sampled_from([-1.5, 0.5, 3.0]))))
        elif choice == "attention":
            layers[name] = nn.Linear(e, 3 * e)
            layers[name + "_out"] = nn.Linear(e, e)
            steps.append(("attention", name, heads, draw(st.booleans())))
        elif choice == "encoder":
            layers[name] = nn.TransformerEncoderLayer(e, heads, dim_feedforward=2 * e, dropout=0.0,
                                                      batch_first=True, norm_first=draw(st.booleans()))
            steps.append(("layer", name))
        elif choice == "mlp":
            layers[name] = nn.Sequential(nn.Linear(e, 2 * e), draw(st.sampled_from(ACTIVATIONS))(), nn.Linear(2 * e, e))
            steps.append(("residual", name))
        elif choice == "swap":
            layers[name] = nn.Conv1d(e, e, 3, padding=1)  # reads (B, E, T): the features moved to axis 1
            steps.append(("swap", name))
        else:
            layers[name] = nn.LayerNorm(e)
            steps.append(("layer", name))
    steps.append((draw(st.sampled_from(["select", "mean"])), ""))
    layers["head"] = nn.Linear(e, 2)
    steps.append(("layer", "head"))
    return FuzzNet("sequence", steps, layers, params), (torch.randn(2, t, 3),)


any_net = st.one_of(vector_net(), conv_net(), sequence_net())
