"""nngraph: neural networks as graphs, and equivariant graph networks that learn from them."""
from __future__ import annotations

from . import schema
from .convert import (
    GraphMismatchError,
    UnsupportedError,
    batch_graphs,
    build_layout,
    from_graph,
    random_hidden_permutation,
    to_graph,
)
from .modules import Sine

__version__ = "0.1.0"

__all__ = [
    "GraphMismatchError",
    "Sine",
    "UnsupportedError",
    "batch_graphs",
    "build_layout",
    "from_graph",
    "random_hidden_permutation",
    "schema",
    "to_graph",
]
