"""Registries mapping module types and fx call targets to converters.

A converter is a function ``fn(ctx, node, *args, **kwargs) -> value`` where ``ctx`` is the
:class:`~nngraph.convert.walk.ConversionContext`, ``node`` the ``torch.fx.Node`` being
converted, and ``args``/``kwargs`` the node's arguments with every fx node replaced by the
value its converter returned (see :mod:`nngraph.convert.values`). Module converters receive the
module as ``ctx.module_of(node)``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Converter = Callable[..., object]

#: Converters keyed by ``type(module)`` (exact type: a subclass with its own ``forward`` is traced
#: through, not trusted to behave like its parent).
MODULE_CONVERTERS: dict[type, Converter] = {}
#: Converters keyed by ``node.target`` of ``call_function`` (a callable) and ``call_method``
#: (a method name such as ``"view"``) nodes.
FUNCTION_CONVERTERS: dict[object, Converter] = {}
#: Converters of the operations that may read attention scores (:class:`~nngraph.convert.values.ScoreValue`),
#: keyed like the two tables above (module types and fx call targets). The walk hands a node that
#: reads scores to this table only; an operation missing here is refused by name.
SCORE_CONVERTERS: dict[object, Converter] = {}
#: Targets that only forward their first argument (dropout, identity, contiguous, ...). They are
#: known here so that activations can tell whether a value is used more than once.
PASSTHROUGH: set[object] = set()
#: Module types and fx targets whose converters follow a value whose heads are merged into a batch axis
#: (:attr:`~nngraph.convert.values.TensorValue.merged`): moves, pass-through ops and attention products.
#: The walk refuses such a value anywhere else, by name.
MERGED_HEADS: set[object] = set()
#: fx targets whose converters read a parameter plus a constant (:class:`~nngraph.convert.values.OffsetParam`,
#: an attention mask made of a learned bias and a constant one). The walk refuses such a value anywhere else.
OFFSET_READERS: set[object] = set()


def accept_merged_heads(*targets: object) -> None:
    """Mark ``targets`` (module types or fx targets, already registered) as following merged heads."""
    MERGED_HEADS.update(targets)


def accept_offset_params(*targets: object) -> None:
    """Mark fx ``targets`` (already registered) as reading :class:`~nngraph.convert.values.OffsetParam` values."""
    OFFSET_READERS.update(targets)


def register_module(*module_types: type, passthrough: bool = False) -> Callable[[Converter], Converter]:
    """Register ``fn`` as the converter of every type in ``module_types``. Refuses duplicates."""

    def decorator(fn: Converter) -> Converter:
        for module_type in module_types:
            if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
                raise TypeError(f"register_module expects nn.Module subclasses, got {module_type!r}")
            if module_type in MODULE_CONVERTERS:
                raise ValueError(f"a converter for {module_type.__name__} is already registered")
            MODULE_CONVERTERS[module_type] = fn
            if passthrough:
                PASSTHROUGH.add(module_type)
        return fn

    return decorator


def register_function(*targets: object, passthrough: bool = False) -> Callable[[Converter], Converter]:
    """Register ``fn`` as the converter of fx ``call_function`` / ``call_method`` targets."""

    def decorator(fn: Converter) -> Converter:
        for target in targets:
            if target in FUNCTION_CONVERTERS:
                raise ValueError(f"a converter for {target!r} is already registered")
            FUNCTION_CONVERTERS[target] = fn
            if passthrough:
                PASSTHROUGH.add(target)
        return fn

    return decorator


def register_score_op(*targets: object) -> Callable[[Converter], Converter]:
    """Register ``fn`` as the converter of module types / fx targets applied to attention scores."""

    def decorator(fn: Converter) -> Converter:
        for target in targets:
            if target in SCORE_CONVERTERS:
                raise ValueError(f"a score converter for {target!r} is already registered")
            SCORE_CONVERTERS[target] = fn
        return fn

    return decorator


def target_name(target: object) -> str:
    """A readable name for a module type or fx target."""
    if isinstance(target, str):
        return f"Tensor.{target}"
    if isinstance(target, torch._ops.OpOverload):  # an ATen operation of torch.export: aten.mul.Tensor
        return str(target)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or ""
    if not name or "<locals>" in name:  # torch's boolean_dispatch wrappers: the plain name reads better
        name = getattr(target, "__name__", None) or repr(target)
    if name.startswith("_VariableFunctionsClass."):  # torch.erf and the other functions of torch's C core
        return "torch." + name.split(".", 1)[1]
    module = "operator" if module == "_operator" else module
    return f"{module}.{name}" if module and module != "builtins" else name


def supported_modules() -> list[str]:
    """Names of the module types with a converter, sorted."""
    return sorted(t.__name__ for t in MODULE_CONVERTERS)


def supported_functions() -> list[str]:
    """Names of the functions / tensor methods with a converter, sorted."""
    return sorted({target_name(t) for t in FUNCTION_CONVERTERS})
