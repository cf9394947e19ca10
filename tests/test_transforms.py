"""AddProbeFeatures: probe values computed from the graph's own weights, permuted with its neurons."""
import pytest
import torch
from torch import nn

import nngraph
from nngraph import AddProbeFeatures, GraphMismatchError
from nngraph.modules import Sine


def _siren(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), Sine(30.0), nn.Linear(8, 8), Sine(), nn.Linear(8, 1)).double()


def _coords(p=5):
    return torch.linspace(-1, 1, 2 * p, dtype=torch.float64).view(p, 2)  # (P, 2)


def test_matches_probe_features_of_the_source_model():
    model = _siren()
    g = nngraph.to_graph(model)
    out = AddProbeFeatures(_siren(seed=1), _coords())(g)
    torch.testing.assert_close(out.probe, nngraph.probe_features(model, _coords()), rtol=0, atol=1e-12)
    assert not hasattr(g, "probe")  # the input graph is left alone


def test_an_edited_graph_gets_the_probes_of_the_function_it_now_holds():
    model = _siren()
    g = nngraph.to_graph(model)
    g.edge_attr = g.edge_attr * 1.5
    edited = nngraph.from_graph(g, model)
    out = AddProbeFeatures(model, _coords())(g)
    torch.testing.assert_close(out.probe, nngraph.probe_features(edited, _coords()), rtol=0, atol=1e-12)
    assert not torch.allclose(out.probe, nngraph.probe_features(model, _coords()))


def test_probe_rows_follow_a_hidden_permutation():
    model = _siren()
    permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(3))
    t = AddProbeFeatures(model, _coords())
    a, b = t(nngraph.to_graph(model)).probe, t(nngraph.to_graph(permuted)).probe
    assert not torch.equal(perm, torch.arange(perm.numel()))
    torch.testing.assert_close(b[perm], a, rtol=0, atol=1e-12)


def test_append_and_errors():
    model = _siren()
    g = nngraph.to_graph(model)
    g.probe = torch.zeros(g.num_nodes, 2, dtype=torch.float64)
    assert AddProbeFeatures(model, _coords(3), append=True)(g).probe.shape == (g.num_nodes, 5)
    other = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    with pytest.raises(GraphMismatchError):
        AddProbeFeatures(other, _coords())(g)
    with pytest.raises(ValueError, match="dimension 0"):
        AddProbeFeatures(model, torch.tensor(1.0))
    with pytest.raises(TypeError, match="nn.Module"):
        AddProbeFeatures("siren", _coords())
