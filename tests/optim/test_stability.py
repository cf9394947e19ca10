"""The shipped learned optimizer on a model deeper than any it was meta-trained on (three hidden layers of 128; the
widest meta-training MLPs are 128 and 64-64): it must not diverge within the trajectories' horizon (150 steps) and
must end below half its initial loss. The network shipped before the cone rule failed it (2.30 -> 3.18 at 150 steps:
its free correction of Adam's direction did not transfer, docs/tasks/learned_optimizer.md)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from nngraph.optim import GraphUpdateNetwork, LearnedOptimizer


def _digits():
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).reshape(-1, 64) / 16.0  # (n, 64)
    return x, torch.tensor(data.target)


def _wide_mlp() -> nn.Module:
    """Three hidden layers of 128: twice the widest and deeper than the MLPs of meta-training (64, and 32-32)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128),
                         nn.ReLU(), nn.Linear(128, 10))


def _run(opt_of, steps: int = 100) -> tuple[float, float, list[float]]:
    """``(initial, final, per-step)`` training losses of the wide MLP trained with ``opt_of(model)``."""
    x, y = _digits()
    model = _wide_mlp()
    opt = opt_of(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        initial = float(F.cross_entropy(model(x), y))
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(y), (64,), generator=generator)
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = float(F.cross_entropy(model(x), y))
    return initial, final, losses


def test_shipped_optimizer_is_stable_on_a_wider_deeper_mlp():
    initial, final, losses = _run(lambda m: LearnedOptimizer(m, total_steps=150), steps=150)
    assert all(math.isfinite(v) for v in losses)
    assert math.isfinite(final) and final < 0.5 * initial, (initial, final)
    assert max(losses[10:]) < 2 * initial, losses  # no blow-up on the way


def test_the_check_passes_for_adam_and_fails_for_an_optimizer_that_diverges():
    """The same check holds for the untrained rule at Adam's tuned rate (3e-2) and fails at a step size far too large
    (lr 3): it can tell the two apart."""
    initial, final, losses = _run(lambda m: LearnedOptimizer(m, network=GraphUpdateNetwork(init_lr=3e-2)), steps=150)
    assert final < 0.5 * initial and max(losses[10:]) < 2 * initial
    initial, final, losses = _run(lambda m: LearnedOptimizer(m, network=GraphUpdateNetwork(init_lr=3.0)), steps=30)
    assert not (final < 0.5 * initial and max(losses[10:]) < 2 * initial)
