"""The block-by-block forward equals the in-memory one (float64), blocked or plain graphs, cached or rebuilt."""
import pytest
import torch
from torch import nn

import nngraph
from nngraph.blocks import materialize
from nngraph.convert import build_layout
from nngraph.gnn import NeuralGraphEncoder, stream_encode, stream_forward


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 1)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        h = torch.relu(self.norm(self.conv(x)))
        h = h + self.conv2(h)
        return self.head(h.mean((2, 3)))


MODELS = {
    "mlp": (lambda: nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)),
            lambda: (torch.randn(2, 5),)),
    "cnn": (_Net, lambda: (torch.randn(2, 3, 8, 8),)),
    "transformer": (lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
                    lambda: (torch.randn(2, 4, 8),)),
}


def _graph(name, compact):
    torch.manual_seed(0)
    make, inputs = MODELS[name]
    model = make().eval()
    layout = build_layout(model, inputs())
    return _to64(layout.to_graph(model, compact=compact))


def _to64(g):
    g.x, g.edge_attr = g.x.double(), g.edge_attr.double()
    for k in ("act_args", "conv_args", "pool_args", "norm_eps"):
        g[k] = g[k].double()
    return g


def _encoder(aggregators=("mean", "max", "std")):
    torch.manual_seed(1)
    return NeuralGraphEncoder(7, hidden_dim=12, num_layers=3, aggregators=aggregators).double().eval()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("cache_bytes", [0, 1 << 30])
@pytest.mark.parametrize("max_edges", [7, 40, 1 << 20])  # one grid row per chunk, several, whole blocks
def test_stream_forward_equals_the_in_memory_forward(name, compact, cache_bytes, max_edges):
    graph = _graph(name, compact)
    encoder = _encoder()
    expected = encoder(materialize(graph))  # (1, 7)
    got = stream_forward(encoder, graph, max_edges=max_edges, cache_bytes=cache_bytes)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    h_expected = encoder.encode(materialize(graph))[0]
    torch.testing.assert_close(stream_encode(encoder, graph, max_edges=5, cache_bytes=cache_bytes), h_expected,
                               rtol=1e-10, atol=1e-10)


def test_every_aggregator_streams():
    graph = _graph("cnn", True)
    encoder = _encoder(("min", "max", "mean", "std"))
    torch.testing.assert_close(stream_forward(encoder, graph, max_edges=3), encoder(materialize(graph)),
                               rtol=1e-10, atol=1e-10)


def test_the_encoder_reads_a_blocked_graph_in_eval_mode_only():
    graph = _graph("mlp", True)
    encoder = _encoder()
    torch.testing.assert_close(encoder(graph), encoder(materialize(graph)), rtol=1e-10, atol=1e-10)
    encoder.train()
    with pytest.raises(ValueError, match="without gradients"):
        encoder(graph)
    with pytest.raises(ValueError, match="blocked"):
        encoder.encode(graph)


def test_stream_forward_is_invariant_to_hidden_permutations():
    make, inputs = MODELS["mlp"]
    torch.manual_seed(3)
    model = make().double().eval()
    x = inputs()[0].double()
    layout = build_layout(model, (x,))
    perm = layout.random_node_permutation(torch.Generator().manual_seed(0))
    assert not torch.equal(perm, torch.arange(layout.num_nodes))
    graph = layout.to_graph(model, compact=True)
    moved = layout.permute_graph(graph, perm)
    back = layout.from_graph(moved, model)
    torch.testing.assert_close(back(x), model(x), rtol=1e-12, atol=1e-12)  # the permutation is a symmetry
    encoder = _encoder()
    torch.testing.assert_close(stream_forward(encoder, layout.to_graph(back, compact=True), max_edges=4),
                               stream_forward(encoder, graph, max_edges=4), rtol=1e-10, atol=1e-10)


def test_non_finite_weights_are_refused_in_one_line():
    graph = _graph("mlp", True)
    graph.edge_attr[5, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        stream_forward(_encoder(), graph)
