"""INR classification: which digit an implicit neural representation draws, read from its weights.

``python -m tasks.inr_classification --help`` runs :mod:`.task`;
the package re-exports its entry points, read on first use."""
from .. import reexport

__all__ = ["TASK", "build_parser", "run", "main"]
__getattr__ = reexport(__name__, "task", __all__)
