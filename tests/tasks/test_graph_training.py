"""The shared graph-predictor training: a test split may hold kernels training never saw."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nngraph
from tasks.common.graph_training import predict_graphs, train_graph_predictor
from tasks.common.features import max_kernel_shape
from tasks.common.scaling import GraphScaler


def _graphs(model, x, n, seed):
    out = []
    for i in range(n):
        torch.manual_seed(seed + i)
        for p in model.parameters():
            nn.init.normal_(p, std=0.3)
        g = nngraph.to_graph(model, x)
        g.y = torch.tensor([0.1 * i])
        out.append(g)
    return out


def test_a_held_out_family_with_larger_kernels_is_predicted(tmp_path):
    cnn3 = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))
    head8 = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 64, 1))  # 8x8 maps
    x = torch.randn(2, 1, 8, 8)
    train, val, test = _graphs(cnn3, x, 6, 0), _graphs(cnn3, x, 2, 10), _graphs(head8, x, 2, 20)
    assert max_kernel_shape(test) == (1, 8, 8) and max_kernel_shape(train + val) == (1, 3, 3)
    scaler = GraphScaler().fit(train)
    common = dict(out_dim=1, hidden_dim=8, num_layers=1, epochs=1, batch_size=4, patience=None, progress=False)
    model, _ = train_graph_predictor(train, val, "regression", str(tmp_path / "a"), scaler, **common)
    with pytest.raises(ValueError, match="max_kernel_box"):  # the failure the kernel_box argument prevents
        predict_graphs(model, test, "regression")
    model, _ = train_graph_predictor(train, val, "regression", str(tmp_path / "b"), scaler,
                                     kernel_box=max_kernel_shape(train + val + test), **common)
    assert predict_graphs(model, test, "regression").shape == (2,)
