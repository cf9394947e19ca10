"""Turn a module into an fx graph with shapes, knowing nothing about neural graphs.

Modules that have a converter are kept as leaves; everything else is traced through. Shapes come
from running example inputs through :class:`torch.fx.passes.shape_prop.ShapeProp`.
"""
from __future__ import annotations

import contextlib
import inspect
import operator
from typing import Sequence

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .errors import UnsupportedError
from .module_info import parameter_device, parameter_dtype
from .registry import MODULE_CONVERTERS
from .softmax_patterns import fold_hand_written_softmax


class _LeafTracer(fx.Tracer):
    """Keeps modules with a registered converter as single call_module nodes and traces into every other
    module (torch.nn's own included: ``nn.Transformer`` is its layers' operations, a parametrized
    ``Linear`` its parametrization's operations and ``F.linear``)."""

    def __init__(self, torch_leaves: bool = False):
        super().__init__()
        self.torch_leaves = torch_leaves  # keep torch.nn's own modules whole too (the fallback converts them)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if type(m) in MODULE_CONVERTERS:
            return True
        return self.torch_leaves and super().is_leaf_module(m, module_qualified_name)


def trace(
    module: nn.Module, example_inputs: Sequence[torch.Tensor] | None = None, method: str = "auto"
) -> tuple[fx.GraphModule, dict[str, str]]:
    """Trace ``module`` and annotate every node with ``meta['tensor_meta']``.

    Args:
        module: the model.
        example_inputs: inputs to propagate shapes with; made up from the first layer when omitted
            (see :func:`example_inputs_for`).
        method: ``"fx"`` (symbolic tracing, layers kept as modules), ``"export"`` (``torch.export``,
            lifted back to layers by :func:`~nngraph.convert.export_lift.lift_export`; reaches code
            fx cannot follow), or ``"auto"``: fx, and export where fx fails; a GraphModule of ATen
            operations (an unlifted ``torch.export`` program) goes straight to export
            (:func:`is_aten_graph`).

    Returns:
        ``(graph_module, aliases)``; ``aliases`` maps parameter names of stand-in layers to the
        model's own parameter names (empty for fx).

    Raises:
        UnsupportedError: if neither tracer can follow the model.
    """
    if method not in ("auto", "fx", "export"):
        raise ValueError(f"method must be 'auto', 'fx' or 'export', got {method!r}")
    with unchanged(module):  # torch.export replaces attributes (Hugging Face's plans, tuples of sizes)
        return _trace(module, example_inputs, method)


@contextlib.contextmanager
def unchanged(module: nn.Module):
    """Give every submodule of ``module`` (and every module its attributes hold in a dict, list or tuple, such as
    Hugging Face's kernel functions) back exactly the class and the attributes it had (the same objects, none
    added or removed) and the values of its buffers, whatever the body does to them: converting never changes
    the user's model."""
    saved = [(sub, type(sub), dict(vars(sub))) for sub in _modules_held(module)]
    buffers = {name: b.detach().clone() for name, b in module.named_buffers() if b is not None}  # a training-mode
    try:  # shape pass updates BatchNorm's statistics and counter
        yield
    finally:
        with torch.no_grad():
            for name, b in module.named_buffers():
                if name in buffers and b is not None and not torch.equal(b, buffers[name]):
                    b.copy_(buffers[name])
        for sub, cls, attributes in saved:
            if type(sub) is not cls:
                sub.__class__ = cls
            state = vars(sub)
            for key in [k for k in state if k not in attributes]:
                del state[key]
            state.update(attributes)


def _modules_held(module: nn.Module) -> list[nn.Module]:
    """``module``'s submodules and the modules their attributes hold directly or in a container."""
    out, seen = [], set()
    for sub in module.modules():
        for item in (sub, *[x for v in vars(sub).values() if isinstance(v, (dict, list, tuple))
                            for x in (v.values() if isinstance(v, dict) else v)]):
            if isinstance(item, nn.Module) and id(item) not in seen:
                seen.add(id(item))
                out.append(item)
    return out


