import pytest
import torch

import nngraph
from nngraph.gnn import NeuralGraphEncoder, NodeEdgeHead
from nngraph.testing import assert_equivariant
from nngraph.zoo import build_model, siren_spec

from .models import example


def test_shapes_scale_and_repr():
    torch.manual_seed(0)
    head = NodeEdgeHead(16)
    assert head.scale.item() == pytest.approx(0.01) and head.scale.requires_grad
    assert repr(head) == "NodeEdgeHead(16, node_out_dim=5, max_kernel_box=(3, 7, 7), init_scale=0.01)"
    g = nngraph.to_graph(*example("cnn3", torch.float32))
    h, e = NeuralGraphEncoder(1, hidden_dim=16).encode(g)
    dx, de = head(h, e, g.kernel_shape, g.edge_attr.size(0))
    assert dx.shape == g.x.shape and de.shape == g.edge_attr.shape
    # small at initialisation: the scale multiplies both outputs
    head.scale.data.fill_(1.0)
    dx1, de1 = head(h, e, g.kernel_shape, g.edge_attr.size(0))
    assert torch.allclose(dx1 * 0.01, dx) and torch.allclose(de1 * 0.01, de)


def test_edits_a_model_through_from_graph():
    """The deltas can be written back: a head trained to move every weight by +0.1 does it."""
    torch.manual_seed(0)
    model, _ = example("mlp", torch.float32)
    g = nngraph.to_graph(model)
    enc, head = NeuralGraphEncoder(1, hidden_dim=16, num_layers=2), NodeEdgeHead(16)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        h, e = enc.encode(g)
        _, de = head(h, e, g.kernel_shape, g.edge_attr.size(0))
        loss = (de - 0.1).pow(2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
    g2 = g.clone()
    g2.edge_attr = g.edge_attr + de.detach()
    edited = nngraph.from_graph(g2, model)
    assert torch.allclose(edited[0].weight, model[0].weight + 0.1, atol=0.05)


def test_k_outputs_shapes_and_repr():
    torch.manual_seed(0)
    head = NodeEdgeHead(16, num_outputs=3, head_dim=8)
    assert repr(head) == ("NodeEdgeHead(16, node_out_dim=5, max_kernel_box=(3, 7, 7), init_scale=0.01, "
                          "num_outputs=3, head_dim=8)")
    g = nngraph.to_graph(*example("cnn3", torch.float32))
    h, e = NeuralGraphEncoder(1, hidden_dim=16).encode(g)
    dx, de = head(h, e, g.kernel_shape, g.edge_attr.size(0))
    assert dx.shape == (g.num_nodes, 3 * 5) and de.shape == (g.edge_attr.size(0), 3)
    members = dx.view(g.num_nodes, 3, 5)  # (N, k, 5): delta j of every node
    assert not torch.allclose(members[:, 0], members[:, 1]) and not torch.allclose(de[:, 0], de[:, 2])
    with pytest.raises(ValueError, match="num_outputs"):
        NodeEdgeHead(16, num_outputs=0)
    with pytest.raises(ValueError, match="head_dim"):
        NodeEdgeHead(16, head_dim=0)


def test_one_output_is_the_single_output_head():
    """``num_outputs=1`` keeps the parameters (names, shapes, initial values) and the outputs."""
    torch.manual_seed(0)
    default = NodeEdgeHead(16)
    torch.manual_seed(0)
    explicit = NodeEdgeHead(16, num_outputs=1, head_dim=16)
    a, b = default.state_dict(), explicit.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert explicit.edge_out.weight.shape == (147, 16) and explicit.edge_out.bias.shape == (147,)


@pytest.mark.parametrize("arch", ["siren", "cnn3"])
def test_k_output_head_is_equivariant_float64(arch):
    """Relabelling the hidden neurons of a real SIREN (and a CNN, mixed kernels) permutes all k deltas."""
    if arch == "siren":
        model = build_model(siren_spec(2, [8, 6], 1, 30.0)).double()
        inputs = (torch.rand(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64),)
    else:
        model, inputs = example(arch)
    torch.manual_seed(1)
    encoder = NeuralGraphEncoder(1, hidden_dim=16, num_layers=2).double()
    head = NodeEdgeHead(16, num_outputs=4, head_dim=8, init_scale=1.0).double()
    errors = assert_equivariant(encoder, model, inputs, generator=torch.Generator().manual_seed(0), head=head)
    assert set(errors) == {"node", "edge", "head_node", "head_edge"} and max(errors.values()) < 1e-10
