"""INR editing: the weight deltas that dilate the digit an INR draws, predicted from its weights.

``python -m tasks.inr_editing --help`` runs :mod:`.task`;
the package re-exports its entry points, read on first use."""
from .. import reexport

__all__ = ["TASK", "build_parser", "run", "main"]
__getattr__ = reexport(__name__, "task", __all__)
