"""Build a small INR zoo and train the equivariant encoder to tell which digit each SIREN draws.

    python examples/train_encoder.py [--workdir DIR]   # with nngraph installed (pip install -e .), or PYTHONPATH=.

The zoo is 100 sklearn digits, one SIREN 2 -> 16 -> 16 -> 1 fitted to each for at most 60 steps (fitted
from scratch in the work directory; rerun and it is reused). The encoder reads the converted graphs
(``nngraph.data.ZooDataset``) and trains with ``nngraph.train.fit`` (checkpoints, resume, early stopping)
for a few epochs: far too few to be good, enough to see the loss fall. The tasks (``python -m
tasks.inr_classification``) do this properly: more INRs, probe features, sign-flip augmentation, baselines.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torch import nn

import nngraph
from nngraph.data import ZooDataset
from nngraph.train import TrainConfig, fit
from nngraph.zoo import INRZooConfig, build_inr_zoo

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "nngraph-example-encoder"))
parser.add_argument("--epochs", type=int, default=6)
args = parser.parse_args()

zoo = os.path.join(args.workdir, "zoo")
build_inr_zoo(zoo, INRZooConfig.small(max_images=100, inrs_per_image=1, hidden=[16, 16], max_steps=60,
                                      split=[0.7, 0.15, 0.15]), progress=False)
train, val = (ZooDataset(zoo, split, in_memory=True, progress=False) for split in ("train", "val"))
print(f"zoo: {len(train)} training and {len(val)} validation INRs; a graph has {train[0].num_nodes} nodes")

torch.manual_seed(0)
encoder = nngraph.NeuralGraphEncoder(10, hidden_dim=32, num_layers=2)  # one logit per digit


def loss_fn(model, batch):
    return nn.functional.cross_entropy(model(batch), batch.y.long())  # (B, 10) logits


@torch.no_grad()
def eval_fn(model, loader):
    correct = total = loss = 0.0
    for batch in loader:
        logits = model(batch)  # (B, 10)
        loss += float(nn.functional.cross_entropy(logits, batch.y.long(), reduction="sum"))
        correct += int((logits.argmax(-1) == batch.y.long()).sum())
        total += batch.num_graphs
    return {"val_loss": loss / total, "val_acc": correct / total}


config = TrainConfig(out_dir=os.path.join(args.workdir, "run"), epochs=args.epochs, batch_size=16, lr=2e-3,
                     monitor="val_acc", mode="max", progress=False)
result = fit(encoder, train, val, loss_fn, eval_fn, config)
for h in result.history:
    print(f"epoch {h['epoch']}: train loss {h['train_loss']:.3f}, val loss {h['val_loss']:.3f}, "
          f"val accuracy {h['val_acc']:.2f}")
print(f"best epoch {result.best_epoch}; checkpoints in {config.out_dir}")
