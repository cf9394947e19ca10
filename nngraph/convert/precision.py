"""Running a model's lower-precision islands in float64, so a soundness check stays tight on them.

Hugging Face's LLaMA, Mistral and Qwen2 compute RMSNorm, rotary angles and softmax in float32 even when the model
is float64 (``x.to(torch.float32)`` ... ``.to(input_dtype)``). A permutation check in float64 then sees the float32
rounding of a reordered sum (~1e-7 relative) and needs a tolerance of ``1000 * eps(float32)``, loose enough to hide
a small unsound claim. :func:`float64_islands` runs such a forward with every cast to a lower floating precision
turned into a cast to float64 (and float64 as the default dtype of new tensors), so the whole forward is float64
and the check can keep float64's tolerance. Permuting neurons is a relabelling of the same real-valued function,
so computing it more precisely cannot make an unsound claim pass; it only removes the noise around it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["float64_islands", "LowPrecisionCasts"]

_LOWER = (torch.float32, torch.float16, torch.bfloat16)
_CAST_METHODS = {torch.Tensor.float, torch.Tensor.half, torch.Tensor.bfloat16}
_BITCASTS = {torch.Tensor.view}  # ``x.view(dtype)`` reinterprets bits: never rewritten


def _lift(value: Any) -> Any:
    return torch.float64 if value in _LOWER else value


class LowPrecisionCasts(TorchFunctionMode):
    """A torch function mode that rewrites casts to float32 / float16 / bfloat16 into float64.

    Attributes:
        rewritten: how many calls had a dtype rewritten (0: the forward had no lower-precision island).
    """

    def __init__(self) -> None:
        super().__init__()
        self.rewritten = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _CAST_METHODS:
            self.rewritten += 1
            return args[0].to(torch.float64)
        if func not in _BITCASTS:
            new_args = tuple(_lift(a) if isinstance(a, torch.dtype) else a for a in args)
            new_kwargs = {k: _lift(v) if isinstance(v, torch.dtype) else v for k, v in kwargs.items()}
            if any(a is not b for a, b in zip(new_args, args)) or any(
                    new_kwargs[k] is not kwargs[k] for k in kwargs):
                self.rewritten += 1
                args, kwargs = new_args, new_kwargs
        return func(*args, **kwargs)


@contextlib.contextmanager
def float64_islands() -> Iterator[LowPrecisionCasts]:
    """Within the block, casts to a lower floating precision cast to float64 and new tensors default to float64.

    Wrap only a model's forward in it (the graph code around a check must keep its own dtypes).

    Example:
        >>> with float64_islands() as casts:
        ...     out = model.double()(x.double())
        >>> casts.rewritten  # the casts that would have dropped precision
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with LowPrecisionCasts() as mode:
            yield mode
    finally:
        torch.set_default_dtype(previous)
