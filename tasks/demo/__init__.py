"""The demo: small zoos, the shipped checkpoints and every task briefly, one results table and page.

``python -m tasks.demo --help`` runs :mod:`.demo`; the package re-exports its entry points."""
from .demo import build_parser, main

__all__ = ["build_parser", "main"]
