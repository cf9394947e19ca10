"""INR editing: the weight deltas that dilate the digit an INR draws, predicted from its weights.

``python -m tasks.inr_editing --help`` runs :mod:`.task`; the package re-exports its entry points."""
from .task import TASK, build_parser, run, main

__all__ = ["TASK", "build_parser", "run", "main"]
