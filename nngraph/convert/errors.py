"""Errors raised by the converters."""
from __future__ import annotations

from torch import fx

from ..errors import NNGraphError
from .registry import target_name


class UnsupportedError(NNGraphError, TypeError):
    """A module or operation that nngraph cannot turn into a neural graph without losing
    or inventing structure. The message names the operation, its place in the model and
    what is supported."""


class GraphMismatchError(NNGraphError, ValueError):
    """A graph does not fit the module it is being written into (other sizes, other layers)."""


def describe(node: fx.Node) -> str:
    """``'layer1.0.conv1' (Conv2d)``-style description of an fx node for error messages."""
    if node.op == "call_module":
        module = node.graph.owning_module.get_submodule(node.target)
        return f"module {node.target!r} ({type(module).__name__})"
    if node.op in ("call_function", "call_method"):
        folded = node.meta.get("written_out")
        if folded:  # a softmax the model spells as arithmetic (nngraph.convert.softmax_patterns)
            return f"operation {target_name(node.target)} (written out by hand, ending at fx node {folded!r})"
        return f"operation {target_name(node.target)} at fx node {node.name!r}"
    return f"fx node {node.name!r} ({node.op})"
