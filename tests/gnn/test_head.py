import pytest
import torch

import nngraph
from nngraph.gnn import NeuralGraphEncoder, NodeEdgeHead

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
