"""Operations no converter names, converted conservatively instead of refused.

The walk hands an fx node here when no converter is registered for it, when its converter refused it
without changing the graph, or when it reads a value only the fallback understands (a
:class:`~nngraph.convert.values.DerivedParam`, indices computed from activations). One of four things
happens, in this order:

1. **Constants of the inputs.** Integer and boolean computations on the model's integer inputs (ids, masks,
   position ids) are constants of the input: an :class:`~nngraph.convert.values.Opaque` without a value (a
   floating result is a new model input, whose neurons the next layer makes, like any input's).
2. **Derived parameters.** An operation on parameters and constants only (weight norm's ``g * v / ||v||``,
   ``1 + w``) is a :class:`~nngraph.convert.values.DerivedParam`: the operation that uses it places the
   parameters it came from (a linear or convolution whose derived weight commutes with relabelling its neurons
   keeps their symmetry, :mod:`nngraph.convert.derived`; the walk tries that before handing the layer here).
3. **Seen through.** The operation reads one activation space (the same neurons on one axis of every tensor
   input), no parameter, and constants whose values are known, and returns a tensor with those neurons on the
   same axis. It is run in float64 on random inputs with its own constant arguments, each input's neuron axis
   permuted by the same random permutation; if the output comes out permuted by it, on every trial (and equal on
   repeated calls), the neurons pass through: :attr:`~nngraph.schema.NodeKind.ELEMENTWISE` copies tied to them
   (their symmetry kept), behind :attr:`~nngraph.schema.EdgeType.OPAQUE` edges.
4. **Opaque.** Anything else: the output is a new activation space of fixed
   :attr:`~nngraph.schema.NodeKind.OPAQUE` neurons, the neurons of every input are fixed, and every parameter
   the operation reads is placed exactly on fixed :attr:`~nngraph.schema.NodeKind.PARAMETER` nodes. Fixing is
   sound: no permutation moves those neurons, so the operation sees the same values in every relabelled model.

Both new kinds record the operation in ``op_code`` (its category and a fingerprint of its constant arguments
and input shapes), and the layout lists what each fallback did (``Layout.fallbacks``). A layout that used
the fallback is checked by :func:`nngraph.convert.verify.repair` before it is returned (the float64 test of
step 3 is a sample, the check proves it on the model).
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import fx

from ..schema import OP_CATEGORIES, EdgeType, NodeKind
from .errors import describe
from .registry import target_name
from .values import (DerivedParam, OffsetParam, Opaque, ParamValue, ScoreValue, StackedValue, TensorValue,
                     flatten)

#: Input-output pairs up to this many get every edge from the inputs to an opaque output; beyond it, a band
#: (every input and every output on at least one edge), so that memory grows with the neurons, not their product.
FULL_WIRING = 4096
#: Random inputs and permutations the see-through test draws.
TRIALS = 3


class _Untestable(Exception):
    """The operation cannot be run on random inputs here (an unknown constant, a module, an error)."""


def convert_unknown(ctx, node: fx.Node, args: tuple, kwargs: dict, reason: str) -> Any:
    """Convert ``node`` conservatively (module docstring); ``reason`` says why no converter did."""
    leaves = flatten((args, kwargs))
    floating = _floating_inputs(ctx, node)
    acts = [v for v in leaves if isinstance(v, (StackedValue, ScoreValue))
            or isinstance(v, Opaque) and v.from_activations
            or isinstance(v, TensorValue) and floating.get(id(v), True)]
    params = _parameter_names(leaves)
    if node.op == "call_module":  # a module no converter takes, kept whole by the tracer: all it holds is read
        params += tuple(ctx.builder.aliases.get(f"{node.target}.{name}", f"{node.target}.{name}")
                        for name, t in _module_tensors(ctx.module_of(node)) if t.is_floating_point())
        params = tuple(dict.fromkeys(p for p in params if p not in ctx.builder.constants))
    integers = [v for v in leaves if isinstance(v, TensorValue) and not floating.get(id(v), True)]
    if not acts and params and integers:  # parameters read at the input's integers (an embedding's max_norm)
        acts = integers
    if not acts and not params:
        return _map_outputs(node, lambda meta: TensorValue(nodes=None, shape=tuple(meta.shape), source=node)
                            if _floating(meta) else Opaque(f"{node.name} (from the model's integer inputs)"))
    if not acts:
        return _map_outputs(node, lambda meta: DerivedParam(params, tuple(meta.shape), node)
                            if _floating(meta) else Opaque(f"{node.name} (from parameters)"))
    code = op_code(ctx, node)
    passed = _see_through(ctx, node, acts, params, code)
    if passed is not None:
        return passed
    return _opaque(ctx, node, acts, params, code, reason)


def op_code(ctx, node: fx.Node) -> tuple[int, int]:
    """``(category, fingerprint)`` of ``node``'s operation (schema ``op_code``): the category a hash of its name
    into ``1 .. OP_CATEGORIES - 1``, the fingerprint 62 bits of a hash of the name, the constant arguments and
    the shapes of the tensor arguments, so that two different functions never give one graph."""
    name = operation_name(ctx, node)

    def constant(n: fx.Node) -> str:
        value = ctx.env.get(n)
        meta = traced_meta(n)
        if isinstance(value, Opaque) and isinstance(value.value, torch.Tensor):
            t = value.value.detach().cpu().contiguous()
            return f"const{tuple(t.shape)}{t.dtype}:{hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()}"
        if isinstance(value, Opaque) and value.value is not None:
            return f"const:{value.value!r}"
        shape = tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None
        return f"tensor{shape}"

    described = fx.node.map_arg((node.args, node.kwargs), constant)
    digest = lambda text: int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")  # noqa: E731
    category = 1 + digest(name) % (OP_CATEGORIES - 1)
    return category, digest(f"{name}|{described!r}") & ((1 << 62) - 1)


def operation_name(ctx, node: fx.Node) -> str:
    """A readable name of ``node``'s operation: ``torch.erf``, ``Tensor.pow``, ``aten.cumsum.default``, a module's
    class."""
    if node.op == "call_module":
        return type(ctx.module_of(node)).__qualname__
    if isinstance(node.target, torch._ops.OpOverload):
        return str(node.target)
    return target_name(node.target)


# ---------------------------------------------------------------------------------------------- see through
def _see_through(ctx, node, acts, params, code) -> TensorValue | None:
    """The neurons of the one activation space ``node`` reads, passed through it (module docstring, step 3), or
    ``None`` when the operation does not qualify or fails the test."""
    if params or node.op == "call_module":
        return None
    if not all(isinstance(v, TensorValue) and v.nodes is not None and not v.heads and v.merged == 1
               and not v.padded for v in acts):
        return None
    first = acts[0]
    from_end = first.axis - len(first.shape)
    if not all(torch.equal(v.nodes, first.nodes) and v.axis - len(v.shape) == from_end for v in acts):
        return None
    meta = traced_meta(node)
    if not hasattr(meta, "shape") or not _floating(meta):
        return None
    shape = tuple(meta.shape)
    count = first.num_neurons
    if len(shape) < -from_end or shape[from_end] != count or count < 2:
        return None
    try:
        if not _commutes(ctx, node, from_end, count):
            return None
    except _Untestable:
        return None
    builder = ctx.builder
    copies = builder.tied_copies(first.nodes, NodeKind.ELEMENTWISE, builder.node_layer(first.nodes) + 1)
    builder.add_edges(first.nodes, copies, EdgeType.OPAQUE, identity=True)
    builder.set_op_code(copies, code)
    builder.fallbacks.append(f"{describe(node)}: seen through ({count} neurons keep their symmetry)")
    return first.with_(nodes=copies, shape=shape, axis=len(shape) + from_end, source=node)


def _commutes(ctx, node, from_end: int, count: int) -> bool:
    """Whether ``node``'s operation, run in float64 on random inputs, commutes with random permutations of axis
    ``from_end`` (counted from the end) of its activation inputs, and gives equal results on repeated calls.

    Raises:
        _Untestable: if it cannot be run here.
    """
    generator = torch.Generator().manual_seed(0)
    for _ in range(TRIALS):
        (args, kwargs), randoms = _random_arguments(ctx, node, generator)
        perm = torch.randperm(count, generator=generator)
        while torch.equal(perm, torch.arange(count)):
            perm = torch.randperm(count, generator=generator)
        permuted = fx.node.map_aggregate((args, kwargs), lambda a: a.index_select(a.dim() + from_end, perm)
                                         if isinstance(a, torch.Tensor) and id(a) in randoms else a)
        out, again = _call(node, args, kwargs), _call(node, args, kwargs)
        moved = _call(node, *permuted)
        if not all(isinstance(t, torch.Tensor) for t in (out, again, moved)) or out.shape != moved.shape:
            return False
        if not torch.equal(out.nan_to_num(), again.nan_to_num()):
            return False  # random, or reads memory it does not own
        expected = out.index_select(out.dim() + from_end, perm)
        scale = float(expected.nan_to_num(0.0, 0.0, 0.0).abs().max()) if expected.numel() else 0.0
        if not torch.equal(expected.isnan(), moved.isnan()) or not torch.allclose(
                expected.nan_to_num(), moved.nan_to_num(), rtol=1e-9, atol=1e-12 * max(scale, 1.0)):
            return False
    return True


def _random_arguments(ctx, node: fx.Node, generator: torch.Generator) -> tuple[tuple[tuple, dict], set[int]]:
    """``(args, kwargs)`` of ``node`` with every floating activation a random float64 tensor of its traced shape
    and every constant its known value, and the ids of the random tensors.

    Raises:
        _Untestable: for a constant whose value is unknown, or an integer activation.
    """
    randoms: set[int] = set()
    made: dict[fx.Node, Any] = {}  # one tensor per fx value (``x * x`` reads one)

    def real(n: fx.Node):
        if n not in made:
            made[n] = _real(n)
        return made[n]

    def _real(n: fx.Node):
        value = ctx.env.get(n)
        meta = traced_meta(n)
        if isinstance(value, Opaque):
            if value.value is None or value.from_activations:
                raise _Untestable
            v = value.value
            return v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
        if isinstance(value, TensorValue) and hasattr(meta, "shape") and _floating(meta):
            tensor = torch.randn(tuple(meta.shape), dtype=torch.float64, generator=generator)
            randoms.add(id(tensor))
            return tensor
        raise _Untestable

    return fx.node.map_arg((node.args, node.kwargs), real), randoms


def _call(node: fx.Node, args, kwargs) -> Any:
    try:
        with torch.no_grad():
            if node.op == "call_method":
                return getattr(args[0], node.target)(*args[1:], **kwargs)
            if node.op == "call_function":
                return node.target(*args, **kwargs)
    except Exception as error:  # an operation that wants other dtypes or devices: not testable here
        raise _Untestable from error
    raise _Untestable


# -------------------------------------------------------------------------------------------------- opaque
def _opaque(ctx, node, acts, params, code, reason) -> Any:
    """``node``'s output as fixed OPAQUE neurons (module docstring, step 4)."""
    builder = ctx.builder
    sources = [_source_nodes(ctx, v, node) for v in acts]
    sources = torch.unique(torch.cat([s for s in sources if s is not None and s.numel()] or
                                     [torch.zeros(0, dtype=torch.long)]))
    builder.fix(sources)
    layer = (builder.node_layer(sources) if sources.numel() else 0) + 1
    made: list[torch.Tensor] = []

    def output(meta):
        if not _floating(meta):  # indices or masks computed from activations
            return Opaque(f"{node.name} (computed from activations)", from_activations=True, nodes=sources)
        shape = tuple(meta.shape)
        axis = _output_axis(acts, shape)
        count = shape[axis] if shape else 1
        nodes = builder.add_nodes(count, NodeKind.OPAQUE, layer, permutable=False)
        builder.set_op_code(nodes, code)
        _wire(builder, sources, nodes)
        made.append(nodes)
        return TensorValue(nodes=nodes, shape=shape, axis=axis if shape else 0, source=node)

    out = _map_outputs(node, output)
    readers = torch.cat(made) if made else sources
    for name in params:
        builder.place_parameter_rows(name, readers, layer)
    builder.fallbacks.append(
        f"{describe(node)}: opaque ({reason}); fixed {sources.numel()} input neurons"
        + (f", parameters {', '.join(params)} on fixed nodes" if params else ""))
    return out


