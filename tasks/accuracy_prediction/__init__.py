"""Accuracy prediction: a classifier's test accuracy read from its weights.

``python -m tasks.accuracy_prediction --help`` runs :mod:`.task`; the package re-exports its entry points."""
from .task import TASK, build_parser, run, main

__all__ = ["TASK", "build_parser", "run", "main"]
