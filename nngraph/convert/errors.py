"""Errors raised by the converters."""
from __future__ import annotations

from ..errors import NNGraphError


class UnsupportedError(NNGraphError, TypeError):
    """A module or operation that nngraph cannot turn into a neural graph without losing
    or inventing structure. The message names the operation, its place in the model and
    what is supported."""


class GraphMismatchError(NNGraphError, ValueError):
    """A graph does not fit the module it is being written into (other sizes, other layers)."""
