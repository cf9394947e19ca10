"""Reach models torch.fx cannot trace symbolically, through ``torch.export``.

``torch.export`` produces an ATen-level graph in which parameters are inputs. :func:`lift_export`
lifts it back to the level the converters work at: every ``aten.linear`` / ``aten.conv2d`` /
``aten.batch_norm`` / ``aten.layer_norm`` / ``aten.group_norm`` / ``aten.embedding`` call becomes a
``call_module`` node of an equivalent ``torch.nn`` layer (built on the meta device, holding no
data), and element-wise and structural ATen ops become the torch functions the converters know.
The parameter names of these stand-in layers are aliased to the real parameter names of the
model, so the layout reads and writes the model's own parameters. An ATen op with no mapping is
kept as is, and the walk refuses it by name.

Layers that torch.export decomposes into many ATen ops (``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder``, ``nn.LPPool*``) are found again by the
``nn_module_stack`` every exported node records, and their whole subgraph becomes one
``call_module`` of a meta-device copy of the layer, as fx keeps it; self-attention only (one input
tensor, no mask tensors), the rest is refused.
"""
from __future__ import annotations

import copy
import operator
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..modules import Sine
from .errors import UnsupportedError
from .export_patterns import find_activations, find_normalizes, find_norms
from .linear import TransposedLinear
from .values import FOLD_LIMIT

aten = torch.ops.aten


@dataclass(frozen=True)
class _ShapeMeta:
    shape: torch.Size


class _ComputedWeight(UnsupportedError):
    """A layer's weight is computed in forward (weight norm, a standardised kernel): the ATen call stays as it is
    and the walk's fallback converts it (:mod:`nngraph.convert.fallback`)."""


@dataclass(frozen=True)
class _ParamRef:
    name: str  # the model's parameter / buffer name
    shape: torch.Size


@dataclass(frozen=True)
class _Scaled:
    node: fx.Node  # the lifted tensor
    factor: float


@dataclass(frozen=True)
class _Padded:
    """``aten.pad`` with a non-constant mode, waiting for the convolution it belongs to (a
    convolution with ``padding_mode`` other than ``"zeros"`` exports as ``pad`` then ``conv``)."""

    node: fx.Node  # the lifted tensor before padding
    pad: tuple[int, ...]  # (left_w, right_w, left_h, right_h, ...), as F.pad takes it
    mode: str


_FUNCTIONS = {
    aten.relu.default: torch.relu,
    aten.relu_.default: torch.relu,
    aten.tanh.default: torch.tanh,
    aten.sigmoid.default: torch.sigmoid,
    aten.silu.default: F.silu,
    aten.gelu.default: F.gelu,
    aten.leaky_relu.default: F.leaky_relu,
    aten.softplus.default: F.softplus,
    aten.hardtanh.default: F.hardtanh,  # ReLU6 and F.relu6 export as hardtanh(0, 6)
    aten.hardswish.default: F.hardswish,
    aten.hardsigmoid.default: F.hardsigmoid,
    aten.mish.default: F.mish,
    aten.selu.default: F.selu,
    aten.celu.default: F.celu,
    aten.log_sigmoid.default: F.logsigmoid,
    aten.softshrink.default: F.softshrink,
    aten.hardshrink.default: F.hardshrink,
    aten.threshold.default: F.threshold,
    aten.add.Tensor: operator.add,
    aten.add_.Tensor: operator.add,
    aten.flatten.using_ints: torch.flatten,
    aten.view.default: torch.reshape,
    aten.reshape.default: torch.reshape,
    aten.mean.dim: torch.mean,
    aten.sum.dim_IntList: torch.sum,
    aten.amax.default: torch.amax,
    aten.amin.default: torch.amin,
    aten.adaptive_avg_pool1d.default: F.adaptive_avg_pool1d,
    aten.adaptive_avg_pool2d.default: F.adaptive_avg_pool2d,
    aten.adaptive_avg_pool3d.default: F.adaptive_avg_pool3d,
    aten.max_pool1d.default: F.max_pool1d,
    aten.max_pool2d.default: F.max_pool2d,
    aten.max_pool3d.default: F.max_pool3d,
    aten.avg_pool1d.default: F.avg_pool1d,
    aten.avg_pool2d.default: F.avg_pool2d,
    aten.avg_pool3d.default: F.avg_pool3d,
    aten.dropout.default: F.dropout,
    aten.clone.default: "clone",
    aten.contiguous.default: "contiguous",
}
for _name, _fn in (("relu_", torch.relu), ("tanh_", torch.tanh), ("sigmoid_", torch.sigmoid), ("silu_", F.silu),
                   ("leaky_relu_", F.leaky_relu), ("hardtanh_", F.hardtanh), ("hardswish_", F.hardswish),
                   ("hardsigmoid_", F.hardsigmoid), ("mish_", F.mish), ("selu_", F.selu), ("celu_", F.celu),
                   ("threshold_", F.threshold)):
    if hasattr(aten, _name):  # in-place forms, where ATen has them
        _FUNCTIONS[getattr(aten, _name).default] = _fn


