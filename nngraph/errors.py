"""The exceptions nngraph raises on bad files and interrupted work, under one base the user can catch.

Every message names what is wrong and where (the file, and the line for line-based files).
"""
from __future__ import annotations

__all__ = ["NNGraphError", "ZooError", "SpecError", "CheckpointError", "ProgramError"]


class NNGraphError(Exception):
    """Base of nngraph's own errors. The converter's errors (:class:`~nngraph.UnsupportedError`,
    :class:`~nngraph.GraphMismatchError`, :class:`~nngraph.SoundnessError`) are under it too."""


class ZooError(NNGraphError, RuntimeError):
    """A zoo directory is missing a file, holds a corrupted or unsafe one, was built with other
    settings, or is being built by another process."""


class SpecError(NNGraphError, ValueError):
    """An architecture spec is malformed or exceeds the size limits (:class:`nngraph.zoo.specs.SpecLimits`)."""


class CheckpointError(NNGraphError, RuntimeError):
    """A training checkpoint is unreadable, fails its checksum, or its two files do not belong together."""


class ProgramError(NNGraphError, ValueError):
    """A ``.pt2`` file is not a ``torch.export`` program this process can load (another kind of file, a
    truncated one, or a program calling a custom operator that is not registered here, named in the message)."""
