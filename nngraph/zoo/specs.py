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
``vit``     ``in_shape``, ``patch``, ``dim``, ``depth``, ``heads``, ``mlp_ratio``, ``act`` (``"relu" | "gelu"``),
            ``dropout``, ``num_classes`` -> :class:`~nngraph.zoo.blocks.PatchTransformer`.
``gated``   ``in_shape``, ``dim``, ``hidden``, ``depth``, ``act``, ``num_classes``
            -> :class:`~nngraph.zoo.blocks.GatedMLP` (``depth`` pre-norm gated blocks ``dim -> hidden -> dim``).
``rnn``     ``in_shape``, ``cell`` (``"rnn_tanh" | "rnn_relu" | "lstm" | "gru"``), ``hidden``,
            ``num_layers``, ``bidirectional``, ``readout`` (``"last" | "h_n"``), ``dropout``,
            ``num_classes`` -> :class:`~nngraph.zoo.blocks.SequenceClassifier` (the image read row by row).

Models use only standard ``torch.nn`` layers (plus ``Sine``) in ``nn.Sequential`` or a module with a
plain ``forward``, so ``torch.fx`` can trace them. The parameter names of the built module are the
keys of the safetensors files in a zoo.

Specs come from manifests, i.e. from strangers: :func:`check_spec` validates every size field and
computes the model's size from the spec alone (:func:`spec_size`), so :func:`build_model` refuses a spec
over the :class:`SpecLimits` before a single tensor is allocated.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from nngraph.errors import SpecError
from nngraph.modules import Sine
from nngraph.zoo.blocks import CELLS, GatedMLP, PatchTransformer, SequenceClassifier

__all__ = ["ACTIVATIONS", "CELLS", "DEFAULT_LIMITS", "FAMILIES", "ResidualBlock", "SequenceClassifier", "SpecLimits",
           "SpecSize", "build_model", "check_spec", "count_parameters", "siren_spec", "spec_size"]

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


def _build_vit(s: dict) -> nn.Module:
    if s["act"] not in ("relu", "gelu"):
        raise ValueError(f"vit act must be 'relu' or 'gelu', got {s['act']!r}")
    return PatchTransformer(s["in_shape"], s["patch"], s["dim"], s["depth"], s["heads"], s["mlp_ratio"], s["act"],
                            s.get("dropout", 0.0), s["num_classes"])


def _build_gated(s: dict) -> nn.Module:
    return GatedMLP(s["in_shape"], s["dim"], s["hidden"], s["depth"], ACTIVATIONS[s["act"]] if s["act"] in ACTIVATIONS
                    else _act(s["act"]), s["num_classes"])


def _build_rnn(s: dict) -> nn.Module:
    return SequenceClassifier(s["in_shape"], s["cell"], s["hidden"], s["num_layers"], bool(s["bidirectional"]),
                              s["readout"], s["num_classes"], s.get("dropout", 0.0))


FAMILIES = {"siren": _build_siren, "mlp": _build_mlp, "cnn": _build_cnn, "resnet": _build_resnet, "vit": _build_vit,
            "gated": _build_gated, "rnn": _build_rnn}


@dataclass(frozen=True)
class SpecLimits:
    """The largest model a spec may describe (checked by :func:`check_spec` before anything is built).

    Args:
        max_width (int): features or channels of any layer. (default: :obj:`16384`)
        max_depth (int): layers with weights. (default: :obj:`256`)
        max_parameters (int): parameters of the whole model (200 MB in float32). (default: :obj:`50_000_000`)
        max_input_elements (int): elements of one input sample. (default: :obj:`2 ** 24`)
        max_activations (int): output elements of all weight layers for one sample. (default: :obj:`2 ** 25`)
    """

    max_width: int = 16384
    max_depth: int = 256
    max_parameters: int = 50_000_000
    max_input_elements: int = 2 ** 24
    max_activations: int = 2 ** 25


#: The limits :func:`build_model` and :class:`~nngraph.zoo.Zoo` use unless given others.
DEFAULT_LIMITS = SpecLimits()


@dataclass(frozen=True)
class SpecSize:
    """The size of the model a spec describes, computed from the spec alone (see :class:`SpecLimits`)."""

    width: int
    depth: int
    parameters: int
    input_elements: int
    activations: int


