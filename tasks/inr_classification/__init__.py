"""INR classification: which digit an implicit neural representation draws, read from its weights.

``python -m tasks.inr_classification --help`` runs :mod:`.task`; the package re-exports its entry points."""
from .task import TASK, build_parser, run, main

__all__ = ["TASK", "build_parser", "run", "main"]
