"""Edit CNNs' weights with a predicted delta and evaluate the edited CNNs, without writing a renderer.

    python examples/edit_cnn.py [--threads N]   # with nngraph installed (pip install -e .), or PYTHONPATH=.

Eight small CNNs (conv - BatchNorm - ReLU twice, global average pooling, linear) are trained briefly on
sklearn's 8x8 digits, each from its own seed: under-trained on purpose. An editor (the equivariant encoder
and ``nngraph.NodeEdgeHead``) reads their graphs and predicts a delta for every weight and bias. The
edited parameters come out of the graph features with ``nngraph.gather_params`` and the CNN itself runs
on them with ``nngraph.batched_forward`` (``torch.func.functional_call``, vectorised over the CNNs), so
the classification loss of the edited CNNs trains the editor end to end. Six CNNs train the editor, two
are held out; test accuracy before and after the edit is printed for both.

One thread by default: on a machine whose other cores are busy, more threads stall at OpenMP's barriers
(this script took 203 s with two threads and the other core busy, against about 10 s with one).
"""
from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch_geometric.data import Batch

import nngraph
from nngraph.schema import BIAS, EdgeType, NodeType
from nngraph.threads import set_threads

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--threads", type=int, default=None,
                    help="threads for torch and OpenMP (default: $NNGRAPH_THREADS, else 1: nngraph.threads)")
args = parser.parse_args()
set_threads(args.threads)  # nngraph.threads.pick_threads: one unless told, see the docstring

torch.manual_seed(0)
digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16  # (1797, 1, 8, 8)
labels = torch.tensor(digits.target)
order = torch.randperm(len(labels))
train_idx, test_idx = order[:1200], order[1200:]


def make_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def train_briefly(seed: int, steps: int = 40) -> nn.Module:
    torch.manual_seed(seed)
    cnn = make_cnn()
    opt = torch.optim.Adam(cnn.parameters(), lr=1e-2)
    for _ in range(steps):
        batch = train_idx[torch.randint(len(train_idx), (64,))]
        loss = nn.functional.cross_entropy(cnn(images[batch]), labels[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cnn.eval()  # BatchNorm on its running statistics from here on


cnns = [train_briefly(seed) for seed in range(8)]
template = cnns[0]
graphs = [nngraph.to_graph(cnn, images[:2]) for cnn in cnns]
train_batch, held_batch = Batch.from_data_list(graphs[:6]), Batch.from_data_list(graphs[6:])


class Editor(nn.Module):
    """Deltas for every weight-edge entry and every bias: ``(N, 5)`` and ``(W, 1)``, laid out as the batch's."""

    def __init__(self, hidden_dim: int = 32):
        super().__init__()
        self.encoder = nngraph.NeuralGraphEncoder(1, hidden_dim=hidden_dim, num_layers=2)
        self.encoder.readout.requires_grad_(False)  # per-weight outputs only
        self.head = nngraph.NodeEdgeHead(hidden_dim, init_scale=0.01)

    def forward(self, batch):
        h, e = self.encoder.encode(batch)  # (N, H), (E, H)
        dx, de = self.head(h, e, batch.kernel_shape, batch.edge_attr.size(0))  # (N, 5), (W, 1)
        node_mask = torch.zeros_like(dx)
        node_mask[:, BIAS] = (batch.node_type != int(NodeType.INPUT)).float()  # biases only, not the statistics
        weight = batch.edge_type == int(EdgeType.WEIGHT)  # (E,)
        entry_mask = torch.repeat_interleave(weight, batch.kernel_shape.prod(-1)).unsqueeze(-1)  # (W, 1)
        return dx * node_mask, de * entry_mask


def edited_logits(editor, batch, x):
    """``(B, n, 10)``: the logits of every edited CNN of ``batch`` on the images ``x``."""
    dx, de = editor(batch)
    params = nngraph.gather_params(batch, template, x=batch.x + dx, edge_attr=batch.edge_attr + de)
    return nngraph.batched_forward(template, params, x)  # {name: (B, *shape)} -> (B, n, 10)


@torch.no_grad()
def accuracy(batch, editor=None) -> list[float]:
    x, y = images[test_idx], labels[test_idx]
    if editor is None:
        logits = nngraph.batched_forward(template, nngraph.gather_params(batch, template), x)  # (B, n, 10)
    else:
        logits = edited_logits(editor, batch, x)
    return [round(float((row.argmax(-1) == y).float().mean()), 3) for row in logits]


editor = Editor()
opt = torch.optim.AdamW(editor.parameters(), lr=3e-3)
before = accuracy(train_batch), accuracy(held_batch)
for step in range(120):
    batch = train_idx[torch.randint(len(train_idx), (128,))]
    logits = edited_logits(editor, train_batch, images[batch])  # (6, 128, 10)
    loss = nn.functional.cross_entropy(logits.reshape(-1, 10), labels[batch].repeat(6))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 50 == 0:
        print(f"step {step}: loss of the edited CNNs {float(loss.detach()):.3f}")
after = accuracy(train_batch, editor), accuracy(held_batch, editor)
print("test accuracy of the 6 CNNs the editor trained on:", before[0], "->", after[0])
print("test accuracy of the 2 held-out CNNs:             ", before[1], "->", after[1])

# the edited weights as a real module: from_graph of the edited graph computes the same logits
with torch.no_grad():
    dx, de = editor(held_batch)
    edited = held_batch.clone()
    edited.x, edited.edge_attr = held_batch.x + dx, held_batch.edge_attr + de
    module = nngraph.from_graph(edited.to_data_list()[0], template).eval()
    same = torch.allclose(module(images[test_idx]), edited_logits(editor, held_batch, images[test_idx])[0], atol=1e-5)
print("from_graph of the edited graph gives the same logits:", same)
