"""Learned optimizers meta-trained on small digits problems, evaluated against tuned Adam.

``python -m tasks.learned_optimizer --help`` runs :mod:`.task`;
the package re-exports its entry points, read on first use."""
from .. import reexport

__all__ = ["build_parser", "main"]
__getattr__ = reexport(__name__, "task", __all__)
