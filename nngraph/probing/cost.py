"""What one prediction costs: FLOPs of forward passes, counted by torch's FLOP counter."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["forward_flops", "probing_flops"]


@torch.no_grad()
def forward_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``module`` on ``inputs`` (in eval mode; its mode is restored).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode`: matrix products and convolutions (a
    multiply-add is 2 FLOPs); elementwise operations, activations and norms are not counted, as in the
    literature's FLOP figures.
    """
    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def probing_flops(models: Sequence[nn.Module], probes: torch.Tensor) -> float:
    """Mean FLOPs of running each of ``models`` on all ``P`` ``probes`` ``(P, *in_shape)``: the probing part of
    one prediction (``P`` forward passes of the probed model, batched)."""
    if len(models) == 0:
        raise ValueError("probing_flops needs at least one model")
    flops = []
    for m in models:
        dtype = next(m.parameters()).dtype if any(True for _ in m.parameters()) else probes.dtype
        flops.append(forward_flops(m, probes.to(dtype)))
    return sum(flops) / len(flops)
