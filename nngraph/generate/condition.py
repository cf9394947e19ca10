"""What a generator is conditioned on (nothing, a scalar such as a target accuracy, or a class), and the
features of time and condition that its denoiser reads."""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["ConditionEncoder", "time_features", "TIME_DIM"]

#: Fourier frequencies (times pi) of the time and scalar-condition features.
_FREQUENCIES = (1.0, 2.0, 4.0, 8.0)
TIME_DIM = 1 + 2 * len(_FREQUENCIES)


def _fourier(v: Tensor) -> Tensor:
    """``(B,)`` -> ``(B, 1 + 2K)``: ``v`` and its sines and cosines at :data:`_FREQUENCIES` times pi."""
    angles = v.unsqueeze(-1) * (math.pi * torch.tensor(_FREQUENCIES, dtype=v.dtype, device=v.device))  # (B, K)
    return torch.cat([v.unsqueeze(-1), angles.sin(), angles.cos()], dim=-1)


def time_features(t: Tensor) -> Tensor:
    """Features of the flow time ``t`` ``(B,)`` in ``[0, 1]``: ``(B, TIME_DIM)``."""
    return _fourier(t)


class ConditionEncoder:
    r"""Turns conditions into the features a denoiser reads, with a flag for "no condition".

    ``kind`` is resolved from the zoo's conditions by :meth:`fit`: ``None`` -> ``"none"``; a float tensor ->
    ``"scalar"`` (standardised with the zoo's mean and std, then Fourier features); an integer tensor ->
    ``"class"`` (one-hot over ``num_classes``). The last column is 1 where the condition is dropped
    (classifier-free guidance trains with some conditions dropped and samples with
    :math:`v = v_\varnothing + w\,(v_c - v_\varnothing)`).

    Shapes:
        - :meth:`features`: conditions :math:`(B,)` and a drop mask :math:`(B,)` -> :math:`(B, C)` with
          :math:`C` = :attr:`dim`
    """

    KINDS = ("none", "scalar", "class")

    def __init__(self, kind: str = "none", mean: float = 0.0, std: float = 1.0, num_classes: int = 0):
        if kind not in self.KINDS:
            raise ValueError(f"Could not resolve condition kind {kind!r} among choices {list(self.KINDS)}")
        self.kind, self.mean, self.std, self.num_classes = kind, float(mean), float(std), int(num_classes)

    @classmethod
    def fit(cls, conditions: Tensor | None, num_models: int) -> "ConditionEncoder":
        """The encoder of a zoo's ``conditions`` (``(M,)``, one per model, or ``None``)."""
        if conditions is None:
            return cls("none")
        conditions = torch.as_tensor(conditions)
        if conditions.shape != (num_models,):
            raise ValueError(f"conditions must have one value per graph: shape ({num_models},), "
                             f"got {tuple(conditions.shape)}")
        if conditions.is_floating_point():
            if not bool(torch.isfinite(conditions).all()):
                raise ValueError("conditions hold NaN or Inf; drop those models or give them a finite value")
            std = float(conditions.double().std()) if num_models > 1 else 1.0
            return cls("scalar", float(conditions.double().mean()), std if std > 0 else 1.0)
        if conditions.dtype == torch.bool or int(conditions.min()) < 0:
            raise ValueError("class conditions must be integers >= 0 (a float tensor is read as a scalar condition)")
        return cls("class", num_classes=int(conditions.max()) + 1)

    @property
    def dim(self) -> int:
        """Width :math:`C` of the features (the flag included)."""
        return 1 + {"none": 0, "scalar": TIME_DIM, "class": self.num_classes}[self.kind]

    def values(self, condition, n: int) -> Tensor | None:
        """``condition`` (a number, a sequence or a tensor of ``n``) as ``(n,)`` values, checked; ``None`` stays."""
        if condition is None:
            return None
        if self.kind == "none":
            raise ValueError("this generator was fitted without conditions; sample with condition=None")
        c = torch.as_tensor(condition)
        c = c.expand(n) if c.dim() == 0 else c.reshape(-1)
        if c.numel() != n:
            raise ValueError(f"give one condition or {n} (one per sample), got {c.numel()}")
        if self.kind == "class":
            if c.is_floating_point() and not bool((c == c.round()).all()):
                raise ValueError(f"this generator is conditioned on classes; got non-integer conditions {c.tolist()[:4]}")
            c = c.long()
            if int(c.min()) < 0 or int(c.max()) >= self.num_classes:
                raise ValueError(f"class conditions must be in 0..{self.num_classes - 1}, got {sorted(set(c.tolist()))}")
            return c
        c = c.to(torch.float64)
        if not bool(torch.isfinite(c).all()):
            raise ValueError("conditions must be finite numbers")
        return c

    def features(self, conditions: Tensor | None, drop: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """``(B, C)``: the features of ``conditions`` ``(B,)``, zeros and the flag where ``drop`` ``(B,)`` is true
        (or everywhere when ``conditions`` is ``None``)."""
        b = drop.shape[0]
        if conditions is None or self.kind == "none":
            return torch.cat([torch.zeros(b, self.dim - 1, dtype=dtype, device=drop.device),
                              torch.ones(b, 1, dtype=dtype, device=drop.device)], dim=1)
        conditions = conditions.reshape(-1)
        if self.kind == "scalar":
            body = _fourier(((conditions.to(torch.float64) - self.mean) / self.std).to(dtype))  # (B, TIME_DIM)
        else:
            body = torch.nn.functional.one_hot(conditions.long(), self.num_classes).to(dtype)  # (B, classes)
        keep = (~drop).to(dtype).unsqueeze(-1)  # (B, 1)
        return torch.cat([body * keep, 1 - keep], dim=1)

    def state(self) -> dict:
        return {"kind": self.kind, "mean": self.mean, "std": self.std, "num_classes": self.num_classes}

    @classmethod
    def from_state(cls, state: dict) -> "ConditionEncoder":
        return cls(**state)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.kind!r}, dim={self.dim})"
