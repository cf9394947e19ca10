"""Train a CNN on the digits with a learned optimizer that reads the CNN as a neural graph, in a plain PyTorch loop.

    python examples/learned_optimizer.py [--checkpoint FILE] [--steps N] [--threads N]

``nngraph.optim.LearnedOptimizer(model)`` is a ``torch.optim.Optimizer``: every ``step()`` it places the weights,
gradients and momenta (normalised per tensor) on the model's neural graph and an equivariant network gives every
weight its step. Without ``--checkpoint`` it loads the meta-trained network shipped with nngraph
(``nngraph/optim/checkpoints/graph.safetensors``, from ``python -m tasks.learned_optimizer``); a checkpoint file is
read with safetensors or ``torch.load(weights_only=True)``. The same CNN from the same start is trained with Adam at
the learning rate tuned on the meta-training distribution (3e-2) for comparison, and the optimizer's state is saved
and loaded mid-run as any optimizer's is. Last, an untrained update network (``GraphUpdateNetwork(init_lr=1e-2)``)
takes Adam's steps exactly: the start meta-training modulates.

One thread by default: on a machine whose other cores are busy, more threads stall at OpenMP's barriers.
"""
from __future__ import annotations

import argparse
import io
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from nngraph.optim import GraphUpdateNetwork, LearnedOptimizer
from nngraph.threads import set_threads

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--checkpoint", default=None, help="a learned optimizer's file (default: the shipped one)")
parser.add_argument("--steps", type=int, default=150, help="training steps (default: 150)")
parser.add_argument("--threads", type=int, default=None,
                    help="threads for torch and OpenMP (default: $NNGRAPH_THREADS, else 1: nngraph.threads)")
args = parser.parse_args()
set_threads(args.threads)  # nngraph.threads.pick_threads: one unless told, see the docstring

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16  # (1797, 1, 8, 8)
labels = torch.tensor(digits.target)
order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
train_idx, test_idx = order[:1400], order[1400:]


def make_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, save_at: int | None = None):
    """A plain loop; at ``save_at`` the optimizer's state dict goes through bytes and back (as a checkpoint would)."""
    generator = torch.Generator().manual_seed(1)
    seconds = 0.0
    for step in range(steps):
        batch = train_idx[torch.randint(len(train_idx), (64,), generator=generator)]
        opt.zero_grad()
        F.cross_entropy(model(images[batch]), labels[batch]).backward()
        start = time.perf_counter()
        opt.step()
        seconds += time.perf_counter() - start
        if step == save_at:
            buffer = io.BytesIO()
            torch.save(opt.state_dict(), buffer)
            buffer.seek(0)
            opt.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        loss = float(F.cross_entropy(model(images[train_idx]), labels[train_idx]))
        accuracy = float((model(images[test_idx]).argmax(1) == labels[test_idx]).float().mean())
    return loss, accuracy, 1e3 * seconds / steps


cnn = make_cnn()
with torch.no_grad():
    start_loss = float(F.cross_entropy(cnn(images[train_idx]), labels[train_idx]))
opt = LearnedOptimizer(cnn, args.checkpoint, total_steps=args.steps)  # None: the shipped meta-trained network
print(f"optimizer: {opt!r}")
learned = train(cnn, opt, args.steps, save_at=args.steps // 2)
adam_cnn = make_cnn()
adam = train(adam_cnn, torch.optim.Adam(adam_cnn.parameters(), lr=3e-2), args.steps)
print(f"training loss at the start: {start_loss:.4f}")
for name, (loss, accuracy, ms) in (("learned optimizer", learned), ("adam (lr 3e-2)", adam)):
    print(f"{name}: training loss {loss:.4f}, test accuracy {accuracy:.3f}, {ms:.2f} ms per step")

untrained_cnn, adam_cnn = make_cnn(), make_cnn()
train(untrained_cnn, LearnedOptimizer(untrained_cnn, network=GraphUpdateNetwork(init_lr=1e-2)), 20)
train(adam_cnn, torch.optim.Adam(adam_cnn.parameters(), lr=1e-2), 20)
gap = max(float((p - q).detach().abs().max()) for p, q in zip(untrained_cnn.parameters(), adam_cnn.parameters()))
print(f"untrained network vs adam (lr 1e-2), largest weight difference after 20 steps: {gap:.1e}")

try:
    LearnedOptimizer(cnn, params=[nn.Parameter(torch.zeros(3))], total_steps=args.steps)
except ValueError as err:
    print(f"a parameter of another model: {err}")