def _trace(module: nn.Module, example_inputs, method: str) -> tuple[fx.GraphModule, dict[str, str]]:
    refuse_hidden_code(module)
    defaults = keyword_defaults(module, example_inputs)  # refuses arguments the example call cannot leave out
    if method == "auto" and is_aten_graph(module):
        method = "export"
    if method == "export":
        return _folded(_export(module, example_inputs))
    if type(module) in MODULE_CONVERTERS:  # a bare layer: fx would trace its forward, not keep it whole
        return _trace_bare_layer(module, example_inputs)
    tracer = _LeafTracer()
    try:
        graph = tracer.trace(module, concrete_args=defaults or None)
    except Exception as error:  # fx raises many kinds of errors
        fx_error = UnsupportedError(
            f"torch.fx could not trace {type(module).__name__}: {error}. nngraph needs a forward "
            "without data-dependent control flow, or example inputs with which torch.export can follow it."
        )
        if method == "fx":
            raise fx_error from error
        try:
            return _folded(_export(module, example_inputs))
        except UnsupportedError as export_error:
            # last: torch.nn's own modules kept whole (their forwards branch on their inputs, as nn.Transformer's
            # fast path does); those without a converter are the fallback's (fixed neurons, exact parameters)
            tracer = _LeafTracer(torch_leaves=True)
            try:
                graph = tracer.trace(module, concrete_args=defaults or None)
            except Exception:
                raise UnsupportedError(f"{fx_error}\nThe torch.export fallback failed too: {export_error}") from error
    _drop_specialised_placeholders(module, graph, defaults)
    gm = fx.GraphModule(tracer.root, graph, type(module).__name__)
    _propagate_shapes(gm, module, example_inputs)
    return _folded((gm, {}))


def is_aten_graph(module: nn.Module) -> bool:
    """Whether ``module`` is a GraphModule whose graph calls ATen operators (``torch._ops.OpOverload``,
    e.g. ``torch.ops.aten.conv2d.default``), as an unlifted ``torch.export`` program does
    (:func:`nngraph.convert.program.program_module`). fx would only retrace those ATen calls, which the
    walk does not take; ``torch.export`` lifts them back to layers (:mod:`nngraph.convert.export_lift`)."""
    return isinstance(module, fx.GraphModule) and any(
        n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) for n in module.graph.nodes)


def _folded(traced: tuple[fx.GraphModule, dict[str, str]]) -> tuple[fx.GraphModule, dict[str, str]]:
    """``traced`` with its hand-written softmaxes folded into ``torch.softmax`` nodes (see
    :mod:`nngraph.convert.softmax_patterns`)."""
    fold_hand_written_softmax(traced[0])
    return traced


_PLAIN_DEFAULTS = (type(None), bool, int, float, str)


def keyword_defaults(module: nn.Module, example_inputs: Sequence[torch.Tensor] | None) -> dict[str, object]:
    """The keyword-only arguments of ``module.forward`` (``def forward(self, x, *, mask=None)``), at their
    defaults: nngraph converts ``module(*example_inputs)``, so fx traces them as those constants, and the
    branches they choose (``if mask is not None``) are the ones that call takes.

    Raises:
        UnsupportedError: naming an argument the call ``module(*example_inputs)`` cannot leave out (a
            keyword-only argument, or a positional one beyond the example inputs, without a default),
            or a keyword-only argument whose default is not a plain constant (a tensor).
    """
    params = list(inspect.signature(module.forward).parameters.values())
    count = None if example_inputs is None else len(tuple(example_inputs))
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    where = f"the model ({type(module).__name__}): forward"
    if count is not None and not any(p.kind == p.VAR_POSITIONAL for p in params):
        for p in positional[count:]:
            if p.default is p.empty:
                raise UnsupportedError(
                    f"{where} needs argument {p.name!r}, and only {count} example input(s) were given; pass "
                    f"example_inputs=(...) with one tensor per positional argument, {p.name!r} included")
    defaults = {}
    for p in params:
        if p.kind != p.KEYWORD_ONLY:
            continue
        if p.default is p.empty:
            raise UnsupportedError(
                f"{where} takes the keyword-only argument {p.name!r} without a default; nngraph converts "
                f"model(*example_inputs) and passes no keyword arguments. Give {p.name!r} a default, or wrap "
                f"the model in a module whose forward passes {p.name}=... itself")
        if not isinstance(p.default, _PLAIN_DEFAULTS):
            raise UnsupportedError(
                f"{where} takes the keyword-only argument {p.name!r} with a default of type "
                f"{type(p.default).__name__}; nngraph traces keyword-only arguments at plain defaults (None, "
                "numbers, strings, flags) only. Wrap the model in a module whose forward passes it")
        defaults[p.name] = p.default
    return defaults


