"""Element-wise activations: recorded on the neurons they act on (no new nodes), unless the
value they act on is also used raw, in which case new neurons are made, tied to the old ones
by identity edges.

Every activation is recorded with its kind (``act``) and the parameters that change its function
(``act_args``, see :mod:`nngraph.schema`), so that ``LeakyReLU(0.01)`` and ``LeakyReLU(0.5)`` never
give one graph. Module types are matched exactly: a subclass with its own ``forward`` is not
trusted to compute its parent's function and is traced through (and refused if it is a leaf).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..modules import Sine, Swish
from ..schema import Activation, EdgeType, NodeKind
from .errors import UnsupportedError, describe
from .registry import register_function, register_module
from .values import TensorValue

#: An activation as recorded: its kind and its ``act_args`` (empty when it has none).
ActSpec = tuple[Activation, tuple[float, ...]]


def _hardtanh(lo: float, hi: float) -> ActSpec:
    lo, hi = float(lo), float(hi)
    return (Activation.RELU6, ()) if (lo, hi) == (0.0, 6.0) else (Activation.HARDTANH, (lo, hi))


def _gelu(approximate: str = "none") -> ActSpec:
    if approximate == "none":
        return Activation.GELU, ()
    if approximate == "tanh":
        return Activation.GELU_TANH, ()
    raise UnsupportedError(f"GELU(approximate={approximate!r}) is not known; 'none' and 'tanh' are")


#: exact module type -> its activation, read from the module
MODULES: dict[type, Callable[[nn.Module], ActSpec]] = {
    nn.ReLU: lambda m: (Activation.RELU, ()),
    nn.ReLU6: lambda m: (Activation.RELU6, ()),
    nn.Hardtanh: lambda m: _hardtanh(m.min_val, m.max_val),
    nn.GELU: lambda m: _gelu(m.approximate),
    nn.SiLU: lambda m: (Activation.SILU, ()),
    nn.Tanh: lambda m: (Activation.TANH, ()),
    nn.Sigmoid: lambda m: (Activation.SIGMOID, ()),
    Sine: lambda m: (Activation.SINE, (m.w0,)),
    Swish: lambda m: (Activation.SWISH, (m.beta,)),
    nn.LeakyReLU: lambda m: (Activation.LEAKY_RELU, (m.negative_slope,)),
    nn.ELU: lambda m: (Activation.ELU, (m.alpha,)),
    nn.CELU: lambda m: (Activation.CELU, (m.alpha,)),
    nn.SELU: lambda m: (Activation.SELU, ()),
    nn.Softplus: lambda m: (Activation.SOFTPLUS, (m.beta, m.threshold)),
    nn.Mish: lambda m: (Activation.MISH, ()),
    nn.Hardswish: lambda m: (Activation.HARDSWISH, ()),
    nn.Hardsigmoid: lambda m: (Activation.HARDSIGMOID, ()),
    nn.LogSigmoid: lambda m: (Activation.LOG_SIGMOID, ()),
    nn.Softshrink: lambda m: (Activation.SOFTSHRINK, (m.lambd,)),
    nn.Hardshrink: lambda m: (Activation.HARDSHRINK, (m.lambd,)),
    nn.Threshold: lambda m: (Activation.THRESHOLD, (m.threshold, m.value)),
}


def _params(*names_defaults, inplace: bool = False):
    """A parser of ``(x, *args, **kwargs)`` into the named parameters (positional order as in
    ``torch.nn.functional``, and in ATen; a trailing ``inplace`` flag where the function has one)."""
    names = [n for n, _ in names_defaults] + (["inplace"] if inplace else [])

    def parse(args, kwargs):
        if len(args) > len(names):
            raise UnsupportedError(f"{len(args)} arguments, the function takes {names}")
        values = dict(names_defaults)
        values.update(zip(names, args))
        for name, value in kwargs.items():
            if name not in names:
                raise UnsupportedError(f"unknown argument {name}={value!r}")
            values[name] = value
        values.pop("inplace", None)
        missing = [n for n, v in values.items() if v is _REQUIRED]
        if missing:
            raise UnsupportedError(f"missing argument(s) {missing}")
        return values

    return parse


_REQUIRED = object()
_NONE = _params()
_INPLACE = _params(inplace=True)

#: functional target -> (argument parser, parsed arguments -> activation)
FUNCTIONS: dict[object, tuple[Callable, Callable[[dict], ActSpec]]] = {}


def _register(targets, parser, spec) -> None:
    for target in targets:
        if target is not None:
            FUNCTIONS[target] = (parser, spec)


_plain = lambda kind: (lambda p: (kind, ()))  # noqa: E731
_register((torch.relu, "relu", torch.relu_, "relu_"), _NONE, _plain(Activation.RELU))
_register((F.relu,), _INPLACE, _plain(Activation.RELU))
_register((F.relu6,), _INPLACE, _plain(Activation.RELU6))
_register((F.hardtanh, F.hardtanh_), _params(("min_val", -1.0), ("max_val", 1.0), inplace=True),
          lambda p: _hardtanh(p["min_val"], p["max_val"]))
_register((F.gelu,), _params(("approximate", "none")), lambda p: _gelu(p["approximate"]))
_register((F.silu,), _INPLACE, _plain(Activation.SILU))
_register((torch.tanh, F.tanh, "tanh"), _NONE, _plain(Activation.TANH))
_register((torch.sigmoid, F.sigmoid, "sigmoid"), _NONE, _plain(Activation.SIGMOID))
_register((F.leaky_relu,), _params(("negative_slope", 0.01), inplace=True), lambda p: (Activation.LEAKY_RELU, (p["negative_slope"],)))
_register((F.elu,), _params(("alpha", 1.0), inplace=True), lambda p: (Activation.ELU, (p["alpha"],)))
_register((F.celu, torch.celu), _params(("alpha", 1.0), inplace=True), lambda p: (Activation.CELU, (p["alpha"],)))
_register((F.selu, torch.selu), _INPLACE, _plain(Activation.SELU))
_register((F.softplus,), _params(("beta", 1.0), ("threshold", 20.0)),
          lambda p: (Activation.SOFTPLUS, (p["beta"], p["threshold"])))
_register((F.mish,), _INPLACE, _plain(Activation.MISH))
_register((F.hardswish,), _INPLACE, _plain(Activation.HARDSWISH))
_register((F.hardsigmoid,), _INPLACE, _plain(Activation.HARDSIGMOID))
_register((F.logsigmoid,), _NONE, _plain(Activation.LOG_SIGMOID))
_register((F.softshrink,), _params(("lambd", 0.5)), lambda p: (Activation.SOFTSHRINK, (p["lambd"],)))
_register((F.hardshrink, torch.hardshrink), _params(("lambd", 0.5)), lambda p: (Activation.HARDSHRINK, (p["lambd"],)))
_register((F.threshold, torch.threshold), _params(("threshold", _REQUIRED), ("value", _REQUIRED), inplace=True),
          lambda p: (Activation.THRESHOLD, (p["threshold"], p["value"])))


def module_activation(module: nn.Module) -> ActSpec | None:
    """The activation ``module`` computes, or ``None`` if its exact type is not a known activation."""
    read = MODULES.get(type(module))
    return None if read is None else read(module)


def apply_activation(ctx, node, x: TensorValue, act: Activation, args: tuple[float, ...] = ()) -> TensorValue:
    """Record ``act`` (with ``act_args`` ``args``) on ``x``'s neurons, or on fresh tied copies of them if
    ``x`` is used elsewhere too or already carries an activation."""
    x = ctx.neurons(x, x.axis if x.nodes is not None else 1 if len(x.shape) > 2 else -1, node)
    builder = ctx.builder
    shape = ctx.shape_of(node)
    fresh = ctx.used_once(x) and bool((builder.activation_of(x.nodes) == 0).all()) \
        and not builder.read_inside(x.nodes)
    if fresh:
        builder.set_activation(x.nodes, act, args)
        return x.with_(shape=shape, source=node)
    out = builder.tied_copies(x.nodes, NodeKind.ACTIVATION, layer=builder.node_layer(x.nodes) + 1)
    builder.add_edges(x.nodes, out, EdgeType.ACTIVATION, identity=True)
    builder.set_activation(out, act, args)
    return x.with_(nodes=out, shape=shape, source=node)


def _module_converter(ctx, node, x, *args, **kwargs):
    kind, act_args = module_activation(ctx.module_of(node))
    return apply_activation(ctx, node, x, kind, act_args)


def _function_converter(ctx, node, x, *args, **kwargs):
    parse, spec = FUNCTIONS[node.target]
    try:
        kind, act_args = spec(parse(args, kwargs))
    except UnsupportedError as error:
        raise UnsupportedError(f"{describe(node)}: {error}") from None
    return apply_activation(ctx, node, x, kind, act_args)


register_module(*MODULES)(_module_converter)
register_function(*FUNCTIONS)(_function_converter)
