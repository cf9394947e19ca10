"""The shipped checkpoints (``checkpoints/``): export a full run's best model, load it, score it.

``python -m tasks.pretrained --help`` runs :mod:`.shipped`; the package re-exports its entry points."""
from .shipped import CHECKPOINT_DIR, available, build_predictor, check_unseen, evaluate, export, load, read_meta

__all__ = ["CHECKPOINT_DIR", "available", "read_meta", "build_predictor", "load", "evaluate", "export",
           "check_unseen"]
