"""The shipped checkpoints (``checkpoints/``): export a full run's best model, load it, score it.

``python -m tasks.pretrained --help`` runs :mod:`.shipped`;
the package re-exports its entry points, read on first use."""
from .. import reexport

__all__ = ["CHECKPOINT_DIR", "available", "read_meta", "build_predictor", "load", "evaluate", "export",
           "check_unseen"]
__getattr__ = reexport(__name__, "shipped", __all__)
