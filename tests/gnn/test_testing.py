"""The symmetry helpers must catch what they are meant to catch."""
import pytest
import torch
from torch import nn

from nngraph.gnn import NeuralGraphEncoder
from nngraph.testing import assert_equivariant, assert_invariant, edge_permutation, permuted_graphs

from .handmade import mlp_graph, permute_mlp
from .models import example


class NodeOrderEncoder(nn.Module):
    """Deliberately not invariant: weights each node by its position."""

    def __init__(self):
        super().__init__()
        self.enc = NeuralGraphEncoder(2, hidden_dim=8, num_layers=1).double()

    def forward(self, g):
        h, _ = self.enc.encode(g)
        pos = torch.arange(h.size(0), dtype=h.dtype).unsqueeze(-1)
        return (h * pos).sum(0, keepdim=True)

    def encode(self, g):
        h, e = self.enc.encode(g)
        return h + torch.arange(h.size(0), dtype=h.dtype).unsqueeze(-1), e


def test_catches_a_non_invariant_encoder():
    model, inputs = example("mlp")
    with pytest.raises(AssertionError, match="not invariant"):
        assert_invariant(NodeOrderEncoder(), model, inputs, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match="not equivariant on node"):
        assert_equivariant(NodeOrderEncoder(), model, inputs, generator=torch.Generator().manual_seed(0))


def test_catches_a_permutation_that_changes_the_function():
    model, inputs = example("mlp")

    def bad_permute(module, generator=None, example_inputs=None):
        m = permute_mlp(module, generator)[0]
        with torch.no_grad():
            m[0].weight[0] += 1.0
        return m, torch.arange(17)

    with pytest.raises(AssertionError, match="changed the model's function"):
        permuted_graphs(model, inputs, permute=bad_permute)


def test_catches_a_wrong_node_perm():
    model, inputs = example("mlp")

    def wrong_perm(module, generator=None, example_inputs=None):
        m, perm = permute_mlp(module, torch.Generator().manual_seed(0))
        return m, torch.arange(perm.numel())  # claims nothing moved

    with pytest.raises(AssertionError, match="not the relabelled"):
        permuted_graphs(model, inputs, permute=wrong_perm)


def test_handmade_graphs_agree_with_the_converter():
    """Works with injected permute/to_graph, and the hand-built MLP graph is the converter's graph."""
    import nngraph

    model, inputs = example("mlp")
    g_hand, g_conv = mlp_graph(model), nngraph.to_graph(model)
    for key in ("x", "node_type", "node_kind", "io_position", "layer", "act", "edge_type", "kernel_shape"):
        assert torch.equal(g_hand[key], g_conv[key]), key
    perm = edge_permutation(g_hand, g_conv, torch.arange(g_hand.num_nodes))
    assert torch.equal(g_conv.edge_attr[perm], g_hand.edge_attr)
    enc = NeuralGraphEncoder(2, hidden_dim=8, num_layers=2).double()
    err = assert_invariant(enc, model, inputs, permute=permute_mlp, to_graph=lambda m, x: mlp_graph(m))
    assert err < 1e-10