_GUARDS = {operator.eq, torch._assert, fx._symbolic_trace._assert_is_none}


def _drop_specialised_placeholders(module: nn.Module, graph: fx.Graph, defaults: dict[str, object]) -> None:
    """Remove the placeholders fx keeps for arguments traced as constants (``concrete_args``), with the
    checks it adds that they hold those values; the traced forward then takes the example inputs only.
    (fx makes one placeholder per argument of ``forward``, in order; it renames them, ``mask_1``.)"""
    if not defaults:
        return
    params = list(inspect.signature(module.forward).parameters)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(params) != len(placeholders):
        return  # *args / **kwargs: the guards stay, and the walk refuses them by name
    for name, node in zip(params, placeholders):
        if name not in defaults:
            continue
        guards, stack = [], list(node.users)
        while stack:
            user = stack.pop()
            if user in guards:
                continue
            if user.op != "call_function" or user.target not in _GUARDS:
                break
            guards.append(user)
            stack.extend(user.users)
        else:
            for guard in reversed(_topological(graph, guards)):
                graph.erase_node(guard)
            graph.erase_node(node)


def _topological(graph: fx.Graph, nodes: list[fx.Node]) -> list[fx.Node]:
    order = {n: i for i, n in enumerate(graph.nodes)}
    return sorted(nodes, key=order.__getitem__)


def refuse_hidden_code(module: nn.Module) -> None:
    """Refuse forward hooks, forward pre-hooks and per-instance ``forward`` overrides: code a
    tracer may not see, which can change what the model computes. Backward hooks do not change
    the forward and are allowed."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        raise UnsupportedError(
            "global forward hooks are registered (torch.nn.modules.module.register_module_forward_hook); "
            "they change what every module computes. Remove them before converting."
        )
    for name, sub in module.named_modules():
        where = f"module {name!r} ({type(sub).__name__})" if name else f"the model ({type(sub).__name__})"
        if sub._forward_hooks or sub._forward_pre_hooks:
            raise UnsupportedError(
                f"{where} has forward hooks or forward pre-hooks, which can change its output and "
                "which nngraph does not trace. Remove them (handle.remove()) or fold what they do into forward."
            )
        if "forward" in vars(sub):
            raise UnsupportedError(
                f"{where} has its forward replaced on the instance (module.forward = ...); nngraph "
                "converts what the class's forward computes, so it refuses. Define a subclass instead."
            )


def input_spec(inputs: Sequence[object]) -> tuple | None:
    """``((shape, dtype), ...)`` of ``inputs``, or ``None`` if one of them is not a tensor."""
    if not all(isinstance(t, torch.Tensor) for t in inputs):
        return None
    return tuple((tuple(t.shape), t.dtype) for t in inputs)


def _propagate_shapes(gm: fx.GraphModule, module: nn.Module, example_inputs: Sequence[torch.Tensor] | None) -> None:
    """Annotate ``gm``'s nodes with ``meta['tensor_meta']`` by running example inputs through it,
    and record the inputs' shapes and dtypes as ``gm.meta['input_spec']``."""
    inputs = tuple(example_inputs) if example_inputs is not None else example_inputs_for(module, gm)
    gm.meta["input_spec"] = input_spec(inputs)
    size = sum(p.numel() for p in module.parameters()) + sum(t.numel() for t in inputs if isinstance(t, torch.Tensor))
    if size >= FAKE_PROPAGATION_SIZE and _propagate_fake(gm, inputs):
        return
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*inputs)
    except Exception as error:
        raise UnsupportedError(
            f"running example inputs of shapes {[tuple(getattr(t, 'shape', ())) for t in inputs]} "
            f"through {type(module).__name__} failed: {error}. Pass example_inputs=(tensor, ...) "
            "with the shapes the model expects."
        ) from error


#: Parameters plus input entries from which shapes are propagated on fake tensors: below it the real forward is
#: as cheap as faking it (a tiny model's ops take microseconds, a fake op tens of them)
FAKE_PROPAGATION_SIZE = 1 << 20


