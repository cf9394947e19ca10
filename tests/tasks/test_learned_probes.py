"""Learned probes: at their starting inputs they are the fixed probes; they train; flipped graphs get their
own model's features."""
from __future__ import annotations

import torch
from torch_geometric.data import Batch

import nngraph
from nngraph.zoo import build_model, siren_spec
from nngraph.symmetry import sign_flip
from tasks.inr_classification.learned_probes import LearnedProbePredictor, ProbeGenerator
from tasks.common.models import GraphPredictor
from tasks.common.scaling import GraphScaler


def _graphs(inputs, n=4):
    graphs = []
    for s in range(n):
        torch.manual_seed(s)
        m = build_model(siren_spec(2, [8, 8], 1, 30.0))
        g = nngraph.to_graph(m)
        g.probe = nngraph.probe_features(m, inputs)
        g.y = torch.tensor([s % 3])
        graphs.append(g)
    return graphs


def _fixed_and_learned(**learned_kw):
    """``(inputs, graphs, a fixed-probe predictor, a learned-probe predictor)`` over 6 probes of SIRENs."""
    inputs = torch.rand(6, 2) * 2 - 1
    graphs = _graphs(inputs)
    scaler = GraphScaler().fit(graphs)
    torch.manual_seed(0)
    fixed = GraphPredictor(scaler, 3, 8, 1, probe_dim=6)
    learned = LearnedProbePredictor(scaler, 3, build_model(siren_spec(2, [8, 8], 1, 30.0)), inputs, 8, 1,
                                    **learned_kw)
    return inputs, graphs, fixed, learned


def test_at_their_starting_inputs_learned_probes_are_the_fixed_probes():
    inputs, graphs, fixed, learned = _fixed_and_learned()
    learned.load_state_dict({**fixed.state_dict(), "probe_inputs": inputs})
    batch = Batch.from_data_list(graphs)
    torch.testing.assert_close(learned(batch), fixed(batch), rtol=1e-5, atol=1e-5)
    assert not any(k.startswith("_template") for k in learned.state_dict())  # the template is not saved
    # a sign-flipped batch: its own model's probes, so the flip-invariant parts agree with the stale-probe path
    flipped = sign_flip(batch, p=1.0)
    torch.testing.assert_close(learned(flipped), fixed(flipped), rtol=1e-5, atol=1e-5)


def test_the_probe_inputs_train():
    inputs = torch.rand(6, 2) * 2 - 1
    graphs = _graphs(inputs)
    torch.manual_seed(0)
    model = LearnedProbePredictor(GraphScaler().fit(graphs), 3, build_model(siren_spec(2, [8, 8], 1, 30.0)),
                                  inputs, 8, 1)
    before = model.probe_inputs.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = Batch.from_data_list(graphs)
    torch.nn.functional.cross_entropy(model(batch), batch.y).backward()
    assert model.probe_inputs.grad is not None and model.probe_inputs.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(model.probe_inputs.detach(), before)


def test_generated_probes_start_at_their_inputs_and_train_through_the_shared_generator():
    inputs, graphs, fixed, model = _fixed_and_learned(generator={"latent_dim": 4, "hidden_dim": 8, "depth": 2})
    assert "probe_inputs" not in dict(model.named_parameters())
    torch.testing.assert_close(model.current_inputs(), inputs)  # the generator's last layer starts at zero
    model.load_state_dict({**fixed.state_dict(), **{k: v for k, v in model.state_dict().items()
                                                    if k.startswith("probe_generator")}})
    batch = Batch.from_data_list(graphs)
    torch.testing.assert_close(model(batch), fixed(batch), rtol=1e-5, atol=1e-5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(batch), batch.y).backward()
    last = model.probe_generator.layers[-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    opt.step()
    assert (model.current_inputs().detach() - inputs).abs().sum() > 0


def test_the_generator_refuses_no_layers():
    import pytest

    with pytest.raises(ValueError, match="depth"):
        ProbeGenerator(torch.zeros(3, 2), depth=0)
