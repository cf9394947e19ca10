"""NeuralGraphEncoder(x, edge_index, edge_attr, batch, **fields): the BasicGNN-style call gives the batch call's output."""
import pytest
import torch
from torch import nn

import nngraph
from nngraph import NeuralGraphEncoder

_FIELDS = ("node_type", "node_kind", "layer", "act", "io_position", "edge_type", "kernel_shape", "probe",
           "act_args", "conv_args", "pool", "pool_args")


def _batch():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    cnn = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    return nngraph.batch_graphs([nngraph.to_graph(mlp), nngraph.to_graph(cnn, torch.randn(1, 1, 6, 6))])


def _tensors(b):
    return {k: getattr(b, k) for k in _FIELDS if getattr(b, k, None) is not None}


def test_tensor_call_equals_batch_call():
    b = _batch()
    enc = NeuralGraphEncoder(4, hidden_dim=8, num_layers=2).eval()
    expected = enc(b)
    got = enc(b.x, b.edge_index, b.edge_attr, b.batch, **_tensors(b))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    h, e = enc.encode(b.x, b.edge_index, b.edge_attr, b.batch, **_tensors(b))
    h0, e0 = enc.encode(b)
    assert torch.equal(h, h0) and torch.equal(e, e0)


def test_one_graph_needs_no_batch_vector():
    g = nngraph.to_graph(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)))
    enc = NeuralGraphEncoder(2, hidden_dim=8, num_layers=1).eval()
    torch.testing.assert_close(enc(g.x, g.edge_index, g.edge_attr, **_tensors(g)), enc(g))


def test_summary_runs_on_the_tensor_call():
    from torch_geometric.nn import summary

    b = _batch()
    enc = NeuralGraphEncoder(4, hidden_dim=8, num_layers=2)
    text = summary(enc, b.x, b.edge_index, b.edge_attr, b.batch, **_tensors(b))
    assert "NeuralGraphConv" in text and "NeuralGraphEncoder" in text


def test_wrong_calls_say_what_to_give():
    b = _batch()
    enc = NeuralGraphEncoder(4, hidden_dim=8, num_layers=1)
    with pytest.raises(TypeError, match="edge_index and edge_attr"):
        enc(b.x)
    with pytest.raises(TypeError, match="not both"):
        enc(b, b.edge_index)
    with pytest.raises(ValueError, match="node_kind"):
        fields = _tensors(b)
        del fields["node_kind"]
        enc(b.x, b.edge_index, b.edge_attr, b.batch, **fields)
