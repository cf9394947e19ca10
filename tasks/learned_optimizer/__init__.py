"""Learned optimizers meta-trained on small digits problems, evaluated against tuned Adam.

``python -m tasks.learned_optimizer --help`` runs :mod:`.task`; the package re-exports its entry points."""
from .task import build_parser, main

__all__ = ["build_parser", "main"]
