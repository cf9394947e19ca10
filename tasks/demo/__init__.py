"""The demo: small zoos, the shipped checkpoints and every task briefly, one results table and page.

``python -m tasks.demo --help`` runs :mod:`.demo`;
the package re-exports its entry points, read on first use."""
from .. import reexport

__all__ = ["build_parser", "main"]
__getattr__ = reexport(__name__, "demo", __all__)
