"""Model merging: the loss barrier between two trained models before and after alignment.

``python -m tasks.merging --help`` runs :mod:`.task`; the package re-exports its entry points."""
from .task import build_parser, main

__all__ = ["build_parser", "main"]