def _source_nodes(ctx, value, node) -> torch.Tensor | None:
    """The neurons ``value`` shows (every part, every head; a model input's, made now on a guessed axis)."""
    if isinstance(value, TensorValue):
        if value.nodes is None:
            ndim = len(value.shape or ())
            if ndim == 0:
                return None
            value = ctx.neurons(value, 1 if ndim in (4, 5) else -1, node)
        return value.nodes
    if isinstance(value, StackedValue):
        return torch.cat([_source_nodes(ctx, p, node) for p in value.parts if p.nodes is not None]
                         or [torch.zeros(0, dtype=torch.long)])
    if isinstance(value, ScoreValue):
        parts = [value.q.nodes, value.k.nodes] + ([value.bias.nodes] if value.bias is not None else [])
        return torch.cat([p for p in parts if p is not None])
    if isinstance(value, Opaque):
        return value.nodes
    return None


def _output_axis(acts, shape: tuple[int, ...]) -> int:
    """The axis of an opaque output that holds its neurons: the first input's neuron axis (counted from the end)
    when the ranks agree, the channel axis of a 4-d / 5-d map, else the last."""
    if not shape:
        return 0
    first = next((v for v in acts if isinstance(v, TensorValue) and v.nodes is not None and v.shape), None)
    if first is not None and len(first.shape) == len(shape):
        return first.axis
    return 1 if len(shape) in (4, 5) else len(shape) - 1


