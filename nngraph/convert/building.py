"""Building a model's layout, and the cache that lets a zoo of one architecture convert at the cost of one trace.

Below :mod:`nngraph.convert.api` and :mod:`nngraph.convert.verify`, which both build layouts.
"""
from __future__ import annotations

import enum
import functools
import hashlib
import types
import warnings
from typing import Sequence

import torch
from torch import nn

from .builder import GraphBuilder
from .errors import UnsupportedError
from .layout import Layout
from .module_info import parameter_dtype
from .repair import repair
from .trace import trace
from .walk import RetryWalk, walk

__all__ = ["build_layout", "clear_cache"]


#: Walks of one model before a converter that keeps refusing after changing the graph is an error.
_MAX_WALKS = 256

_LAYOUT_CACHE: dict[tuple, Layout] = {}
_CACHE_SIZE = 64


def _architecture_key(module: nn.Module, example_inputs, kernel_box, method) -> tuple | None:
    if example_inputs is not None:
        shapes = tuple((tuple(t.shape), t.dtype) for t in example_inputs)
    else:
        shapes = None
    params = tuple((n, tuple(p.shape), p.dtype) for n, p in module.named_parameters(remove_duplicate=False))
    constant = _constant_buffer_names(module)
    buffers = tuple((n, tuple(b.shape), _tensor_values(b) if n in constant else None)
                    for n, b in module.named_buffers(remove_duplicate=False))
    return (_module_signature(module), params, buffers, shapes, kernel_box, method)


def _constant_buffer_names(module: nn.Module) -> set[str]:
    """Buffers whose values the converter may read as constants of the forward, so that the layout depends
    on them: non-persistent buffers (a causal or window mask) and integer or boolean ones (position ids, an
    index table), except BatchNorm's ``num_batches_tracked`` (a counter no forward in eval reads)."""
    names = set()
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for name, b in sub.named_buffers(recurse=False):
            full = f"{prefix}.{name}" if prefix else name
            if b is not None and (name in sub._non_persistent_buffers_set or not b.is_floating_point()) \
                    and name != "num_batches_tracked":
                names.add(full)
    return names


def _tensor_values(t: torch.Tensor) -> tuple:
    """A hashable stand-in for a tensor's values: two constants share a layout only if they are equal."""
    if t.device.type == "meta":
        return ("meta", tuple(t.shape), t.dtype)
    data = t.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(data.view(torch.uint8).numpy().tobytes()).hexdigest()
    return (tuple(t.shape), t.dtype, digest)


_PLAIN = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device, torch.Size)
_INTERNAL = {"_parameters", "_buffers", "_modules", "training", "_non_persistent_buffers_set"}
#: how many objects, functions and classes deep an attribute is read by content; deeper ones by identity
_OBJECT_DEPTH = 3


def _attribute_signature(value, memo: dict | None = None, depth: int = 0):
    """A hashable stand-in for an attribute a ``forward`` may branch on, so that two models built alike share a
    layout and two whose forwards may differ do not: plain values, containers and tensors by content; plain
    objects (a config) by their attributes and functions by their code and closure, up to
    :data:`_OBJECT_DEPTH` deep; modules held outside ``_modules`` by their class; classes made inside a
    function by their methods' code; anything else, or deeper, by identity (a cache miss, never a wrong hit)."""
    memo = {} if memo is None else memo
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, enum.Enum):
        return (type(value), value.name)
    if isinstance(value, torch.Tensor):  # a tensor attribute a forward reads is a constant of it: by value
        return ("tensor", _tensor_values(value))
    key = id(value)
    if key in memo:
        return memo[key]
    memo[key] = ("cycle", key)  # a reference back into an object being read
    deeper = depth + 1
    if isinstance(value, (tuple, list)):
        out = (type(value), tuple(_attribute_signature(v, memo, depth) for v in value))
    elif isinstance(value, dict):
        out = ("dict", tuple(sorted(((repr(k), _attribute_signature(v, memo, depth)) for k, v in value.items()),
                                    key=lambda kv: kv[0])))
    elif isinstance(value, (set, frozenset)):
        out = ("set", tuple(sorted(repr(_attribute_signature(v, memo, depth)) for v in value)))
    elif depth >= _OBJECT_DEPTH:
        out = ("object", key)
    elif isinstance(value, types.FunctionType):  # its code and what its closure holds
        cells = tuple(_cell(c, value) for c in value.__closure__ or ())
        out = ("function", id(value.__code__), _attribute_signature((cells, value.__defaults__), memo, deeper))
    elif isinstance(value, types.MethodType):
        out = ("method", _attribute_signature(value.__func__, memo, deeper), type(value.__self__))
    elif isinstance(value, functools.partial):
        out = ("partial", _attribute_signature((value.func, value.args, value.keywords), memo, deeper))
    elif isinstance(value, type):
        out = _class_signature(value)
    elif isinstance(value, nn.Module):  # a module held outside _modules (a kernel function): what it runs
        out = ("module", _class_signature(type(value)))
    elif hasattr(value, "__dict__"):
        out = (_class_signature(type(value)), _attribute_signature(vars(value), memo, deeper))
    else:
        out = ("object", key)
    memo[key] = out
    return out


