"""Walk a traced fx graph and hand every node to its converter: :class:`GraphWalker`, a ``torch.fx.Interpreter``."""
from __future__ import annotations

import operator
import re
from typing import Any

import torch
from torch import fx, nn

from ..schema import NodeKind, NodeType
from .builder import GraphBuilder
from .errors import UnsupportedError, describe
from .registry import (
    FUNCTION_CONVERTERS,
    MERGED_HEADS,
    MODULE_CONVERTERS,
    OFFSET_READERS,
    PASSTHROUGH,
    SCORE_CONVERTERS,
)
from .derived import convert_derived_layer
from .fallback import convert_unknown
from .values import (FOLD_LIMIT, DerivedParam, OffsetParam, Opaque, ParamValue, ScoreValue, StackedValue, TensorValue,
                     flatten)


class RetryWalk(Exception):
    """A converter refused ``node`` after it had changed the graph: the walk starts again from a fresh builder
    with ``node`` handed to the fallback (:mod:`nngraph.convert.fallback`) from the start."""

    def __init__(self, node: str, error: UnsupportedError, reason: str):
        super().__init__(node)
        self.node, self.error, self.reason = node, error, reason


class ConversionContext:
    """What converters see: the builder, the traced module, and helpers to read values."""

    def __init__(self, gm: fx.GraphModule, builder: GraphBuilder, forced: dict[str, str] | None = None,
                 env: dict | None = None):
        self.gm = gm
        self.builder = builder
        self._uses = _count_uses(gm)
        self.forced = forced or {}  # fx node name -> why its converter refused it: the fallback converts these
        self.env: dict[fx.Node, Any] = {} if env is None else env  # the converted value of every fx node so far

    # -- modules and shapes
    def module_of(self, node: fx.Node) -> nn.Module:
        return self.gm.get_submodule(node.target)

    @staticmethod
    def shape_of(node: fx.Node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    # -- values
    def neurons(self, value: Any, axis: int, node: fx.Node) -> TensorValue:
        """``value`` with its neurons on ``axis`` (negative counts from the end). Creates the input
        neurons of a model input the first time it is read."""
        if not isinstance(value, TensorValue):
            raise UnsupportedError(f"{describe(node)} expects a tensor, got {value!r}")
        ndim = len(value.shape) if value.shape is not None else None
        wanted = axis % ndim if ndim is not None else axis
        if value.nodes is None:
            count = value.shape[wanted]
            nodes = self.builder.add_nodes(count, NodeKind.INPUT, layer=0, node_type=NodeType.INPUT)
            for kind, args in value.pending:  # positions picked out of the input before this layer
                try:
                    self.builder.add_pool(nodes, kind, args)
                except ValueError as error:
                    raise UnsupportedError(f"{describe(node)} reads a model input picked and pooled: {error}") from None
            object.__setattr__(value, "nodes", nodes)
            object.__setattr__(value, "axis", wanted)
            return value
        if torch.unique(value.nodes).numel() != value.nodes.numel():
            raise UnsupportedError(
                f"{describe(node)} reads a tensor in which one neuron appears at several places of the feature "
                "axis (a value concatenated with itself, or heads repeated); its weights would be parallel edges"
            )
        if value.heads:
            raise UnsupportedError(
                f"{describe(node)} reads a tensor of shape {value.shape} whose neurons are split into "
                f"{value.heads} heads (axes {value.head_axis} and {value.axis}); merge the heads first"
            )
        if value.axis != wanted:
            raise UnsupportedError(
                f"{describe(node)} reads features along axis {wanted} of a tensor of shape {value.shape} "
                f"whose neurons are along axis {value.axis}; moving neurons between axes (transpose, "
                "permute) is not supported."
            )
        return value

    def used_once(self, value: TensorValue) -> bool:
        """Whether the fx value ``value`` came from (after pass-through ops) has a single consumer."""
        return self._uses.get(value.source, 0) <= 1


def _root(node: fx.Node, roots: dict[fx.Node, fx.Node]) -> fx.Node:
    return roots.get(node, node)


def _count_uses(gm: fx.GraphModule) -> dict[fx.Node, int]:
    """Consumers of every value, where pass-through ops (dropout, pooling, flatten, ...) forward
    their input's identity instead of counting as a new value, and repeated indexing of one value
    with one index (``o[0]`` written twice) is one value."""
    roots: dict[fx.Node, fx.Node] = {}
    uses: dict[fx.Node, int] = {}
    items: dict[tuple[fx.Node, str], fx.Node] = {}
    for node in gm.graph.nodes:
        key = _target_key(gm, node)
        tensor_args = [a for a in node.all_input_nodes]
        if key is operator.getitem and isinstance(node.args[0], fx.Node):
            item = (_root(node.args[0], roots), repr(node.args[1]))
            if item in items:
                roots[node] = items[item]
            else:
                items[item] = node
        if key is not None and key in PASSTHROUGH and tensor_args:
            roots[node] = _root(tensor_args[0], roots)
            continue
        for arg in tensor_args:
            r = _root(arg, roots)
            uses[r] = uses.get(r, 0) + 1
    return {node: uses.get(_root(node, roots), 0) for node in gm.graph.nodes}


def _target_key(gm: fx.GraphModule, node: fx.Node) -> object | None:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target))
    if node.op in ("call_function", "call_method"):
        return node.target
    return None


