"""Process-group helpers: the same script runs on one process or under ``torchrun`` (gloo on CPU)."""
from __future__ import annotations

import atexit
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["setup", "world_size", "rank", "is_main", "all_mean", "broadcast", "barrier"]


def setup(device: str | torch.device = "cpu") -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    Returns whether training is distributed. Uses gloo on CPU and nccl on CUDA.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend)
        # gloo's threads must be joined before the interpreter exits, or the process aborts
        # ("terminate called without an active exception") after training succeeded
        atexit.register(_shutdown)
    return True


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank; under torchrun also before / after the process group exists (``RANK``)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0)."""
    return rank() == 0


def all_mean(value: float) -> float:
    """The mean of ``value`` over all processes."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (so all ranks take the same early-stopping decision)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