#: layers whose exported subgraph is collapsed back into one call of the layer
_COLLAPSED = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.LPPool1d, nn.LPPool2d,
              *((nn.LPPool3d,) if hasattr(nn, "LPPool3d") else ()))


class _Lifter:
    def __init__(self, program: torch.export.ExportedProgram, module: nn.Module):
        self.program = program
        self.module = module
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.aliases: dict[str, str] = {}
        self.env: dict[fx.Node, Any] = {}
        self._reads: dict[fx.Node, fx.Node] = {}
        self._scales: dict[fx.Node, fx.Node] = {}
        sig = program.graph_signature
        self.param_of = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
        # tensors the forward builds from constants (a mask written as a literal): constants, not inputs
        self.lifted = dict(getattr(sig, "inputs_to_lifted_tensor_constants", None) or {})
        self.non_persistent = set(getattr(sig, "non_persistent_buffers", ()) or ())
        self.constants: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def _shape(self, node: fx.Node) -> torch.Size | None:
        val = node.meta.get("val")
        return val.shape if isinstance(val, torch.Tensor) else None

    def _emit(self, op: str, target: Any, args: tuple, kwargs: dict, like: fx.Node) -> fx.Node:
        new = self.graph.create_node(op, target, args, kwargs, name=like.name)
        if "val" in like.meta:  # the fake value (shapes and dtypes, also of several outputs): the fallback reads it
            new.meta["val"] = like.meta["val"]
        shape = self._shape(like)
        if shape is not None:
            new.meta["tensor_meta"] = _ShapeMeta(shape)
        return new

    def _arg(self, value: Any) -> Any:
        """Map an exported argument to the lifted graph (a parameter used as data is refused)."""
        if isinstance(value, fx.Node):
            mapped = self.env[value]
            if isinstance(mapped, _ParamRef):  # read as data: the walk decides what it may do
                return self._param_read(value, mapped)
            if isinstance(mapped, _Padded):
                raise UnsupportedError(
                    f"padding with mode {mapped.mode!r} is used other than directly by a convolution "
                    "(as padding_mode does); padding activations is not supported"
                )
            if isinstance(mapped, _Scaled):  # not inside sin(w0 * x): a scale of its own
                if value not in self._scales:
                    scaled = self.graph.create_node("call_function", operator.mul, (mapped.node, mapped.factor), {},
                                                    name=f"scale_{value.name}")
                    shape = self._shape(value)
                    if shape is not None:
                        scaled.meta["tensor_meta"] = _ShapeMeta(shape)
                    self._scales[value] = scaled
                return self._scales[value]
            return mapped
        if isinstance(value, (list, tuple)):
            return type(value)(self._arg(v) for v in value)
        return value

    def _param(self, value: Any) -> _ParamRef | None:
        if value is None:
            return None
        mapped = self.env.get(value) if isinstance(value, fx.Node) else None
        if not isinstance(mapped, _ParamRef):
            raise _ComputedWeight(f"a layer's weight is computed in forward ({value})")
        return mapped

    def _module(self, layer: nn.Module, like: fx.Node, params: dict[str, _ParamRef | None], x: fx.Node) -> fx.Node:
        named = [p for p in params.values() if p is not None]
        prefix = named[0].name.rsplit(".", 1)[0] if named and "." in named[0].name else like.name
        base = re.sub(r"\W", "_", prefix) or "layer"
        name, k = base, 1
        while hasattr(self.root, name):
            name, k = f"{base}_{k}", k + 1
        self.root.add_module(name, layer)
        for attr, ref in params.items():
            if ref is not None:
                self.aliases[f"{name}.{attr}"] = ref.name
        return self._emit("call_module", name, (x,), {}, like)

    def _param_read(self, node: fx.Node, ref: _ParamRef) -> fx.Node:
        """A ``get_attr`` of parameter ``ref``, aliased to the model's name (created once)."""
        if node in self._reads:
            return self._reads[node]
        attr = "param_" + re.sub(r"\W", "_", ref.name)
        self.root.register_parameter(attr, nn.Parameter(torch.empty(ref.shape, device="meta")))
        self.aliases[attr] = ref.name
        read = self.graph.create_node("get_attr", attr, (), {}, name=f"read_{node.name}")
        read.meta["tensor_meta"] = _ShapeMeta(ref.shape)
        self._reads[node] = read
        return read

    def _constant(self, node: fx.Node, name: str, val: torch.Tensor, keep_floats: bool = False) -> fx.Node:
        """An integer or boolean buffer (``position_ids``, ``token_type_ids``), or with ``keep_floats`` a
        tensor constant of the forward: a constant of the model, not a parameter, read through a
        ``get_attr`` of a stand-in on the meta device."""
        attr = re.sub(r"\W", "_", name)
        real = self.program.state_dict.get(name, self.program.constants.get(name))
        small = isinstance(real, torch.Tensor) and (keep_floats or not real.is_floating_point()) and \
            real.numel() <= FOLD_LIMIT
        # integer constants keep their values (index tables such as Swin's relative positions are read)
        self.root.register_buffer(attr, real.detach().cpu().clone() if small else
                                  torch.empty(val.shape, dtype=val.dtype, device="meta"))
        self.constants.add(attr)
        return self._emit("get_attr", attr, (), {}, node)

    # --------------------------------------------------------------- layers
    def linear(self, node, x, w, b=None):
        w, b = self._param(w), self._param(b)
        layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device="meta")
        return self._module(layer, node, {"weight": w, "bias": b}, self._arg(x))

    def conv(self, node, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        w, b = self._param(w), self._param(b)
        dims = len(w.shape) - 2
        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        padding = padding if isinstance(padding, str) else tuple(padding) if isinstance(padding, (list, tuple)) else padding
        padding_mode = "zeros"
        source = self.env[x] if isinstance(x, fx.Node) else None
        if isinstance(source, _Padded):  # pad(mode) + conv(padding=0) is a conv with that padding_mode
            pairs = [source.pad[2 * i: 2 * i + 2] for i in range(len(source.pad) // 2)][::-1]  # (before, after) per dim
            if len(pairs) != dims or any(a != c for a, c in pairs) or _any_nonzero(padding):
                raise UnsupportedError(
                    f"a convolution reads an input padded by {list(source.pad)} (mode {source.mode!r}); only the "
                    "symmetric padding of a convolution's own padding_mode is supported"
                )
            padding, padding_mode, x = tuple(a for a, _ in pairs), source.mode, source.node
        else:
            x = self._arg(x)
        layer = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=stride, padding=padding,
                    dilation=dilation, groups=groups, bias=b is not None, padding_mode=padding_mode, device="meta")
        return self._module(layer, node, {"weight": w, "bias": b}, x)

    def conv_transpose(self, node, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        w, b = self._param(w), self._param(b)  # weight (C_in, C_out / g, *k)
        dims = len(w.shape) - 2
        cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dims]
        layer = cls(w.shape[0], w.shape[1] * groups, tuple(w.shape[2:]), stride=stride, padding=padding,
                    output_padding=output_padding, groups=groups, bias=b is not None, dilation=dilation,
                    device="meta")
        return self._module(layer, node, {"weight": w, "bias": b}, self._arg(x))

    def pad(self, node, x, pad, mode="constant", value=None):
        if mode == "constant":
            return self._emit("call_function", F.pad, (self._arg(x), pad, mode, value), {}, node)  # refused by the walk
        return _Padded(self._arg(x), tuple(int(p) for p in pad), mode)

    def elu(self, node, x, alpha=1.0, scale=1.0, input_scale=1.0):
        if scale != 1 or input_scale != 1:
            raise UnsupportedError(f"aten.elu with scale={scale}, input_scale={input_scale}; only F.elu's are supported")
        return self._emit("call_function", F.elu, (self._arg(x), alpha), {}, node)

    def select(self, node, x, dim, index):
        """``x.select(dim, i)`` (``x[:, i]``) as the indexing the walk knows."""
        dim = dim % len(self._shape(x))
        return self._emit("call_function", operator.getitem, (self._arg(x), (slice(None),) * dim + (index,)), {}, node)

    def slice(self, node, x, dim=0, start=None, end=None, step=1):
        shape = self._shape(x)
        dim = dim % len(shape)
        whole = (start in (None, 0)) and (end is None or end >= shape[dim]) and step == 1
        item = slice(None) if whole else slice(start, end, None if step == 1 else step)
        return self._emit("call_function", operator.getitem, (self._arg(x), (slice(None),) * dim + (item,)), {}, node)

    def addmm(self, node, b, x, w, beta=1, alpha=1):
        """``addmm(bias, x, weight)`` with parameters: Hugging Face's Conv1D (a transposed Linear)."""
        if beta != 1 or alpha != 1:
            raise UnsupportedError(f"exported addmm at {node.name!r} scales its terms (beta={beta}, alpha={alpha})")
        w, b = self._param(w), self._param(b)
        layer = TransposedLinear(w.shape[0], w.shape[1], bias=b is not None, device="meta")
        return self._module(layer, node, {"weight": w, "bias": b}, self._arg(x))

    def batch_norm(self, node, x, w, b, mean, var, training, momentum, eps, *rest):
        w, b, mean, var = (self._param(v) for v in (w, b, mean, var))
        ndim = len(self._shape(x))
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[ndim]
        channels = self._shape(x)[1]
        layer = cls(channels, eps=eps, momentum=momentum, affine=w is not None,
                    track_running_stats=mean is not None, device="meta")
        return self._module(layer, node, {"weight": w, "bias": b, "running_mean": mean, "running_var": var}, self._arg(x))

    def layer_norm(self, node, x, shape, w=None, b=None, eps=1e-5, *rest):
        w, b = self._param(w), self._param(b)
        layer = nn.LayerNorm(tuple(shape), eps=eps, elementwise_affine=w is not None, bias=b is not None, device="meta")
        return self._module(layer, node, {"weight": w, "bias": b}, self._arg(x))

    def group_norm(self, node, x, groups, w=None, b=None, eps=1e-5, *rest):
        w, b = self._param(w), self._param(b)
        layer = nn.GroupNorm(groups, self._shape(x)[1], eps=eps, affine=w is not None, device="meta")
        return self._module(layer, node, {"weight": w, "bias": b}, self._arg(x))

    def embedding(self, node, w, ids, padding_idx=-1, *rest):
        w = self._param(w)
        layer = nn.Embedding(w.shape[0], w.shape[1], padding_idx=None if padding_idx == -1 else padding_idx, device="meta")
        return self._module(layer, node, {"weight": w}, self._arg(ids))

    def mul(self, node, a, b):
        if isinstance(b, (int, float)) and isinstance(a, fx.Node):
            return _Scaled(self._arg(a), float(b))
        if isinstance(a, (int, float)) and isinstance(b, fx.Node):
            return _Scaled(self._arg(b), float(a))
        return self._emit("call_function", node.target, self._arg((a, b)), {}, node)

    def adaptive_max_pool(self, node, x, output_size):
        """ATen returns ``(values, indices)``; the indices are never used by a layer we convert."""
        fn = {3: F.adaptive_max_pool1d, 4: F.adaptive_max_pool2d, 5: F.adaptive_max_pool3d}[len(self._shape(x))]
        values = self.graph.create_node("call_function", fn, (self._arg(x), output_size), {}, name=node.name)
        val = node.meta.get("val")
        if isinstance(val, (tuple, list)) and isinstance(val[0], torch.Tensor):
            values.meta["tensor_meta"] = _ShapeMeta(val[0].shape)
        return (values, None)

    def recurrent(self, node, x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        """``aten.lstm`` / ``aten.gru`` / ``aten.rnn_tanh`` / ``aten.rnn_relu``: one call of a meta-device
        ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` whose parameters alias the flat list the op reads, giving the
        op's flat ``(output, h_n[, c_n])``. The zero initial state the module builds (``aten.zeros``) is
        dropped; any other initial state is passed on (the converter fixes or refuses it)."""
        kind, extra = {aten.lstm.input: (nn.LSTM, {}), aten.gru.input: (nn.GRU, {}),
                       aten.rnn_tanh.input: (nn.RNN, {"nonlinearity": "tanh"}),
                       aten.rnn_relu.input: (nn.RNN, {"nonlinearity": "relu"})}[node.target]
        refs = [self._param(p) for p in params]
        per_direction = 4 if has_biases else 2
        directions = 2 if bidirectional else 1
        if len(refs) != per_direction * directions * num_layers:
            raise UnsupportedError(f"exported {node.target} at {node.name!r} reads {len(refs)} parameters; a projection "
                                   "(LSTM proj_size) is not supported")
        layer = kind(refs[0].shape[1], refs[1].shape[1], num_layers=num_layers, bias=has_biases, batch_first=batch_first,
                     dropout=dropout, bidirectional=bidirectional, device="meta", **extra)
        names = [n for n, _ in layer.named_parameters()]  # the module's order is the op's flat order
        call = self._module(layer, node, dict(zip(names, refs)), self._arg(x))
        states = list(hx) if isinstance(hx, (list, tuple)) else [hx]
        if not all(isinstance(h, fx.Node) and h.target in (aten.zeros.default, aten.zeros_like.default) for h in states):
            call.args = (call.args[0], self._arg(tuple(states) if kind is nn.LSTM else hx))
        call.meta.pop("tensor_meta", None)
        vals = node.meta.get("val")

        def item(source, index, val, label):
            out = self.graph.create_node("call_function", operator.getitem, (source, index), {},
                                         name=f"{node.name}_{label}")
            if isinstance(val, torch.Tensor):
                out.meta["tensor_meta"] = _ShapeMeta(val.shape)
            return out

        vals = list(vals) if isinstance(vals, (list, tuple)) else [None] * (3 if kind is nn.LSTM else 2)
        out = item(call, 0, vals[0], "output")
        if kind is nn.LSTM:  # the module returns (output, (h_n, c_n)); the op returns them flat
            pair = item(call, 1, None, "states")
            return (out, item(pair, 0, vals[1], "h_n"), item(pair, 1, vals[2], "c_n"))
        return (out, item(call, 1, vals[1], "h_n"))

    def getitem(self, node, container, index):
        mapped = self.env[container]
        if isinstance(mapped, tuple):  # a tuple made at lift time
            return mapped[index]
        return self._emit("call_function", operator.getitem, (self._arg(container), index), {}, node)

    def sin(self, node, x):
        mapped = self.env[x]
        w0, source = (mapped.factor, mapped.node) if isinstance(mapped, _Scaled) else (1.0, self._arg(x))
        name = f"sine_{node.name}"
        self.root.add_module(name, Sine(w0))
        return self._emit("call_module", name, (source,), {}, node)

    # ------------------------------------------------------- collapsed layers
    def _groups(self) -> dict[fx.Node, str]:
        """Exported node -> path of the outermost layer of :data:`_COLLAPSED` it was made by."""
        out = {}
        for node in self.program.graph.nodes:
            if node.op != "call_function":
                continue
            for path, _ in (node.meta.get("nn_module_stack") or {}).values():
                try:
                    layer = self.module.get_submodule(path)
                except AttributeError:
                    continue
                if type(layer) in _COLLAPSED:
                    out[node] = path
                    break
        return out

    def _boundary(self, members: list[fx.Node]) -> tuple[list[fx.Node], list[fx.Node]]:
        """The tensors the exported ``members`` of one layer read from outside and the ones used outside."""
        inside = set(members)
        inputs, outputs = [], []
        for node in members:
            for arg in node.all_input_nodes:
                if arg not in inside and arg.name not in self.param_of and arg not in inputs:
                    inputs.append(arg)
            if any(user not in inside for user in node.users):
                outputs.append(node)
        return inputs, outputs

    def collapsible(self, path: str, members: list[fx.Node]) -> bool:
        """Whether layer ``path`` can be one call again: one tensor in (self-attention without mask tensors), one
        out, and for attention its output (not its weights). Other uses (cross-attention, masks) stay the ATen
        operations they were exported as: the converters or the fallback take them one by one."""
        inputs, outputs = self._boundary(members)
        if len(inputs) != 1 or len(outputs) != 1:
            return False
        layer = self.module.get_submodule(path)
        return not isinstance(layer, nn.MultiheadAttention) or self._made_by_out_proj(outputs[0], set(members), path)

    def collapse(self, path: str, members: list[fx.Node]) -> None:
        """Replace the exported ``members`` of layer ``path`` by one call of (a meta copy of) it (:meth:`collapsible`)."""
        layer = self.module.get_submodule(path)
        (source,), (result,) = self._boundary(members)
        base = re.sub(r"\W", "_", path) or "layer"
        name, k = base, 1
        while hasattr(self.root, name):
            name, k = f"{base}_{k}", k + 1
        self.root.add_module(name, copy.deepcopy(layer).to("meta"))
        prefix = f"{path}." if path else ""
        for tensor_name, _ in [*layer.named_parameters(remove_duplicate=False), *layer.named_buffers(remove_duplicate=False)]:
            self.aliases[f"{name}.{tensor_name}"] = prefix + tensor_name
        x = self._arg(source)
        shape = _ShapeMeta(self._shape(result))
        if isinstance(layer, nn.MultiheadAttention):  # (output, weights), as fx calls it
            call = self.graph.create_node("call_module", name, (x, x, x), {}, name=f"{name}_call")
            call.meta["tensor_meta"] = (shape, None)
            self.env[result] = self.graph.create_node("call_function", operator.getitem, (call, 0), {}, name=result.name)
            self.env[result].meta["tensor_meta"] = shape
        else:
            self.env[result] = self._emit("call_module", name, (x,), {}, result)

    def _made_by_out_proj(self, node: fx.Node, inside: set, path: str) -> bool:
        """Whether ``node`` is (a view of) the output projection of attention ``path``."""
        weight = f"{path}.out_proj.weight" if path else "out_proj.weight"
        while node in inside:
            if node.target is aten.linear.default:
                return self.param_of.get(node.args[1].name) == weight
            inputs = node.all_input_nodes
            if len(inputs) != 1:
                return False
            node = inputs[0]
        return False

    # -------------------------------------------------------------------- run
    def run(self) -> tuple[fx.GraphModule, dict[str, str]]:
        layers = {
            aten.linear.default: self.linear,
            aten.addmm.default: self.addmm,
            aten.conv1d.default: self.conv, aten.conv2d.default: self.conv, aten.conv3d.default: self.conv,
            aten.conv1d.padding: self.conv, aten.conv2d.padding: self.conv, aten.conv3d.padding: self.conv,
            aten.conv_transpose1d.default: self.conv_transpose, aten.conv_transpose2d.input: self.conv_transpose,
            aten.conv_transpose3d.input: self.conv_transpose,
            aten.pad.default: self.pad,
            aten.elu.default: self.elu,
            aten.select.int: self.select,
            aten.slice.Tensor: self.slice,
            aten.batch_norm.default: self.batch_norm,
            aten.layer_norm.default: self.layer_norm,
            aten.group_norm.default: self.group_norm,
            aten.embedding.default: self.embedding,
            aten.mul.Tensor: self.mul,
            aten.sin.default: self.sin,
            aten.adaptive_max_pool1d.default: self.adaptive_max_pool,
            aten.adaptive_max_pool2d.default: self.adaptive_max_pool,
            aten.adaptive_max_pool3d.default: self.adaptive_max_pool,
            aten.lstm.input: self.recurrent, aten.gru.input: self.recurrent,
            aten.rnn_tanh.input: self.recurrent, aten.rnn_relu.input: self.recurrent,
            operator.getitem: self.getitem,
        }
        groups = self._groups()
        members: dict[str, list[fx.Node]] = {}
        for node, path in groups.items():
            members.setdefault(path, []).append(node)
        kept = {path for path, nodes in members.items() if self.collapsible(path, nodes)}
        groups = {node: path for node, path in groups.items() if path in kept}
        spelled_out, inner = find_activations(self.program.graph)
        norms, norm_inner = find_norms(self.program.graph, lambda n: n.op == "placeholder" and n.name in self.param_of
                                       and self.param_of[n.name] not in self.non_persistent)
        inner |= norm_inner
        normalizes, normalize_inner = find_normalizes(self.program.graph)
        inner |= normalize_inner
        for node in self.program.graph.nodes:
            if node in inner:
                continue
            if node in normalizes:
                x, p, dim, eps = normalizes[node]
                self.env[node] = self._emit("call_function", F.normalize, (self._arg(x),),
                                            {"p": p, "dim": dim, "eps": eps}, node)
                continue
            if node in norms:
                x, weight, eps, offset = norms[node]
                ref = self._param(weight)  # a parameter: find_norms matches only those
                layer = nn.RMSNorm(ref.shape[-1], eps=eps, elementwise_affine=True, device="meta")
                layer.weight_offset = offset  # Gemma's 1 + weight: the norm converter records it
                self.env[node] = self._module(layer, node, {"weight": ref}, self._arg(x))
                continue
            if node in spelled_out:
                x, activation = spelled_out[node]
                name = f"act_{node.name}"
                self.root.add_module(name, activation)
                self.env[node] = self._emit("call_module", name, (self._arg(x),), {}, node)
                continue
            if node in groups:
                path = groups[node]
                if members[path][0] is node:
                    self.collapse(path, members[path])
                continue
            if node.op == "placeholder":
                val = node.meta.get("val")
                constant = node.name in self.param_of and self.param_of[node.name] in self.non_persistent
                if node.name in self.lifted and isinstance(val, torch.Tensor):
                    self.env[node] = self._constant(node, self.lifted[node.name], val, keep_floats=True)
                elif node.name in self.param_of and isinstance(val, torch.Tensor) and (not val.is_floating_point() or constant):
                    self.env[node] = self._constant(node, self.param_of[node.name], val, keep_floats=constant)
                elif node.name in self.param_of:
                    self.env[node] = _ParamRef(self.param_of[node.name], self._shape(node))
                else:
                    self.env[node] = self._emit("placeholder", node.target, (), {}, node)
            elif node.op == "output":
                self.graph.output(self._arg(node.args[0]))
            elif node.op == "call_function" and node.target in layers:
                try:
                    self.env[node] = layers[node.target](node, *node.args, **node.kwargs)
                except _ComputedWeight:  # kept as the ATen call: the walk's fallback converts it
                    self.env[node] = self._emit("call_function", node.target, self._arg(node.args),
                                                self._arg(node.kwargs), node)
            elif node.op == "call_function" and node.target in _FUNCTIONS:
                target = _FUNCTIONS[node.target]
                op = "call_method" if isinstance(target, str) else "call_function"
                kwargs = {k: v for k, v in self._arg(node.kwargs).items() if k != "train"}
                args = self._arg(node.args)
                if node.target is aten.dropout.default:
                    args = args[:1]
                self.env[node] = self._emit(op, target, args, kwargs, node)
            elif node.op == "call_function":
                self.env[node] = self._emit("call_function", node.target, self._arg(node.args), self._arg(node.kwargs), node)
            else:
                raise UnsupportedError(f"exported graph node {node.format_node()} is not supported")
        gm = fx.GraphModule(self.root, self.graph)
        gm.meta["constants"] = set(self.constants)
        return gm, self.aliases


def _any_nonzero(padding) -> bool:
    if isinstance(padding, str):
        return padding != "valid"
    return any(int(p) != 0 for p in (padding if isinstance(padding, (list, tuple)) else (padding,)))


def lift_export(module: nn.Module, example_inputs: Sequence[torch.Tensor]) -> tuple[fx.GraphModule, dict[str, str]]:
    """Export ``module`` with ``example_inputs`` and lift the ATen graph to layer level.

    Returns:
        ``(graph_module, aliases)``: the lifted graph (stand-in layers on the meta device, every node
        annotated with ``meta['tensor_meta'].shape``) and a map from stand-in parameter names to
        the model's parameter names.
    """
    was_training = module.training
    module.eval()
    try:
        program = torch.export.export(module, tuple(example_inputs))
    except Exception as error:
        raise UnsupportedError(f"torch.export could not export {type(module).__name__}: {error}") from error
    finally:
        module.train(was_training)
    return _Lifter(program, module).run()
