"""Weight generation: classifiers sampled without training, conditioned on their test accuracy.

``python -m tasks.generation --help`` runs :mod:`.task`; the package re-exports its entry points."""
from .task import TASK, build_parser, run, main

__all__ = ["TASK", "build_parser", "run", "main"]
