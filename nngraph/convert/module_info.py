"""What a module's parameters say about it (the floating dtype and the device its inputs should have), and the
tensors its output holds."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["output_tensors", "parameter_dtype", "parameter_device"]


def parameter_dtype(module: nn.Module, default: torch.dtype = torch.float32) -> torch.dtype:
    """The dtype of ``module``'s first parameter if it is a floating type, else ``default`` (no parameters,
    or quantised / integer ones)."""
    param = next(iter(module.parameters()), None)
    return param.dtype if param is not None and param.is_floating_point() else default


def parameter_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU for a module without parameters)."""
    param = next(iter(module.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def output_tensors(out) -> list[torch.Tensor]:
    """Every tensor in a model's output: tensors, tuples, lists, dicts, Hugging Face ModelOutputs."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in output_tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in output_tensors(v)]
    return []
