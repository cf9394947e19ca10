"""The encoder's probe path (the probe values come from nngraph.probe_features, tested in tests/convert)."""
import pytest
import torch

import nngraph
from nngraph.gnn import NeuralGraphEncoder
from nngraph.testing import assert_equivariant, assert_invariant

from .models import example, siren


def test_probe_values_are_the_neurons_activations():
    """What the encoder is fed: inputs, then each layer's activations, in node order."""
    torch.manual_seed(0)
    model = siren(width=8).double()
    inputs = torch.randn(5, 2, dtype=torch.float64)
    g = nngraph.to_graph(model)
    p = nngraph.probe_features(model, inputs)
    assert p.shape == (g.num_nodes, 5)
    h1 = model[1](model[0](inputs))  # (5, 8)
    h2 = model[3](model[2](h1))
    assert torch.allclose(p[:2], inputs.t()) and torch.allclose(p[2:10], h1.t())
    assert torch.allclose(p[10:18], h2.t()) and torch.allclose(p[18:], model(inputs).t())


@pytest.mark.parametrize("arch", ["mlp", "cnn3"])
def test_probe_encoder_is_invariant_and_uses_the_probe(arch):
    model, (x,) = example(arch)
    inputs = torch.randn(4, *x.shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    enc = NeuralGraphEncoder(2, hidden_dim=16, num_layers=2, probe_dim=4).double()
    gen = torch.Generator().manual_seed(1)
    assert assert_invariant(enc, model, (x,), probe_inputs=inputs, generator=gen) < 1e-10
    assert max(assert_equivariant(enc, model, (x,), probe_inputs=inputs, generator=gen).values()) < 1e-10
    g = nngraph.to_graph(model, (x,))
    g.probe = nngraph.probe_features(model, inputs)
    y = enc(g)
    g.probe = nngraph.probe_features(model, inputs + 1.0)
    assert (enc(g) - y).abs().max() > 1e-6
    del g.probe
    with pytest.raises(ValueError, match="probe_features"):
        enc(g)
