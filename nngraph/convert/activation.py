"""Element-wise activations: recorded on the neurons they act on (no new nodes), unless the
value they act on is also used raw, in which case new neurons are made, tied to the old ones
by identity edges."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modules import Sine
from ..schema import Activation, EdgeType, NodeKind
from .registry import register_function, register_module
from .values import TensorValue

_MODULES = {
    nn.ReLU: Activation.RELU,
    nn.ReLU6: Activation.RELU,
    nn.GELU: Activation.GELU,
    nn.SiLU: Activation.SILU,
    nn.Tanh: Activation.TANH,
    nn.Sigmoid: Activation.SIGMOID,
    Sine: Activation.SINE,
    nn.LeakyReLU: Activation.LEAKY_RELU,
    nn.ELU: Activation.ELU,
    nn.Softplus: Activation.SOFTPLUS,
    nn.Mish: Activation.OTHER,
    nn.Hardswish: Activation.OTHER,
    nn.Hardtanh: Activation.OTHER,
}
_FUNCTIONS = {
    torch.relu: Activation.RELU,
    F.relu: Activation.RELU,
    "relu": Activation.RELU,
    F.gelu: Activation.GELU,
    F.silu: Activation.SILU,
    torch.tanh: Activation.TANH,
    F.tanh: Activation.TANH,
    "tanh": Activation.TANH,
    torch.sigmoid: Activation.SIGMOID,
    F.sigmoid: Activation.SIGMOID,
    "sigmoid": Activation.SIGMOID,
    F.leaky_relu: Activation.LEAKY_RELU,
    F.elu: Activation.ELU,
    F.softplus: Activation.SOFTPLUS,
}


def apply_activation(ctx, node, x: TensorValue, act: Activation) -> TensorValue:
    """Record ``act`` on ``x``'s neurons, or on fresh tied copies of them if ``x`` is used elsewhere
    too or already carries an activation."""
    x = ctx.neurons(x, x.axis if x.nodes is not None else 1 if len(x.shape) > 2 else -1, node)
    builder = ctx.builder
    shape = ctx.shape_of(node)
    fresh = ctx.used_once(x) and bool((builder.activation_of(x.nodes) == 0).all())
    if fresh:
        builder.set_activation(x.nodes, act)
        return x.with_(shape=shape, source=node)
    out = builder.add_nodes(x.num_neurons, NodeKind.ACTIVATION, layer=builder.node_layer(x.nodes) + 1)
    builder.add_edges(x.nodes, out, EdgeType.ACTIVATION, identity=True)
    builder.tie(x.nodes, out)
    builder.set_activation(out, act)
    return x.with_(nodes=out, shape=shape, source=node)


def _module_converter(ctx, node, x, *args, **kwargs):
    return apply_activation(ctx, node, x, _MODULES[type(ctx.module_of(node))])


def _function_converter(ctx, node, x, *args, **kwargs):
    return apply_activation(ctx, node, x, _FUNCTIONS[node.target])


register_module(*_MODULES)(_module_converter)
register_function(*_FUNCTIONS)(_function_converter)
