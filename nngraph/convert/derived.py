"""Linear and convolution layers whose weight is computed from parameters in ``forward``.

``torch.nn.utils.parametrizations.weight_norm`` (``g * v / ||v||`` row by row), a weight-standardised convolution
(``(w - mean) / std`` per output channel, BiT, NFNet) and the like call ``F.linear`` / ``F.conv*d`` with a
:class:`~nngraph.convert.values.DerivedParam` ``D``. Such a layer keeps its symmetry when its derivation commutes
with relabelling its neurons:

.. math::
    D(P_{out}\\, \\theta\\, P_{in}^\\top) = P_{out}\\, D(\\theta)\\, P_{in}^\\top

for every base parameter :math:`\\theta` permuted along axis 0 (output neurons) and axis 1 (input neurons) where
it has ``D``'s size there. :func:`convert_derived_layer` takes the layer when

- every base parameter has ``D``'s number of dimensions, each of size ``D``'s or 1: exactly one has ``D``'s shape
  (``v``, ``w``), the others are per output neuron (``(C_out, 1, ...)``: ``g``), at most four, or span no neuron
  axis (``(1, 1, ...)``);
- run in float64 on random base parameters (constants of the forward at their values), the derivation gives equal
  results on repeated calls and commutes with random permutations of the output axis, of the input axis and of
  both (:data:`TRIALS` draws of each);
- the convolution is ungrouped, the bias a plain parameter (or none).

The layer is then converted like ``nn.Linear`` / ``nn.Conv*d``: the ``D``-shaped parameter on the
:attr:`~nngraph.schema.EdgeType.WEIGHT` edges, entry for entry where the weight would be; the per-output
parameters in the free feature columns of the output neurons (``norm_weight``, ``norm_bias``, ``running_mean``,
``running_var``, in the order the derivation reads them), so that they move with their neuron; parameters that
span no neuron axis on fixed :attr:`~nngraph.schema.NodeKind.PARAMETER` nodes. ``op_code`` of the output neurons
records the derivation (its operations, constants and shapes, and which parameter went where), so that the
encoder knows the weight is not used as stored. The layout lists the layer in ``fallbacks``: the claimed symmetry
is proven on the model (:func:`nngraph.convert.repair.repair`), not assumed. Anything else returns ``None`` and
the layer goes to the fallback (:mod:`nngraph.convert.fallback`), its neurons fixed.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..schema import BIAS, NORM_BIAS, NORM_WEIGHT, OP_CATEGORIES, RUNNING_MEAN, RUNNING_VAR, EdgeType, NodeKind
from .conv import conv_args, kernel_shape_3d
from .errors import describe
from .fallback import op_code
from .values import DerivedParam, Opaque, ParamValue, TensorValue

aten = torch.ops.aten

#: Random draws of the base parameters; each tries a permutation of the output axis, of the input axis and of both.
TRIALS = 3
#: Free feature columns of a linear / conv output neuron, filled by its per-output base parameters in order.
PER_OUTPUT_COLUMNS = (NORM_WEIGHT, NORM_BIAS, RUNNING_MEAN, RUNNING_VAR)

_LINEAR = {F.linear, aten.linear.default}
_CONV = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3, aten.conv1d.default: 1, aten.conv2d.default: 2,
         aten.conv3d.default: 3, aten.conv1d.padding: 1, aten.conv2d.padding: 2, aten.conv3d.padding: 3}
_CONV_MODULES = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_ARG_NAMES = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}


class _Untestable(Exception):
    """The derivation cannot be rerun here (a module with tensors, an unknown constant, an error)."""


def is_layer_call(node: fx.Node) -> bool:
    """Whether ``node`` is a functional linear or (forward) convolution."""
    return node.op == "call_function" and (node.target in _LINEAR or node.target in _CONV)


def convert_derived_layer(ctx, node: fx.Node, args: tuple, kwargs: dict) -> TensorValue | None:
    """``node`` (``F.linear`` / ``F.conv*d`` whose weight is a :class:`DerivedParam`) converted with its symmetry
    (module docstring), or ``None`` where that is not shown: nothing is added to the graph then."""
    if not is_layer_call(node):
        return None
    bound = dict(zip(_ARG_NAMES, args))
    if set(bound) & set(kwargs):
        return None
    bound.update(kwargs)
    x, weight, bias = bound.get("input"), bound.get("weight"), bound.get("bias")
    if not (isinstance(x, TensorValue) and isinstance(weight, DerivedParam) and weight.shape is not None
            and isinstance(weight.source, fx.Node)):
        return None
    if x.spatial or x.heads or x.merged != 1 or x.pending:
        return None
    dshape = tuple(weight.shape)
    dims = _CONV.get(node.target, 0)
    if len(dshape) != dims + 2 or dshape[0] < 1:
        return None
    if x.padded and (not dims or len(x.padded) // 2 > dims):
        return None
    geometry = None
    if dims:
        options = {k: _constant(bound.get(k, v)) for k, v in _CONV_DEFAULTS.items() if k != "bias"}
        if any(v is _UNKNOWN for v in options.values()) or options["groups"] != 1:
            return None
        try:
            geometry = _CONV_MODULES[dims](dshape[1], dshape[0], dshape[2:], stride=_tuple(options["stride"]),
                                           padding=_tuple(options["padding"]), dilation=_tuple(options["dilation"]),
                                           bias=False, device="meta")
        except Exception:  # an argument nn.Conv*d refuses: not a plain convolution
            return None
    if bias is not None and not _plain(bias, (dshape[0],)):
        return None
    shapes = {}
    for name in weight.names:
        tensor = ctx.builder.named_tensors.get(ctx.builder.aliases.get(name, name))
        if tensor is None or not tensor.is_floating_point():
            return None
        shapes[name] = tuple(tensor.shape)
    roles = _roles(shapes, dshape)
    if roles is None:
        return None
    full, per_output, free = roles
    try:
        run, described = _derivation(ctx, weight.source, set(shapes))
        if not _commutes(run, shapes, dshape):
            return None
    except _Untestable:
        return None
    return _place(ctx, node, x, dshape, geometry, bias, full, per_output, free, described)


# ----------------------------------------------------------------------------------------------- the test
def _roles(shapes: dict[str, tuple[int, ...]], dshape: tuple[int, ...]):
    """``(full, per_output, free)`` names of the base parameters (module docstring), or ``None`` when one does
    not fit the pattern."""
    full, per_output, free = [], [], []
    for name, shape in shapes.items():
        if len(shape) != len(dshape) or any(s not in (d, 1) for s, d in zip(shape, dshape)):
            return None
        if shape == dshape:
            full.append(name)
        elif shape[1] == 1 and all(s == 1 for s in shape[2:]) and shape[0] == dshape[0] and dshape[0] > 1:
            per_output.append(name)
        elif shape[0] == 1 and shape[1] == 1:
            free.append(name)
        else:  # per input neuron, or a kernel per output neuron
            return None
    if len(full) != 1 or len(per_output) > len(PER_OUTPUT_COLUMNS):
        return None
    return full[0], per_output, free


def _commutes(run: Callable[[dict], torch.Tensor], shapes: dict[str, tuple[int, ...]],
              dshape: tuple[int, ...]) -> bool:
    """Whether the derivation ``run`` commutes with permuting the output and input axes (module docstring)."""
    generator = torch.Generator().manual_seed(0)
    n_out, n_in = dshape[0], dshape[1]

    def draw(n: int) -> torch.Tensor:
        perm = torch.randperm(n, generator=generator)
        while n > 1 and torch.equal(perm, torch.arange(n)):
            perm = torch.randperm(n, generator=generator)
        return perm

    for _ in range(TRIALS):
        values = {name: torch.randn(shape, dtype=torch.float64, generator=generator) for name, shape in shapes.items()}
        out, again = run(values), run(values)
        if not (isinstance(out, torch.Tensor) and isinstance(again, torch.Tensor)) or tuple(out.shape) != dshape:
            return False
        if not torch.equal(out.nan_to_num(), again.nan_to_num()):
            return False  # random, or reads memory it does not own
        for p_out, p_in in ((draw(n_out), torch.arange(n_in)), (torch.arange(n_out), draw(n_in)),
                            (draw(n_out), draw(n_in))):
            moved = {name: _permute(v, dshape, p_out, p_in) for name, v in values.items()}
            result = run(moved)
            expected = out.index_select(0, p_out).index_select(1, p_in)
            if not isinstance(result, torch.Tensor) or result.shape != expected.shape:
                return False
            scale = float(expected.nan_to_num(0.0, 0.0, 0.0).abs().max()) if expected.numel() else 0.0
            if not torch.equal(expected.isnan(), result.isnan()) or not torch.allclose(
                    expected.nan_to_num(), result.nan_to_num(), rtol=1e-9, atol=1e-12 * max(scale, 1.0)):
                return False
    return True


def _permute(value: torch.Tensor, dshape: tuple[int, ...], p_out: torch.Tensor, p_in: torch.Tensor) -> torch.Tensor:
    """``value`` permuted along axis 0 by ``p_out`` and axis 1 by ``p_in`` where it has ``dshape``'s size."""
    if value.shape[0] == dshape[0]:
        value = value.index_select(0, p_out)
    if value.shape[1] == dshape[1]:
        value = value.index_select(1, p_in)
    return value