def _field(s: dict, key: str) -> Any:
    if key not in s:
        raise SpecError(f"{s['family']} spec lacks {key!r} (it has {sorted(s)})")
    return s[key]


def _is_size(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _size(s: dict, key: str) -> int:
    v = _field(s, key)
    if not _is_size(v):
        raise SpecError(f"{s['family']} spec: {key!r} must be a positive int, got {v!r}")
    return v


def _sizes(s: dict, key: str, length: int | None = None) -> list[int]:
    v = _field(s, key)
    if not isinstance(v, list) or not all(_is_size(x) for x in v) or (length is not None and len(v) != length):
        shape = "a list of positive ints" + (f" of length {length}" if length is not None else "")
        raise SpecError(f"{s['family']} spec: {key!r} must be {shape}, got {v!r}")
    return v


def _in_shape(s: dict) -> list[int]:
    return _sizes(s, "in_shape", 3)


def _head_size(s: dict, channels: int, hw: int) -> tuple[int, int]:
    """``(parameters, input features)`` of the head's final Linear."""
    features = channels * hw if s.get("head") == "flatten" else channels
    classes = _size(s, "num_classes")
    return features * classes + classes, features


def _siren_size(s: dict) -> SpecSize:
    widths = [_size(s, "in_features"), *_sizes(s, "hidden"), _size(s, "out_features")]
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    return SpecSize(max(widths), len(widths) - 1, params, widths[0], sum(widths[1:]))


def _mlp_size(s: dict) -> SpecSize:
    c, h, w = _in_shape(s)
    hidden, classes = _sizes(s, "hidden"), _size(s, "num_classes")
    per_layer = {"batch": 2, "layer": 3}.get(s.get("norm"), 1)  # per feature: bias, norm weight and bias
    widths = [c * h * w, *hidden]
    params = sum(a * b + per_layer * b for a, b in zip(widths[:-1], widths[1:])) + widths[-1] * classes + classes
    return SpecSize(max(hidden + [classes]), len(hidden) + 1, params, c * h * w, sum(hidden) + classes)


def _conv_params(c_in: int, c_out: int, k: int, norm: str) -> int:
    return c_in * c_out * k * k + (2 * c_out if norm == "batch" else c_out)


def _cnn_size(s: dict) -> SpecSize:
    c, h, w = _in_shape(s)
    channels, k = _sizes(s, "channels"), _size(s, "kernel_size")
    strides = _sizes(s, "strides", len(channels))
    params, activations, inputs = 0, 0, c * h * w
    for out, stride in zip(channels, strides):
        params += _conv_params(c, out, k, s.get("norm"))
        c, h, w = out, _conv_out(h, stride), _conv_out(w, stride)
        activations += c * h * w
    head, _ = _head_size(s, c, h * w)
    return SpecSize(max(channels + [_size(s, "num_classes")]), len(channels) + 1, params + head, inputs,
                    activations + _size(s, "num_classes"))


def _resnet_size(s: dict) -> SpecSize:
    c, h, w = _in_shape(s)
    width, blocks, k = _size(s, "width"), _field(s, "blocks"), _size(s, "kernel_size")
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0:
        raise SpecError(f"resnet spec: 'blocks' must be a non-negative int, got {blocks!r}")
    stride = _size(s, "stem_stride")
    hw = _conv_out(h, stride) * _conv_out(w, stride)
    params = _conv_params(c, width, k, s.get("norm")) + 2 * blocks * _conv_params(width, width, k, s.get("norm"))
    head, _ = _head_size(s, width, hw)
    return SpecSize(max(width, _size(s, "num_classes")), 2 + 2 * blocks, params + head, c * h * w,
                    (1 + 2 * blocks) * width * hw + _size(s, "num_classes"))


def _vit_size(s: dict) -> SpecSize:
    c, h, w = _in_shape(s)
    patch, dim, depth, heads = _size(s, "patch"), _size(s, "dim"), _size(s, "depth"), _size(s, "heads")
    ratio, classes = _size(s, "mlp_ratio"), _size(s, "num_classes")
    if h % patch or w % patch or dim % heads:
        raise SpecError(f"vit spec: patch {patch} must divide the image {h}x{w} and heads {heads} the dim {dim}")
    tokens = (h // patch) * (w // patch)
    block = 4 * dim + 4 * dim * dim + 4 * dim + 2 * ratio * dim * dim + ratio * dim + dim  # norms, attention, MLP
    params = c * dim * patch * patch + dim + tokens * dim + depth * block + 2 * dim + dim * classes + classes
    activations = tokens * dim * (1 + depth * (5 + ratio)) + classes
    return SpecSize(max(ratio * dim, classes), 2 + 3 * depth, params, c * h * w, activations)


def _gated_size(s: dict) -> SpecSize:
    c, h, w = _in_shape(s)
    dim, hidden, depth, classes = _size(s, "dim"), _size(s, "hidden"), _size(s, "depth"), _size(s, "num_classes")
    block = 2 * dim + 2 * (dim * hidden + hidden) + hidden * dim + dim
    params = c * h * w * dim + dim + depth * block + dim * classes + classes
    return SpecSize(max(dim, hidden, classes), 2 + 2 * depth, params, c * h * w, dim + depth * (3 * hidden + dim) + classes)


def _rnn_size(s: dict) -> SpecSize:
    c, h, w = _in_shape(s)
    hidden, layers, classes = _size(s, "hidden"), _size(s, "num_layers"), _size(s, "num_classes")
    cell = _field(s, "cell")
    if cell not in CELLS:
        raise SpecError(f"rnn spec: Could not resolve cell {cell!r} among choices {sorted(CELLS)}")
    gates, directions = CELLS[cell][2], 2 if _field(s, "bidirectional") else 1
    params, features = 0, c * w
    for _ in range(layers):  # per direction: weight_ih, weight_hh and both biases
        params += directions * gates * hidden * (features + hidden + 2)
        features = directions * hidden
    params += features * classes + classes
    return SpecSize(max(gates * hidden, features, classes), layers + 1, params, c * h * w,
                    layers * h * directions * hidden + classes)


_SIZES = {"siren": _siren_size, "mlp": _mlp_size, "cnn": _cnn_size, "resnet": _resnet_size, "vit": _vit_size,
          "gated": _gated_size, "rnn": _rnn_size}


def _family(spec: Any) -> str:
    if not isinstance(spec, dict):
        raise SpecError(f"a spec must be a JSON object with a 'family' key, got {type(spec).__name__}")
    family = spec.get("family")
    if family not in FAMILIES:
        raise SpecError(f"Could not resolve model family {family!r} among choices {sorted(FAMILIES)}")
    return family


def spec_size(spec: dict[str, Any]) -> SpecSize:
    """The size of the model ``spec`` describes, from the spec alone (nothing is allocated).

    Raises:
        SpecError: if the family is unknown or a size field is missing or not a positive int.
    """
    return _SIZES[_family(spec)](spec)


def check_spec(spec: dict[str, Any], limits: SpecLimits | None = None) -> SpecSize:
    """Validate ``spec`` and check its size against ``limits``; returns its :class:`SpecSize`.

    Raises:
        SpecError: naming every limit the spec exceeds (and how to raise it).
    """
    limits = limits or DEFAULT_LIMITS
    size = spec_size(spec)
    over = [f"{f.name[4:]} {getattr(size, f.name[4:])} > {f.name} {getattr(limits, f.name)}" for f in fields(limits)
            if getattr(size, f.name[4:]) > getattr(limits, f.name)]
    if over:
        raise SpecError(f"{spec['family']} spec is too large: " + ", ".join(over)
                        + "; pass larger nngraph.zoo.specs.SpecLimits(...) if the model is meant to be this big")
    return size


def build_model(spec: dict[str, Any], limits: SpecLimits | None = None) -> nn.Module:
    """Build the (randomly initialised) ``nn.Module`` an architecture spec describes.

    The spec is checked first (:func:`check_spec` with ``limits``, default :data:`DEFAULT_LIMITS`).
    Load a zoo's weights into it with ``model.load_state_dict(safetensors.torch.load_file(path))``,
    or use :meth:`nngraph.zoo.Zoo.load_model`.

    Raises:
        SpecError: if the spec is malformed or over the limits.
    """
    check_spec(spec, limits)
    return FAMILIES[spec["family"]](spec)


def count_parameters(model_or_spec) -> int:
    """Number of parameters of a module or of the module a spec describes."""
    model = build_model(model_or_spec) if isinstance(model_or_spec, dict) else model_or_spec
    return sum(p.numel() for p in model.parameters())

