"""nngraph.batched_probe_features: probe features read from batched graph features, against a loop of
nngraph.probe_features over the real modules (the slow, obvious reference), and differentiable."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import nngraph
from nngraph.zoo import build_model, siren_spec


def _copies(make, n: int = 3):
    models = []
    for s in range(n):
        torch.manual_seed(s)
        models.append(make().double().eval())
    return models


def _cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))


class _Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(3, 5, num_layers=2, batch_first=True)  # (P, T, F)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y[:, -1])


CASES = {
    "siren": (lambda: build_model(siren_spec(2, [8, 8], 1, 30.0)), lambda g: torch.rand(6, 2, generator=g) * 2 - 1),
    "cnn_batchnorm": (_cnn, lambda g: torch.randn(4, 1, 6, 6, generator=g)),
    "gru": (lambda: _Recurrent(nn.GRU), lambda g: torch.randn(4, 5, 3, generator=g)),
    "lstm": (lambda: _Recurrent(nn.LSTM), lambda g: torch.randn(4, 5, 3, generator=g)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_probe_features_equal_the_loop_over_modules(name):
    make, draw = CASES[name]
    models = _copies(make)
    inputs = draw(torch.Generator().manual_seed(0)).double()
    for m in models[1:]:  # batch norm statistics that differ per model
        for buf in m.buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    batch = Batch.from_data_list([nngraph.to_graph(m, (inputs,)) for m in models])
    fast = nngraph.batched_probe_features(batch, models[0], inputs)
    slow = torch.cat([nngraph.probe_features(m, inputs) for m in models])  # (B N, P)
    assert fast.shape == slow.shape and slow.abs().sum() > 0
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)


def test_gradients_reach_the_probe_inputs_and_the_graph_features():
    models = _copies(lambda: build_model(siren_spec(2, [8, 8], 1, 30.0)))
    batch = Batch.from_data_list([nngraph.to_graph(m) for m in models])
    inputs = (torch.rand(5, 2, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    edge_attr = batch.edge_attr.clone().requires_grad_(True)
    out = nngraph.batched_probe_features(batch, models[0], inputs, edge_attr=edge_attr)
    out.square().sum().backward()
    assert inputs.grad.abs().sum() > 0 and edge_attr.grad.abs().sum() > 0
    # gradient check in float64 on the inputs (the learned-probe path)
    small = inputs.detach()[:2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: nngraph.batched_probe_features(batch, models[0], p), (small,))


def test_features_follow_an_edit_of_the_graph():
    """Edited features (x, edge_attr given) give the probe features of the edited model, not the original's."""
    models = _copies(lambda: build_model(siren_spec(2, [8, 8], 1, 30.0)), 2)
    batch = Batch.from_data_list([nngraph.to_graph(m) for m in models])
    inputs = torch.rand(5, 2, dtype=torch.float64) * 2 - 1
    edited = batch.edge_attr * 1.1
    fast = nngraph.batched_probe_features(batch, models[0], inputs, edge_attr=edited)
    changed = batch.clone()
    changed.edge_attr = edited
    slow = torch.cat([nngraph.probe_features(nngraph.from_graph(g, m), inputs)
                      for g, m in zip(changed.to_data_list(), models)])
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(fast, nngraph.batched_probe_features(batch, models[0], inputs))


def test_a_time_first_recurrent_layer_is_refused_with_the_reason():
    class TimeFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 5)

        def forward(self, x):  # (T, P, F)
            return self.rnn(x)[0][-1]

    with pytest.raises(ValueError, match="batch_first"):
        nngraph.probe_features(TimeFirst().eval(), torch.randn(4, 7, 3))


def test_the_recording_module_is_built_once_per_module_and_mode():
    """The traced forward that records every neuron is cached: the same object on a second call, a new one for
    another template of the architecture, for the other train / eval mode and after the template changes dtype,
    and the values stay the loop's in every case."""
    from nngraph import functional

    make, draw = CASES["cnn_batchnorm"]
    models = _copies(make)
    inputs = draw(torch.Generator().manual_seed(1)).double()
    batch = Batch.from_data_list([nngraph.to_graph(m, (inputs,)) for m in models])
    slow = torch.cat([nngraph.probe_features(m, inputs) for m in models])  # (B N, P)
    functional._RECORDING_CACHE.clear()
    first = nngraph.batched_probe_features(batch, models[0], inputs)
    (entry,) = functional._RECORDING_CACHE.values()
    again = nngraph.batched_probe_features(batch, models[1], inputs)  # another template: its own entry
    nngraph.batched_probe_features(batch, models[0], inputs)
    assert len(functional._RECORDING_CACHE) == 2 and entry in functional._RECORDING_CACHE.values()
    for out in (first, again):
        torch.testing.assert_close(out, slow, rtol=1e-10, atol=1e-10)
    models[0].train()
    nngraph.batched_probe_features(batch, models[0], inputs)
    assert len(functional._RECORDING_CACHE) == 3
    models[0].eval().float()
    first_graph = batch.to_data_list()[0]
    single = nngraph.batched_probe_features(first_graph, models[0], inputs.float(), x=first_graph.x.float(),
                                            edge_attr=first_graph.edge_attr.float())
    assert len(functional._RECORDING_CACHE) == 4 and single.dtype == torch.float32
    torch.testing.assert_close(single.double(), slow[: single.shape[0]], rtol=1e-4, atol=1e-4)
