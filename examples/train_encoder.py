"""Build a small INR zoo and train the equivariant encoder to tell which digit each SIREN draws.

    python examples/train_encoder.py [--workdir DIR] [--epochs N] [--images N] [--threads N]   # or PYTHONPATH=.

The zoo is 600 sklearn digits, one SIREN 2 -> 16 -> 16 -> 1 fitted to each for at most 150 steps (fitted
from scratch in the work directory; rerun and it is reused). The encoder reads the converted graphs
(``nngraph.data.ZooDataset``) with probe features (``nngraph.AddProbeFeatures``: every neuron's value on an
8 x 8 grid of coordinates, computed from the graph's own weights) and trains with ``nngraph.train.fit``
(checkpoints, resume, early stopping) for 15 epochs: validation accuracy climbs from chance (0.10) to about
0.8 in well under a minute. Without probes the same encoder stays at chance on such SIRENs (their first layer
is a random frequency basis per INR; see docs/results.md). The tasks (``python -m
tasks.inr_classification``) do this properly: more INRs, sign-flip augmentation, baselines.

One thread by default: on a machine whose other cores are busy, more threads stall at OpenMP's barriers.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from torch import nn
from torch_geometric.loader import DataLoader

import nngraph
from nngraph.data import ZooDataset
from nngraph.train import TrainConfig, fit
from nngraph.zoo import INRZooConfig, Zoo, build_inr_zoo, coordinate_grid
from nngraph.threads import set_threads

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "nngraph-example-inr-probes"))
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--images", type=int, default=600, help="digits in the zoo, one SIREN each (a quick run: 300)")
parser.add_argument("--threads", type=int, default=None,
                    help="threads for torch and OpenMP (default: $NNGRAPH_THREADS, else 1: nngraph.threads)")
args = parser.parse_args()
set_threads(args.threads)  # nngraph.threads.pick_threads: one unless told, see the docstring
start = time.perf_counter()

zoo = os.path.join(args.workdir, "zoo")
build_inr_zoo(zoo, INRZooConfig.small(max_images=args.images, inrs_per_image=1, hidden=[16, 16], max_steps=150,
                                      split=[0.7, 0.15, 0.15]), progress=False)
first = Zoo(zoo).split("train")[0]
probes = nngraph.AddProbeFeatures(Zoo(zoo).load_model(first), coordinate_grid(8, 8))  # (64, 2) coordinates
# the probe values are computed once per graph here (a transform runs at every access)
train, val, test = (list(ZooDataset(zoo, split, progress=False, transform=probes)) for split in ("train", "val", "test"))
print(f"zoo: {len(train)} training, {len(val)} validation, {len(test)} test INRs; a graph has "
      f"{train[0].num_nodes} nodes and probe features {tuple(train[0].probe.shape)} ({time.perf_counter() - start:.0f} s)")

torch.manual_seed(0)
encoder = nngraph.NeuralGraphEncoder(10, hidden_dim=32, num_layers=2, probe_dim=64)  # one logit per digit


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


config = TrainConfig(out_dir=os.path.join(args.workdir, "run"), epochs=args.epochs, batch_size=32, lr=2e-3,
                     warmup=1, monitor="val_acc", mode="max", progress=False)
result = fit(encoder, train, val, loss_fn, eval_fn, config)
for h in result.history:
    print(f"epoch {h['epoch']}: train loss {h['train_loss']:.3f}, val loss {h['val_loss']:.3f}, "
          f"val accuracy {h['val_acc']:.2f}")
encoder.eval()  # fit leaves the best checkpoint's weights in the model
scores = eval_fn(encoder, DataLoader(test, batch_size=64))
print(f"best epoch {result.best_epoch}; test accuracy {scores['val_acc']:.2f} (chance 0.10: "
      f"{scores['val_acc'] / 0.1:.1f}x chance); "
      f"checkpoints in {config.out_dir}; {time.perf_counter() - start:.0f} s in all")
