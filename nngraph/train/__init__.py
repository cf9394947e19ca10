"""The training loop shared by every task: :func:`fit` with :class:`TrainConfig`.

Checkpoints (safetensors + JSON, atomic), resume, early stopping, a JSON Lines metrics file per run,
and DDP data parallelism under ``torchrun`` (gloo on CPU).
"""
from .allocator import keep_freed_memory
from .checkpoint import atomic_write, load_best_model, load_checkpoint, save_checkpoint
from .distributed import is_main
from .loop import FitResult, TrainConfig, fit, make_loader, seed_everything, to_device
from .metrics import read_metrics

__all__ = [
    "FitResult",
    "TrainConfig",
    "atomic_write",
    "fit",
    "is_main",
    "keep_freed_memory",
    "load_best_model",
    "load_checkpoint",
    "make_loader",
    "read_metrics",
    "save_checkpoint",
    "seed_everything",
    "to_device",
]