def _propagate_fake(gm: fx.GraphModule, inputs: Sequence[object]) -> bool:
    """Annotate ``gm`` as :class:`ShapeProp` does, from fake tensors (shapes and dtypes computed without running a
    single convolution or product: the first ``to_graph`` of a large model spent a third of its time there).
    ``False``, with ``gm`` as it was, when a node cannot run on fake tensors (data-dependent shapes, ops without a
    fake kernel): the real forward is then used."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.node import map_aggregate
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp
    from torch.fx.passes.shape_prop import _extract_tensor_metadata

    try:
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        fakes = [mode.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in inputs]
        with torch.no_grad():
            FakeTensorProp(gm, mode).propagate(*fakes)
    except Exception:  # the real forward says what is wrong, if anything is
        for node in gm.graph.nodes:
            node.meta.pop("val", None)
        return False
    for node in gm.graph.nodes:
        value = node.meta.pop("val", None)
        found = False

        def extract(v):
            nonlocal found
            if isinstance(v, torch.Tensor):
                found = True
                return _extract_tensor_metadata(v)
            return v

        meta = map_aggregate(value, extract)
        if found:
            node.meta["tensor_meta"] = meta
        node.meta["type"] = type(value)
    return True


def _trace_bare_layer(
    module: nn.Module, example_inputs: Sequence[torch.Tensor] | None
) -> tuple[fx.GraphModule, dict[str, str]]:
    """A one-node graph calling ``module`` as the submodule ``layer`` of a wrapper (one placeholder per
    required positional argument of its ``forward``); ``aliases`` map ``layer.*`` to the layer's names."""
    import inspect

    graph = fx.Graph()
    params = [
        p for p in inspect.signature(module.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    call = graph.call_module("layer", tuple(graph.placeholder(p.name) for p in params))
    graph.output(call)
    root = nn.Module()
    root.add_module("layer", module)
    gm = fx.GraphModule(root, graph, type(module).__name__)
    names = [n for n, _ in module.named_parameters(remove_duplicate=False)]
    names += [n for n, _ in module.named_buffers(remove_duplicate=False)]
    _propagate_shapes(gm, module, example_inputs)
    return gm, {f"layer.{n}": n for n in names}


def _export(module: nn.Module, example_inputs: Sequence[torch.Tensor] | None) -> tuple[fx.GraphModule, dict[str, str]]:
    from .export_lift import lift_export

    inputs = tuple(example_inputs) if example_inputs is not None else example_inputs_for(module)
    gm, aliases = lift_export(module, inputs)
    gm.meta["input_spec"] = input_spec(inputs)
    return gm, aliases


def _first_layer(module: nn.Module) -> nn.Module | None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding, nn.MultiheadAttention,
                          nn.TransformerEncoderLayer)):
            return m
    return None


def example_inputs_for(module: nn.Module, gm: fx.GraphModule | None = None, batch: int = 2, spatial: int = 16,
                       tokens: int = 8, generator: torch.Generator | None = None,
                       dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
    """Small random inputs for ``module`` made up from its first layer (the one input-shape guesser).

    A Linear first layer gives ``(batch, in_features)``; a ConvNd ``(batch, C, spatial, ...)`` (a CNN whose
    flatten head needs another size must be given ``example_inputs``); an Embedding ``(batch, tokens)``
    token ids; attention and transformer layers ``(batch, 5, d_model)`` (batch first as configured). ``gm``:
    the traced module, whose placeholders say how many inputs to give; ``dtype``: of float inputs
    (default: the module's).
    """
    first = _first_layer(module)
    num_inputs = 1
    if gm is not None:
        num_inputs = sum(1 for n in gm.graph.nodes if n.op == "placeholder")
    dtype, device = dtype or parameter_dtype(module), parameter_device(module)
    if first is None:
        raise UnsupportedError(
            f"{type(module).__name__} has no Linear, Conv, Embedding or attention layer to infer an "
            "input shape from; pass example_inputs."
        )
    if isinstance(first, nn.Linear):
        shape = (batch, first.in_features)
    elif isinstance(first, nn.modules.conv._ConvNd):
        shape = (batch, first.in_channels, *[spatial] * len(first.kernel_size))
    elif isinstance(first, nn.Embedding):
        ids = torch.randint(0, first.num_embeddings, (batch, tokens), generator=generator)
        return (ids.to(device),) * num_inputs
    else:
        d_model = first.embed_dim if isinstance(first, nn.MultiheadAttention) else first.self_attn.embed_dim
        batch_first = first.batch_first if isinstance(first, nn.MultiheadAttention) else first.self_attn.batch_first
        shape = (batch, 5, d_model) if batch_first else (5, batch, d_model)
    x = torch.randn(*shape, generator=generator, dtype=dtype).to(device)
    return (x,) * num_inputs
