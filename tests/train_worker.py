"""A tiny regression trained with nngraph.train.fit; run directly or under ``torchrun`` by tests/test_train.py.

Usage: ``python tests/train_worker.py OUT_DIR [EPOCHS]``; writes ``OUT_DIR/rank<r>.json`` with the final
weights and the history, so the test can compare ranks and compare against a single process.
"""
from __future__ import annotations

import json
import os
import sys

import torch
from torch import nn

from nngraph.train import TrainConfig, fit, seed_everything


def problem(n: int = 64):
    """A fixed linear regression: ``y = x @ w + noise`` as a list of ``(x, y)`` pairs."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
    return [(x[i], y[i : i + 1]) for i in range(n)]


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def eval_fn(model, loader):
    losses = [float(nn.functional.mse_loss(model(x), y, reduction="sum")) for x, y in loader]
    return {"val_loss": sum(losses) / len(loader.dataset)}


def main(out_dir: str, epochs: int = 3) -> None:
    seed_everything(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    data = problem()
    config = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=16, lr=1e-2, progress=False, patience=None)
    result = fit(model, data, data[:16], loss_fn, eval_fn, config)
    rank = int(os.environ.get("RANK", "0"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"weights": [p.detach().reshape(-1).tolist() for p in model.parameters()],
                   "history": result.history}, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
