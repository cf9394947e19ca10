"""Model embeddings: the self-supervised encoder, ``nngraph embed`` / ``nngraph search`` and their
evaluation.

``python -m tasks.embeddings --help`` runs :mod:`.task`;
the package re-exports its entry points, read on first use."""
from .. import reexport

__all__ = ["build_parser", "retrieval_baselines", "tsne_2d", "run", "main"]
__getattr__ = reexport(__name__, "task", __all__)