def _class_signature(cls: type) -> tuple:
    """A class by identity, or, made inside a function (new per call), by its name and its methods' code."""
    if "<locals>" not in cls.__qualname__:
        return ("class", id(cls))
    code = tuple(sorted((k, id(v.__code__)) for k, v in vars(cls).items() if isinstance(v, types.FunctionType)))
    return ("class", cls.__module__, cls.__qualname__, code)


def _cell(cell, function):
    """What a closure cell holds (``None`` for an empty one or the function itself)."""
    try:
        content = cell.cell_contents
    except ValueError:  # empty
        return None
    return None if content is function else content


def _module_signature(module: nn.Module) -> tuple:
    """Everything about ``module`` and its submodules that may change the traced graph: their
    classes, names and attributes (flags, sizes, strings, containers and plain objects such as a
    config by content; functions and other objects by identity), so that two models share a cached
    layout only when their forwards cannot differ, and two built alike do."""
    out = []
    memo: dict = {}  # one config read once, however many layers hold it
    for name, sub in module.named_modules(remove_duplicate=False):
        attrs = tuple(
            (k, _attribute_signature(v, memo)) for k, v in sorted(vars(sub).items())
            if k not in _INTERNAL and not k.startswith("_forward") and not k.startswith("_backward")
            and not k.endswith("hooks")
        )
        out.append((name, type(sub), attrs))
    return tuple(out)


def clear_cache() -> None:
    """Forget every cached layout (benchmarks time the first conversion of a model this way)."""
    _LAYOUT_CACHE.clear()


def build_layout(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor] | None = None,
    kernel_box: tuple[int, int, int] | None = None,
    cache: bool = True,
    method: str = "auto",
    check: bool = True,
) -> Layout:
    """Trace ``module`` and record the structure of its neural graph.

    The layout depends only on the architecture; with ``cache=True`` models that share their
    class, ``repr``, parameter shapes and example-input shapes share one layout (a model zoo
    converts at the cost of one trace). ``method`` chooses the tracer (see :func:`trace`).
    Operations no converter takes go to the fallback (:mod:`nngraph.convert.fallback`); with
    ``check=True`` a layout that used it is proven on the model (:func:`~nngraph.convert.repair.repair`:
    every symmetry group that changes the outputs is fixed) before it is returned or cached.
    """
    kernel_box = _no_kernel_box(kernel_box)
    key = _architecture_key(module, example_inputs, kernel_box, method) if cache else None
    if key is not None and key in _LAYOUT_CACHE:
        if not _LAYOUT_CACHE[key].edited:
            return _LAYOUT_CACHE[key]
        del _LAYOUT_CACHE[key]  # a graph's shared structure was edited in place: build the layout afresh
    gm, aliases = trace(module, example_inputs, method)
    forced: dict[str, str] = {}  # fx node -> why its converter refused it
    for _ in range(_MAX_WALKS):
        builder = GraphBuilder(module, aliases)
        try:
            walk(gm, builder, dict(forced))
            break
        except RetryWalk as retry:  # a converter refused after changing the graph: hand its node to the fallback
            if retry.node in forced:
                raise retry.error from None
            forced[retry.node] = retry.reason
    else:
        raise UnsupportedError(f"{type(module).__name__}: more than {_MAX_WALKS} operations were refused by their "
                               "converters after changing the graph")
    layout = builder.finish(parameter_dtype(module), kernel_box, gm.graph, gm.meta.get("input_spec"))
    if layout.fallbacks and check:  # what a fallback claims is proven on the model before it is used
        layout = repair(module, layout, example_inputs)
    if key is not None:
        if len(_LAYOUT_CACHE) >= _CACHE_SIZE:
            _LAYOUT_CACHE.pop(next(iter(_LAYOUT_CACHE)))
        _LAYOUT_CACHE[key] = layout
    return layout


def _no_kernel_box(kernel_box):
    if kernel_box is not None:
        warnings.warn("kernel_box is deprecated and ignored: edge kernels are stored at their own size "
                      "(nngraph.schema), so graphs of any architectures batch without padding",
                      DeprecationWarning, stacklevel=3)
    return None
