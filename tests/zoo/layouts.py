"""Small folders written in the published layouts, for the import tests.

``write_dwsnets``: DWSNets' MNIST INRs (``AvivNavon/DWSNets``: ``nn/inr.py`` ``INR`` with ``seq`` of
``Siren`` layers and a final ``nn.Linear``, ``forward = seq(x) + 0.5``; one ``torch.save``\\d state dict
per INR at ``mnist_png_<training|testing>_<label>_<n>/checkpoints/model_final.pth``, as
``experiments/mnist/generate_data_splits.py`` globs them).

``write_cnn_zoo``: the Small CNN Zoo (``google-research/dnn_predict_accuracy``): ``weights.npy``
``(rows, params)``, ``metrics.csv.gz`` (``config.*``, ``modeldir``, ``step``, ``test_accuracy``, ...),
``layout.csv`` (``varname, start_idx, end_idx, shape`` of TensorFlow variables), as NFN's
``experiments/data_utils.py`` reads them.
"""
from __future__ import annotations

import csv
import gzip
import math
import os

import numpy as np
import torch
from torch import nn


class _DWSSiren(nn.Module):
    """DWSNets' ``Siren`` layer: ``sin(w0 * (W x + b))`` with parameters ``weight`` / ``bias``."""

    def __init__(self, dim_in: int, dim_out: int, w0: float, first: bool, g: torch.Generator):
        super().__init__()
        std = 1 / dim_in if first else math.sqrt(6.0 / dim_in) / w0
        self.w0 = w0
        self.weight = nn.Parameter((torch.rand(dim_out, dim_in, generator=g) * 2 - 1) * std)
        self.bias = nn.Parameter(torch.rand(dim_out, generator=g) * 0.2 - 0.1)

    def forward(self, x):
        return torch.sin(self.w0 * nn.functional.linear(x, self.weight, self.bias))


class DWSNetsINR(nn.Module):
    """DWSNets' ``INR`` (``in_dim=2, n_layers=3``): ``seq = [Siren, Siren, Linear]``, output ``+ 0.5``."""

    def __init__(self, hidden: int = 8, w0: float = 30.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        last = nn.Linear(hidden, 1)
        with torch.no_grad():
            last.weight.copy_(torch.randn(1, hidden, generator=g) * 0.3)
            last.bias.copy_(torch.randn(1, generator=g) * 0.1)
        self.seq = nn.Sequential(_DWSSiren(2, hidden, w0, True, g), _DWSSiren(hidden, hidden, w0, False, g), last)

    def forward(self, x):
        return self.seq(x) + 0.5


def make_coordinates(shape=(28, 28), coord_range=(-1, 1)) -> torch.Tensor:
    """DWSNets' ``experiments/utils.py:make_coordinates`` (one batch): ``np.meshgrid`` in ``xy`` order."""
    x = np.linspace(coord_range[0], coord_range[1], shape[0])
    y = np.linspace(coord_range[0], coord_range[1], shape[1])
    x, y = np.meshgrid(x, y)
    return torch.from_numpy(np.stack([x.flatten(), y.flatten()]).T).float()


def write_dwsnets(root: str, per_split: dict[str, int], hidden: int = 8, seed: int = 0) -> list[tuple[str, int]]:
    """Write ``per_split[split]`` INRs (``split`` in ``training`` / ``testing``), labels cycling over 0..9;
    returns ``(path, label)`` of every file."""
    out, n = [], 0
    for split, count in per_split.items():
        for i in range(count):
            label = i % 10
            folder = os.path.join(root, f"mnist_png_{split}_{label}_{n}", "checkpoints")
            os.makedirs(folder)
            path = os.path.join(folder, "model_final.pth")
            torch.save(DWSNetsINR(hidden, seed=seed + n).state_dict(), path)
            out.append((path, label))
            n += 1
    return out


#: Variables of the Small CNN Zoo's network in TensorFlow's layout.
def cnn_zoo_variables(channels=(4, 4, 4), k: int = 3, classes: int = 10) -> list[tuple[str, tuple[int, ...]]]:
    names, c_in = [], 1
    for j, c in enumerate(channels):
        scope = "sequential/conv2d" + (f"_{j}" if j else "")
        names += [(f"{scope}/kernel:0", (k, k, c_in, c)), (f"{scope}/bias:0", (c,))]
        c_in = c
    return names + [("sequential/dense/kernel:0", (c_in, classes)), ("sequential/dense/bias:0", (classes,))]


def write_cnn_zoo(root: str, runs: int, steps=(0, 86), channels=(4, 4, 4), seed: int = 0,
                  dataset: str = "mnist") -> np.ndarray:
    """Write ``runs x len(steps)`` checkpoints; returns the weights matrix."""
    os.makedirs(root, exist_ok=True)
    variables = cnn_zoo_variables(channels)
    rng = np.random.default_rng(seed)
    sizes = [int(np.prod(s)) for _, s in variables]
    weights = rng.normal(0, 0.3, (runs * len(steps), sum(sizes))).astype(np.float32)
    np.save(os.path.join(root, "weights.npy"), weights)
    with open(os.path.join(root, "layout.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["varname", "start_idx", "end_idx", "size", "shape"])
        start = 0
        for (name, shape), size in zip(variables, sizes):
            w.writerow([name, start, start + size, size, str(shape)])
            start += size
    columns = ["config.activation", "config.dataset", "config.learning_rate", "config.optimizer", "modeldir", "step",
               "test_accuracy", "test_loss", "train_accuracy", "train_loss"]
    with gzip.open(os.path.join(root, "metrics.csv.gz"), "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in range(runs):
            for s in steps:
                acc = float(rng.uniform(0.1, 0.99))
                w.writerow(["relu" if r % 2 else "tanh", dataset, 10 ** rng.uniform(-4, -1), "adam",
                            f"/tmp/run-{r}", s, acc, 1 - acc, acc, 1 - acc])
    return weights