def _derivation(ctx, source: fx.Node, names: set[str]) -> tuple[Callable[[dict], torch.Tensor], str]:
    """``(run, description)``: ``run(values)`` reruns the fx nodes from the base parameters (``values`` by name,
    float64) to ``source``; ``description`` names every operation with its constants and shapes.

    Raises:
        _Untestable: for a value of the derivation that cannot be recomputed here.
    """
    order: list[fx.Node] = []
    seen: set[fx.Node] = set()
    stack = [(source, False)]
    while stack:  # depth-first, every node after its inputs
        n, done = stack.pop()
        if done:
            order.append(n)
            continue
        if n in seen:
            continue
        seen.add(n)
        stack.append((n, True))
        stack.extend((a, False) for a in reversed(n.all_input_nodes) if a not in seen)
    steps: list[tuple[fx.Node, Any]] = []  # (node, a constant value or _RUN or a parameter's name)
    parts = []
    for n in order:
        value = ctx.env.get(n)
        if isinstance(value, ParamValue) and n.op == "get_attr":
            if value.name not in names:
                raise _Untestable
            steps.append((n, ("param", value.name)))
            parts.append(f"param{value.shape}")
        elif isinstance(value, Opaque) and value.value is not None and not value.from_activations:
            const = value.value
            steps.append((n, ("const", const.double() if isinstance(const, torch.Tensor)
                                         and const.is_floating_point() else const)))
            parts.append(repr(op_code(ctx, n)) if n.op != "get_attr" else _fingerprint(const))
        elif n.op in ("call_function", "call_method") and not (isinstance(value, Opaque) and value.from_activations) \
                and not isinstance(value, TensorValue):
            steps.append((n, ("run", None)))
            parts.append(repr(op_code(ctx, n)))
        elif n.op == "call_module" and not _holds_tensors(ctx.module_of(n)):
            steps.append((n, ("module", ctx.module_of(n))))
            parts.append(f"{type(ctx.module_of(n)).__qualname__}{op_code(ctx, n)!r}{_module_state(ctx.module_of(n))}")
        else:
            raise _Untestable

    def run(values: dict[str, torch.Tensor]) -> torch.Tensor:
        env: dict[fx.Node, Any] = {}
        for n, (how, what) in steps:
            if how == "param":
                env[n] = values[what]
            elif how == "const":
                env[n] = what
            else:
                a, k = fx.node.map_arg((n.args, n.kwargs), lambda m: env[m])
                try:
                    with torch.no_grad():
                        if how == "module":
                            env[n] = what(*a, **k)
                        elif n.op == "call_method":
                            env[n] = getattr(a[0], n.target)(*a[1:], **k)
                        else:
                            env[n] = n.target(*a, **k)
                except Exception as error:  # wants another dtype or device: not testable here
                    raise _Untestable from error
        return env[source]

    return run, "|".join(parts)


