"""Model merging: the loss barrier between two trained models before and after alignment.

``python -m tasks.merging --help`` runs :mod:`.task`;
the package re-exports its entry points, read on first use."""
from .. import reexport

__all__ = ["build_parser", "main"]
__getattr__ = reexport(__name__, "task", __all__)
