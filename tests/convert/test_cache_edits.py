"""A graph shares its structure tensors with the cached layout; editing them in place must never rewire the
graphs converted after it (issue: wrong data is never used silently)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nngraph


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("field, edit", [
    ("edge_index", lambda g: g.edge_index.__setitem__((1, 0), 7)),
    ("edge_type", lambda g: g.edge_type.add_(1)),
    ("kernel_shape", lambda g: g.kernel_shape[0].fill_(3)),
])
def test_an_in_place_edit_of_a_graph_never_reaches_the_next_conversion(field, edit):
    model = _model()
    first = nngraph.to_graph(model)
    clean = {k: first[k].clone() for k in ("edge_index", "edge_type", "kernel_shape")}
    edit(first)
    assert not torch.equal(first[field], clean[field])  # the edit happened (the test can fail)
    again = nngraph.to_graph(model)
    for key, value in clean.items():
        assert torch.equal(again[key], value), f"{key} of a new graph shows the edit of {field}"
    assert nngraph.verify(model).ok


def test_an_unedited_layout_is_reused():
    model = _model()
    nngraph.to_graph(model)
    assert nngraph.build_layout(model) is nngraph.build_layout(model)
    assert not nngraph.build_layout(model).edited