_UNKNOWN = object()


def _constant(value: Any) -> Any:
    """A non-tensor argument's value (unwrapping a known constant), or ``_UNKNOWN``."""
    if isinstance(value, Opaque):
        return value.value if value.value is not None and not isinstance(value.value, torch.Tensor) else _UNKNOWN
    if isinstance(value, (TensorValue, ParamValue, DerivedParam)):
        return _UNKNOWN
    return value


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple, torch.Size)) else value


def _plain(value: Any, shape: tuple[int, ...]) -> bool:
    """Whether ``value`` is a parameter read as stored, of ``shape``."""
    return (isinstance(value, ParamValue) and tuple(value.shape) == shape and tuple(value.entries.shape) == shape
            and torch.equal(value.entries.reshape(-1), torch.arange(value.entries.numel())))


def _holds_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(b is not None for b in module.buffers())


def _module_state(module: nn.Module) -> str:
    """What changes a tensor-free module's function beyond its class: its plain attributes."""
    return repr(sorted((k, v) for k, v in vars(module).items()
                       if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple))))


def _fingerprint(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().contiguous()
        return f"const{tuple(t.shape)}{t.dtype}:{hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()}"
    return f"const:{t!r}"


# ------------------------------------------------------------------------------------------------- the layer
def _place(ctx, node, x, dshape, geometry, bias, full, per_output, free, described) -> TensorValue:
    """Add the layer's neurons, edges and parameter places (module docstring)."""
    builder = ctx.builder
    dims = len(dshape) - 2
    padded = tuple(x.padded)  # F.pad's zeros on the input: recorded as the convolution's own padding
    x = x.with_(padded=()) if padded else x
    x_in = ctx.neurons(x, -(dims + 1) if dims else -1, node)
    n_out, n_in = dshape[0], dshape[1]
    if x_in.num_neurons != n_in:
        raise ValueError(f"{x_in.num_neurons} input neurons, the derived weight has {n_in} columns")
    kind = NodeKind.CONV if dims else NodeKind.LINEAR
    out = builder.add_nodes(n_out, kind, layer=builder.node_layer(x_in.nodes) + 1)
    if dims:
        kshape = kernel_shape_3d(dshape[2:])
        start, _, strides = builder.add_grid(x_in.nodes, out, EdgeType.WEIGHT, kshape)  # edge o * C_in + c
        edge_of_entry = (start, tuple(dshape), (*strides, *[0] * dims))  # (C_out, C_in, *k), broadcast over k
        position = torch.arange(int(torch.tensor(dshape[2:]).prod())).view(1, 1, *dshape[2:])  # (1, 1, *k)
        builder.place_edge_param(full, edge_of_entry, position, kshape)
    else:
        edges = builder.add_grid(x_in.nodes, out, EdgeType.WEIGHT)  # weight[o, c] -> edge o * n_in + c
        builder.place_edge_param(full, edges)
    shapes = {}
    for name, column in zip(per_output, PER_OUTPUT_COLUMNS):
        shapes[name] = tuple(builder.named_tensors[builder.aliases.get(name, name)].shape)
        builder.place_node_param(name, out.view(shapes[name]), column)
    for name in free:
        builder.place_parameter_rows(name)
    if bias is not None:
        builder.place_node_param(bias.name, out, BIAS)
    if dims:
        builder.set_conv_args(out, conv_args(geometry, padded))
    roles = f"full={full};per_output={per_output};free={free}"
    builder.set_op_code(out, _code(f"derived {'conv' if dims else 'linear'}",
                                   f"{described}|{roles}|{dshape}"))
    builder.record_module_nodes(node.name, out)
    builder.fallbacks.append(
        f"{describe(node)}: seen through, its weight derived from parameters ({n_out} output and {n_in} input "
        f"neurons keep their symmetry; {full} on the edges" + (f", {', '.join(per_output)} on the output neurons" if per_output else "")
        + (f", {', '.join(free)} on fixed nodes" if free else "") + ")")
    shape = ctx.shape_of(node) or tuple(getattr(node.meta.get("val"), "shape", ()))
    return TensorValue(nodes=out, shape=shape, axis=len(shape) - dims - 1, source=node)


def _code(name: str, described: str) -> tuple[int, int]:
    """``(category, fingerprint)`` as :func:`nngraph.convert.fallback.op_code` makes them."""
    digest = lambda text: int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")  # noqa: E731
    return 1 + digest(name) % (OP_CATEGORIES - 1), digest(f"{name}|{described}") & ((1 << 62) - 1)


