"""Architecture specs: plain JSON-able dicts that rebuild a zoo model with :func:`build_model`.

Every spec has a ``"family"`` key; the other keys depend on the family:

``siren``   ``in_features``, ``hidden`` (list of widths), ``out_features``, ``w0``
            -> ``Linear, Sine, Linear, Sine, ..., Linear`` (:class:`nngraph.modules.Sine`).
``mlp``     ``in_shape`` ``[C, H, W]``, ``hidden``, ``num_classes``, ``act``, ``norm``
            (``"none" | "batch" | "layer"``), ``dropout``
            -> ``Flatten, [Linear, Norm?, Act, Dropout?] * len(hidden), Linear``.
``cnn``     ``in_shape``, ``channels``, ``strides``, ``kernel_size``, ``act``, ``norm``
            (``"none" | "batch"``), ``head`` (``"gap" | "flatten"``), ``dropout``, ``num_classes``
            -> ``[Conv2d, BatchNorm2d?, Act] * len(channels)``, then the head.
``resnet``  ``in_shape``, ``width``, ``blocks``, ``stem_stride``, ``kernel_size``, ``act``, ``norm``,
            ``head``, ``dropout``, ``num_classes``
            -> stem ``Conv2d, Norm?, Act``, then ``blocks`` times :class:`ResidualBlock`
            (``x + conv(act(conv(x)))``), then the head.

Models use only standard ``torch.nn`` layers (plus ``Sine``) in ``nn.Sequential`` or a module with a
plain ``forward``, so ``torch.fx`` can trace them. The parameter names of the built module are the
keys of the safetensors files in a zoo.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nngraph.modules import Sine

__all__ = ["ACTIVATIONS", "FAMILIES", "ResidualBlock", "build_model", "siren_spec", "count_parameters"]

#: Activation names accepted in specs.
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def _act(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"Could not resolve activation {name!r} among choices {sorted(ACTIVATIONS)}") from None


class ResidualBlock(nn.Module):
    r"""``x + conv2(act(norm1(conv1(x))))`` with an optional BatchNorm after each conv.

    Shapes:
        - **input:** :math:`(B, C, H, W)`
        - **output:** :math:`(B, C, H, W)`
    """

    def __init__(self, channels: int, kernel_size: int, act: str, norm: str):
        super().__init__()
        pad = kernel_size // 2
        use_bn = norm == "batch"
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=not use_bn)
        self.norm1 = nn.BatchNorm2d(channels) if use_bn else nn.Identity()
        self.act = _act(act)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=not use_bn)
        self.norm2 = nn.BatchNorm2d(channels) if use_bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


def siren_spec(in_features: int = 2, hidden=(32, 32), out_features: int = 1, w0: float = 30.0) -> dict:
    """The spec of a SIREN ``in_features -> hidden... -> out_features``."""
    return {"family": "siren", "in_features": int(in_features), "hidden": [int(h) for h in hidden],
            "out_features": int(out_features), "w0": float(w0)}


def _build_siren(s: dict) -> nn.Module:
    widths = [s["in_features"], *s["hidden"]]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), Sine(s["w0"])]
    layers.append(nn.Linear(widths[-1], s["out_features"]))
    return nn.Sequential(*layers)


def _build_mlp(s: dict) -> nn.Module:
    c, h, w = s["in_shape"]
    widths = [c * h * w, *s["hidden"]]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers.append(nn.Linear(a, b, bias=s["norm"] != "batch"))
        if s["norm"] == "batch":
            layers.append(nn.BatchNorm1d(b))
        elif s["norm"] == "layer":
            layers.append(nn.LayerNorm(b))
        elif s["norm"] != "none":
            raise ValueError(f"mlp norm must be 'none', 'batch' or 'layer', got {s['norm']!r}")
        layers.append(_act(s["act"]))
        if s.get("dropout", 0.0) > 0:
            layers.append(nn.Dropout(s["dropout"]))
    layers.append(nn.Linear(widths[-1], s["num_classes"]))
    return nn.Sequential(*layers)


def _conv_out(size: int, stride: int) -> int:
    # 'same' padding (k // 2) with odd k: ceil(size / stride)
    return (size - 1) // stride + 1


def _head(layers: list, channels: int, hw: tuple[int, int], s: dict) -> None:
    if s["head"] == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        features = channels
    elif s["head"] == "flatten":
        layers.append(nn.Flatten())
        features = channels * hw[0] * hw[1]
    else:
        raise ValueError(f"head must be 'gap' or 'flatten', got {s['head']!r}")
    if s.get("dropout", 0.0) > 0:
        layers.append(nn.Dropout(s["dropout"]))
    layers.append(nn.Linear(features, s["num_classes"]))


def _build_cnn(s: dict) -> nn.Module:
    c, h, w = s["in_shape"]
    k = s["kernel_size"]
    if s["norm"] not in ("none", "batch"):
        raise ValueError(f"cnn norm must be 'none' or 'batch', got {s['norm']!r}")
    layers: list[nn.Module] = []
    for out, stride in zip(s["channels"], s["strides"]):
        layers.append(nn.Conv2d(c, out, k, stride=stride, padding=k // 2, bias=s["norm"] != "batch"))
        if s["norm"] == "batch":
            layers.append(nn.BatchNorm2d(out))
        layers.append(_act(s["act"]))
        c, h, w = out, _conv_out(h, stride), _conv_out(w, stride)
    _head(layers, c, (h, w), s)
    return nn.Sequential(*layers)


def _build_resnet(s: dict) -> nn.Module:
    c, h, w = s["in_shape"]
    k, width, stride = s["kernel_size"], s["width"], s["stem_stride"]
    if s["norm"] not in ("none", "batch"):
        raise ValueError(f"resnet norm must be 'none' or 'batch', got {s['norm']!r}")
    layers: list[nn.Module] = [nn.Conv2d(c, width, k, stride=stride, padding=k // 2, bias=s["norm"] != "batch")]
    if s["norm"] == "batch":
        layers.append(nn.BatchNorm2d(width))
    layers.append(_act(s["act"]))
    layers += [ResidualBlock(width, k, s["act"], s["norm"]) for _ in range(s["blocks"])]
    _head(layers, width, (_conv_out(h, stride), _conv_out(w, stride)), s)
    return nn.Sequential(*layers)


FAMILIES = {"siren": _build_siren, "mlp": _build_mlp, "cnn": _build_cnn, "resnet": _build_resnet}


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Build the (randomly initialised) ``nn.Module`` an architecture spec describes.

    Load a zoo's weights into it with ``model.load_state_dict(safetensors.torch.load_file(path))``,
    or use :meth:`nngraph.zoo.Zoo.load_model`.
    """
    family = spec.get("family")
    if family not in FAMILIES:
        raise ValueError(f"Could not resolve model family {family!r} among choices {sorted(FAMILIES)}")
    return FAMILIES[family](spec)


def count_parameters(model_or_spec) -> int:
    """Number of parameters of a module or of the module a spec describes."""
    model = build_model(model_or_spec) if isinstance(model_or_spec, dict) else model_or_spec
    return sum(p.numel() for p in model.parameters())