def _wire(builder, sources: torch.Tensor, outputs: torch.Tensor) -> None:
    """OPAQUE edges from every source to the outputs: all pairs when few, else a band (module constants)."""
    s, o = sources.numel(), outputs.numel()
    if not s or not o:
        return
    if s * o <= FULL_WIRING:
        src, dst = sources.repeat_interleave(o), outputs.repeat(s)
    else:
        m = max(s, o)
        j = torch.arange(m)
        src, dst = sources[j * s // m], outputs[j * o // m]
    builder.add_edges(src, dst, EdgeType.OPAQUE, identity=True)


# ------------------------------------------------------------------------------------------------- helpers
def _parameter_names(leaves) -> tuple[str, ...]:
    names: list[str] = []
    for v in leaves:
        if isinstance(v, ParamValue):
            names.append(v.name)
        elif isinstance(v, OffsetParam):
            names.append(v.param.name)
        elif isinstance(v, DerivedParam):
            names.extend(v.names)
    return tuple(dict.fromkeys(names))


def _module_tensors(module) -> list:
    """``(name, tensor)`` of a module's parameters and persistent buffers, relative to it."""
    out = list(module.named_parameters(remove_duplicate=False))
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for name, b in sub.named_buffers(recurse=False):
            if b is not None and name not in sub._non_persistent_buffers_set:
                out.append((f"{prefix}.{name}" if prefix else name, b))
    return out


def _floating_inputs(ctx, node: fx.Node) -> dict[int, bool]:
    """``id(value) -> whether its traced dtype is floating`` for the tensor values ``node`` reads."""
    out = {}
    for n in node.all_input_nodes:
        value, meta = ctx.env.get(n), traced_meta(n)
        if isinstance(value, TensorValue) and hasattr(meta, "shape"):
            out[id(value)] = _floating(meta)
    return out


def traced_meta(node: fx.Node) -> Any:
    """What tracing recorded of ``node``'s value: ``tensor_meta`` (shape propagation), else ``val`` (a fake tensor
    of torch.export), in the value's structure; ``None`` when neither was recorded."""
    meta = node.meta.get("tensor_meta")
    if meta is not None and (hasattr(meta, "dtype") or isinstance(meta, (tuple, list))):
        return meta
    return node.meta.get("val", meta)


def _floating(meta) -> bool:
    """Whether a traced value is floating point (a shape recorded without a dtype counts as floating: the export
    lift records shapes only for the layers it makes, which compute on activations)."""
    dtype = getattr(meta, "dtype", None)
    return dtype is None or bool(dtype.is_floating_point)


def _map_outputs(node: fx.Node, make) -> Any:
    """``make(meta)`` for every tensor ``node`` returns, in its structure (a tuple for several outputs); sizes
    and other non-tensors are constants."""
    meta = traced_meta(node)

    def visit(m):
        if hasattr(m, "shape"):
            return make(m)
        if isinstance(m, (tuple, list)):
            return type(m)(visit(x) for x in m) if not hasattr(m, "_fields") else tuple(visit(x) for x in m)
        if isinstance(m, dict):
            return {k: visit(x) for k, x in m.items()}
        return Opaque(node.name)

    return visit(meta)