class GraphWalker(fx.Interpreter):
    """Runs a traced graph on converter values instead of tensors, as torch.fx's ``ShapeProp`` runs it on
    shapes: every placeholder becomes a model input (:class:`~nngraph.convert.values.TensorValue` without
    neurons yet), every parameter read as data a :class:`~nngraph.convert.values.ParamValue`, every call
    the value its converter returns (:mod:`nngraph.convert.registry`), and the output marks the output
    neurons. Values are kept after their last use (``garbage_collect_values=False``): :meth:`walk` records
    where every value's neurons are once the graph has run.

    Errors are :class:`~nngraph.convert.errors.UnsupportedError` naming the node
    (:func:`~nngraph.convert.errors.describe`), without the Interpreter's extra traceback.
    """

    def __init__(self, gm: fx.GraphModule, builder: GraphBuilder, forced: dict[str, str] | None = None):
        super().__init__(gm, garbage_collect_values=False)
        self.extra_traceback = False
        self.builder = builder
        self.ctx = ConversionContext(gm, builder, forced, self.env)
        self._node: fx.Node | None = None

    def walk(self) -> None:
        """Convert every node into the builder, then record where each value's neurons are."""
        self.run(enable_io_processing=False)
        for fx_node, value in self.env.items():  # graph order: later values of the same neurons win
            if isinstance(value, TensorValue) and value.nodes is not None and value.merged == 1:  # probes: unmerged
                self.builder.record_value(fx_node.name, value.nodes, value.axis, value.spatial,
                                          value.head_axis if value.heads else -1)

    def run_node(self, n: fx.Node) -> Any:
        self.ctx.env = self.env  # Interpreter.run binds a fresh dict; the fallback reads the values so far
        self._node = n  # the converters need the node (its shape, its place for errors), not only its target
        return super().run_node(n)

    def placeholder(self, target, args, kwargs) -> TensorValue:
        return TensorValue(nodes=None, shape=self.ctx.shape_of(self._node), source=self._node)

    def get_attr(self, target, args, kwargs) -> Any:
        node, builder = self._node, self.builder
        attr = self.fetch_attr(target)
        if not (isinstance(attr, torch.Tensor) and attr.is_floating_point()):
            known = isinstance(attr, torch.Tensor) and attr.device.type != "meta"
            return Opaque(f"attribute {target}", value=attr if known else None)
        name = builder.aliases.get(target, target)
        made_in_forward = target.startswith("_tensor_constant") and name not in builder.named_tensors
        if name in builder.constants or target in self.module.meta.get("constants", ()) or made_in_forward:
            # a constant of the forward (fx keeps a tensor built from constants while tracing as
            # _tensor_constant<i>): stays Opaque, with its value when small
            small = attr.device.type != "meta" and attr.numel() <= FOLD_LIMIT
            return Opaque(f"attribute {target}", value=attr.detach().clone() if small else None)
        if name not in builder.named_tensors:
            raise UnsupportedError(f"{describe(node)} reads the tensor {target!r}, which is not "
                                   "a parameter or buffer of the model")
        return ParamValue(name, tuple(attr.shape), torch.arange(attr.numel()).view(attr.shape))

    def call_function(self, target, args, kwargs) -> Any:
        return _convert_node(self.ctx, self._node, args, kwargs)

    call_method = call_function
    call_module = call_function

    def output(self, target, args, kwargs) -> None:
        _mark_outputs(args[0], self.builder)


