"""Weight generation: classifiers sampled without training, conditioned on their test accuracy.

``python -m tasks.generation --help`` runs :mod:`.task`;
the package re-exports its entry points, read on first use."""
from .. import reexport

__all__ = ["TASK", "build_parser", "run", "main"]
__getattr__ = reexport(__name__, "task", __all__)
