import pytest
import torch

import nngraph
from nngraph.gnn import NeuralGraphEncoder, probe_features
from nngraph.testing import assert_equivariant, assert_invariant

from .models import example, siren


def test_values_follow_the_graph_node_order():
    torch.manual_seed(0)
    model = siren(width=8).double()
    g = nngraph.to_graph(model)
    inputs = torch.randn(5, 2, dtype=torch.float64)
    p = probe_features(model, g, inputs)
    assert p.shape == (g.num_nodes, 5)
    lin1, act, lin2 = model[0], model[1], model[2]
    h1 = act(lin1(inputs))  # (5, 8)
    h2 = act(lin2(h1))
    assert torch.allclose(p[:2], inputs.t())
    assert torch.allclose(p[2:10], h1.t()) and torch.allclose(p[10:18], h2.t())
    assert torch.allclose(p[18:], model(inputs).t())
    # the converter lists layer-1 neurons in neuron order (what the probe assumes)
    assert torch.equal(g.x[2:10, 0], lin1.bias.detach()) and torch.equal(g.x[10:18, 0], lin2.bias.detach())


def test_probe_encoder_is_invariant_and_uses_the_probe():
    model, _ = example("mlp")
    inputs = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    enc = NeuralGraphEncoder(2, hidden_dim=16, num_layers=2, probe_dim=4).double()
    gen = torch.Generator().manual_seed(1)
    assert assert_invariant(enc, model, probe_inputs=inputs, generator=gen) < 1e-10
    assert max(assert_equivariant(enc, model, probe_inputs=inputs, generator=gen).values()) < 1e-10
    g = nngraph.to_graph(model)
    g.probe = probe_features(model, g, inputs)
    y = enc(g)
    g.probe = probe_features(model, g, inputs + 1.0)
    assert (enc(g) - y).abs().max() > 1e-6
    del g.probe
    with pytest.raises(ValueError, match="probe_features"):
        enc(g)


def test_unsupported_models_are_refused():
    model, inputs = example("cnn3")
    g = nngraph.to_graph(model, inputs)
    with pytest.raises(NotImplementedError):
        probe_features(model, g, inputs[0])