def walk(gm: fx.GraphModule, builder: GraphBuilder, forced: dict[str, str] | None = None) -> None:
    """Convert every node of ``gm`` into ``builder`` and mark the output neurons (:class:`GraphWalker`); the
    nodes named in ``forced`` (with why their converters refused them) go to the fallback.

    Raises:
        RetryWalk: when a converter refused a node after changing the graph (walk again, forcing it).
    """
    GraphWalker(gm, builder, forced).walk()


def _convert_node(ctx: ConversionContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Hand ``node`` (its arguments already converted) to its converter, fold it as a constant, or hand it to
    the fallback (:mod:`nngraph.convert.fallback`) where no converter can take it."""
    leaves = flatten((args, kwargs))
    if node.name in ctx.forced:
        return convert_unknown(ctx, node, args, kwargs, ctx.forced[node.name])
    if not any(isinstance(v, (TensorValue, ParamValue, StackedValue, ScoreValue, OffsetParam, DerivedParam))
               or isinstance(v, Opaque) and v.from_activations for v in leaves):
        if node.op != "call_module" or next(iter(ctx.module_of(node).parameters()), None) is None:
            return _fold(ctx, node, args, kwargs)  # sizes, constants (position ids, masks) and other bookkeeping
    if any(isinstance(v, DerivedParam) for v in leaves):  # a layer whose weight is derived: its symmetry if shown
        mark = ctx.builder.mark()
        try:
            out = convert_derived_layer(ctx, node, args, kwargs)
        except Exception as error:
            reason = UnsupportedError(f"converting {describe(node)} with its derived weight failed: {error}")
            if ctx.builder.mark() != mark:
                raise RetryWalk(node.name, reason, _first_line(reason, node)) from error
            out = None
        if out is not None:
            return out
    try:
        converter = _converter_for(ctx, node, args, kwargs, leaves)
    except UnsupportedError as error:
        return convert_unknown(ctx, node, args, kwargs, _first_line(error, node))
    mark = ctx.builder.mark()
    try:
        return converter(ctx, node, *args, **kwargs)
    except Exception as error:
        reason = error if isinstance(error, UnsupportedError) else UnsupportedError(
            f"converting {describe(node)} failed: {error}")
        if ctx.builder.mark() != mark:  # it changed the graph before refusing: walk again without it
            raise RetryWalk(node.name, reason, _first_line(reason, node)) from error
        return convert_unknown(ctx, node, args, kwargs, _first_line(reason, node))


def _first_line(error: Exception, node: fx.Node) -> str:
    """The first line of ``error``'s message without the node's own description (the fallback's reason)."""
    text = str(error).split("\n")[0].removeprefix(describe(node)).strip()
    return text if len(text) <= 200 else text[:197] + "..."


def _converter_for(ctx: ConversionContext, node: fx.Node, args: tuple, kwargs: dict, leaves: list):
    """The converter of ``node``, or an :class:`UnsupportedError` saying why none applies (the fallback's reason)."""
    if any(isinstance(v, DerivedParam) for v in leaves):
        raise UnsupportedError("it reads a tensor computed from parameters by an operation nngraph cannot see through")
    offsets = [v for v in leaves if isinstance(v, OffsetParam)]
    if offsets and (node.op == "call_module" or node.target not in OFFSET_READERS):
        raise UnsupportedError(
            f"it reads parameter {offsets[0].param.name!r} plus a constant (a sum nngraph follows "
            "only as the attn_mask of scaled_dot_product_attention, where the constant is recorded on the heads)"
        )
    padded = [v for v in leaves if isinstance(v, TensorValue) and v.padded]
    if padded and not (node.op == "call_module" and isinstance(ctx.module_of(node), nn.modules.conv._ConvNd)
                       and not isinstance(ctx.module_of(node), nn.modules.conv._ConvTransposeNd)):
        raise UnsupportedError(
            f"it reads an activation zero-padded by F.pad {list(padded[0].padded)}; nngraph "
            "records such padding only as the padding of the convolution that reads it"
        )
    derived = [v for v in leaves if isinstance(v, Opaque) and v.from_activations]
    if derived and not (node.target is operator.getitem and isinstance(args[0], (tuple, list))):
        raise UnsupportedError(
            f"it uses {derived[0].description}, computed from the model's activations outside any layer nngraph "
            "represents"
        )
    key = type(ctx.module_of(node)) if node.op == "call_module" else node.target
    if any(isinstance(v, ScoreValue) for v in leaves):
        converter = SCORE_CONVERTERS.get(key)
        if converter is None:
            raise UnsupportedError(
                "it reads attention scores (q @ k^T); nngraph follows scores only through "
                "scaling by a number, constant masks, one per-head bias, softmax over the key positions, "
                "dropout, casts, moves that keep their head and position axes, and the product with the values"
            )
    elif node.op == "call_module":
        converter = MODULE_CONVERTERS.get(key)
        if converter is None:
            raise UnsupportedError("no converter")
    else:
        converter = FUNCTION_CONVERTERS.get(key)
        if converter is None:
            raise UnsupportedError("no converter")
    _refuse_merged_heads(ctx, node, args, kwargs)
    return converter


def _refuse_merged_heads(ctx: ConversionContext, node: fx.Node, args, kwargs) -> None:
    """Refuse a value whose heads are merged into a batch axis (``(B * H, T, D)``) everywhere but in the
    converters that follow such a layout (:data:`~nngraph.convert.registry.MERGED_HEADS`)."""
    merged = [v for v in flatten((args, kwargs)) if isinstance(v, TensorValue) and v.heads and v.merged > 1]
    key = type(ctx.module_of(node)) if node.op == "call_module" else node.target
    if merged and key not in MERGED_HEADS:
        v = merged[0]
        raise UnsupportedError(
            f"{describe(node)} reads a tensor of shape {tuple(v.shape)} whose axis {v.head_axis} holds {v.heads} "
            f"attention heads merged with {v.merged} batch entries ((B * H, T, D), for bmm); nngraph follows such "
            "a tensor through moves and the attention products only. Split the heads back out first "
            "(view(B, H, T, D))."
        )


#: ops whose result is not a function of their inputs (or that fill memory with whatever it held)
_NOT_FOLDED = re.compile(
    r"rand|bernoulli|normal|multinomial|poisson|dropout|uniform|exponential|cauchy|geometric|empty|seed")


def _op_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    return getattr(target, "_opname", None) or getattr(target, "__name__", None) or repr(target)


def _fold(ctx: ConversionContext, node: fx.Node, args, kwargs) -> Opaque:
    """An op on constants only: a constant, with its value when every input's value is known and the
    op is deterministic and small (a causal mask built from sizes, ``tril`` and comparisons). An
    in-place op forgets the values of its inputs instead of being replayed."""
    leaves = flatten((args, kwargs))
    name = _op_name(node.target)
    in_place = name.endswith("_") and not name.endswith("__") or node.target is operator.setitem
    if in_place:
        for leaf in leaves:
            if isinstance(leaf, Opaque) and leaf.value is not None:
                object.__setattr__(leaf, "value", None)
        return Opaque(node.name)
    shape = ctx.shape_of(node)
    small = shape is None or _numel(shape) <= FOLD_LIMIT
    known = all(not isinstance(v, (Opaque, TensorValue, ParamValue)) or (isinstance(v, Opaque) and v.value is not None)
                for v in leaves)
    if node.op not in ("call_function", "call_method") or _NOT_FOLDED.search(name) or not (known and small):
        return Opaque(node.name)
    values = fx.node.map_aggregate((args, kwargs), lambda v: v.value if isinstance(v, Opaque) else v)
    try:
        a, k = values
        out = getattr(a[0], node.target)(*a[1:], **k) if node.op == "call_method" else node.target(*a, **k)
    except Exception:  # a constant nngraph cannot compute here: no value, as before
        return Opaque(node.name)
    if isinstance(out, torch.Tensor) and out.numel() <= FOLD_LIMIT and out.device.type != "meta" or \
            isinstance(out, (int, float, bool, torch.Size)):
        return Opaque(node.name, value=out)
    return Opaque(node.name)


def _numel(shape) -> int:
    count = 1
    for s in shape:
        count *= int(s)
    return count




def _mark_outputs(result: Any, builder: GraphBuilder) -> None:
    values = flatten(result)  # the converted values of the output; layers may return tuples
    if any(isinstance(v, ScoreValue) for v in values):
        raise UnsupportedError("the model returns attention scores or weights (q @ k^T, softmaxed or not); they "
                               "are computed from activations over positions and have no neurons in the graph")
    values = [p for v in values for p in (v.parts if isinstance(v, StackedValue) else (v,))]
    tensors = [v for v in values if isinstance(v, TensorValue)]
    if not tensors:
        raise UnsupportedError("the model returns no tensor that nngraph could follow")
    if any(v.heads and v.merged > 1 for v in tensors):
        raise UnsupportedError("the model returns attention heads merged with the batch axis ((B * H, T, D)); "
                               "split them back out (view(B, H, T, D)) before returning them")
    for value in tensors:
        if value.nodes is not None:
            builder.mark_output(value.nodes)
