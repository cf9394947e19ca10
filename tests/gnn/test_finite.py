"""The encoder refuses NaN / Inf features by name, unless its check is switched off."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nngraph


@pytest.mark.parametrize("field", ["x", "edge_attr"])
def test_non_finite_features_are_refused_by_name(field):
    graph = nngraph.to_graph(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    getattr(graph, field)[0, 0] = float("nan")
    encoder = nngraph.NeuralGraphEncoder(2, hidden_dim=8, num_layers=1)
    with pytest.raises(ValueError, match=f"graph.{field} holds 1 NaN or Inf"):
        encoder(graph)
    encoder.check_finite = False
    assert torch.isnan(encoder(graph)).any()  # what the check keeps from the user


def test_verify_says_when_its_permutations_moved_nothing():
    report = nngraph.verify(nn.Sequential(nn.Linear(3, 2)))  # no hidden neurons: no symmetry to test
    assert report.moved_fraction == 0.0 and "moved nothing" in str(report)
    report = nngraph.verify(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    assert report.moved_fraction > 0 and "moved nothing" not in str(report)
