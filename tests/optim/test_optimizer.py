"""LearnedOptimizer and PerParameterMLPOptimizer as drop-in torch optimizers: they train, save, load and refuse
what they cannot do in one line."""
from __future__ import annotations

import io
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.errors import CheckpointError
from nngraph.optim import (GraphUpdateNetwork, LearnedOptimizer, PerParameterMLPOptimizer, PerParameterUpdateNetwork,
                           Segments, advance_state, entry_features, init_state, load_network, place, save_network,
                           shipped_checkpoint)

from .models import build


def _blobs(n: int = 256, seed: int = 0):
    """Three Gaussian classes in 4-D."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) + 2.0 * F.one_hot(y, 4).float()
    return x, y


def _train(model: nn.Module, opt: torch.optim.Optimizer, x, y, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def hand_set_checkpoint(tmp_path):
    """A tiny graph network written to a file: Adam's direction at step size 1e-2 (the hand-set start)."""
    torch.manual_seed(0)
    path = str(tmp_path / "lopt.pt")
    save_network(GraphUpdateNetwork(hidden_dim=8, num_layers=1, context_dim=2, output_dim=8, init_lr=1e-2), path)
    return path


def test_trains_an_mlp_in_a_plain_loop(hand_set_checkpoint):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = LearnedOptimizer(model, hand_set_checkpoint)
    losses = _train(model, opt, *_blobs(), steps=60)
    assert losses[-1] < 0.5 * losses[0], losses


def test_untrained_step_is_adam():
    """The output layer starts at zero: the untrained rule is Adam (lr 1e-3), step for step."""
    model, _ = build("mlp")
    twin, _ = build("mlp")
    x, y = _blobs()
    x = x[:, :4]
    ours = _train(model, LearnedOptimizer(model, network=GraphUpdateNetwork()), x, y % 3, 5)
    adam = _train(twin, torch.optim.Adam(twin.parameters(), lr=1e-3), x, y % 3, 5)
    assert ours == pytest.approx(adam, rel=1e-5)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_per_parameter_optimizer_trains_bare_tensors(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / "mlp.pt")
    save_network(PerParameterUpdateNetwork(init_lr=1e-2), path)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = PerParameterMLPOptimizer(list(model.parameters()), path)
    losses = _train(model, opt, *_blobs(), steps=60)
    assert losses[-1] < 0.5 * losses[0], losses


def test_parameters_without_gradient_keep_values_and_state():
    model, inputs = build("mlp")
    opt = LearnedOptimizer(model, total_steps=10)
    frozen = model[0].weight
    before = frozen.detach().clone()
    model(*inputs).sum().backward()
    frozen.grad = None
    opt.step()
    assert torch.equal(frozen, before) and float(opt.state[frozen]["step"]) == 0
    assert float(opt.state[model[2].weight]["step"]) == 1


def test_param_groups_scale_the_step():
    model, inputs = build("mlp")
    opt = LearnedOptimizer(model, params=[{"params": model[0].parameters(), "lr": 0.0},
                                          {"params": model[2].parameters()}, {"params": model[4].parameters()}],
                           total_steps=10)
    before = [p.detach().clone() for p in model.parameters()]
    model(*inputs).sum().backward()
    opt.step()
    moved = [not torch.equal(p, b) for p, b in zip(model.parameters(), before)]
    assert moved == [False, False, True, True, True, True]


def test_placement_scatters_each_parameter_to_where_to_graph_puts_it():
    model, inputs = build("cnn")
    params = list(model.parameters())
    values = torch.arange(1.0, 1 + sum(p.numel() for p in params)).unsqueeze(1)  # (P, 1): distinct, none zero
    with torch.no_grad():
        for p, v in zip(params, values.split([p.numel() for p in params])):
            p.copy_(v.view_as(p))
    graph, placement = place(model, params, inputs)
    node, edge = placement.scatter(values)  # (N, 5, 1), (W, 1)
    placed_nodes, placed_edges = node.squeeze(2) != 0, edge != 0
    assert torch.equal(node.squeeze(2)[placed_nodes], graph.x[placed_nodes])
    assert torch.equal(edge[placed_edges], graph.edge_attr[placed_edges])
    assert int(placed_nodes.sum() + placed_edges.sum()) == values.numel()  # every entry placed once
    assert torch.equal(placement.gather(node, edge), values)  # and read back from there


# ------------------------------------------------------------ saving and loading
def test_state_dict_round_trip_continues_identically():
    model, inputs = build("mlp")
    torch.manual_seed(1)
    network = GraphUpdateNetwork(hidden_dim=8, num_layers=1, context_dim=2, output_dim=8, rule="cone", progress=True)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, 0.2)
    opt = LearnedOptimizer(model, network=network, total_steps=5)  # the schedule reads the saved step counts
    target = torch.randn(8, 3)

    def step(m, o):
        o.zero_grad()
        ((m(*inputs) - target) ** 2).mean().backward()
        o.step()

    for _ in range(3):
        step(model, opt)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    copy, _ = build("mlp", seed=7)
    copy.load_state_dict(saved["model"])
    restored = LearnedOptimizer(copy, total_steps=5)  # the shipped network: the state dict brings the one in use
    restored.load_state_dict(saved["opt"])
    for _ in range(2):
        step(model, opt)
        step(copy, restored)
    for p, q in zip(model.parameters(), copy.parameters()):
        assert torch.equal(p, q)


def test_network_file_round_trip(tmp_path):
    torch.manual_seed(0)
    network = GraphUpdateNetwork(hidden_dim=8, num_layers=1, context_dim=2, output_dim=8)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, 0.2)
    save_network(network, str(tmp_path / "n.pt"))
    loaded = load_network(str(tmp_path / "n.pt"))
    assert repr(loaded) == repr(network)
    for (n, p), q in zip(network.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_network_file_round_trip_in_both_formats(tmp_path, suffix):
    torch.manual_seed(0)
    network = PerParameterUpdateNetwork(output_dim=8, max_log_scale=0.7).double()
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, 0.2)
    path = str(tmp_path / f"n{suffix}")
    save_network(network, path)
    loaded = load_network(path, "mlp")
    assert loaded.config == network.config and repr(loaded) == repr(network)
    for (n, p), q in zip(network.state_dict().items(), loaded.state_dict().values()):
        assert q.dtype == torch.float64 and torch.equal(p, q), n


def test_a_broken_safetensors_file_is_one_line(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError) as err:
        load_network(str(path))
    assert "not a learned-optimizer safetensors file" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kind, cls", [("graph", LearnedOptimizer), ("mlp", PerParameterMLPOptimizer)])
def test_no_checkpoint_loads_the_shipped_network(kind, cls):
    path = shipped_checkpoint(kind)
    assert path.endswith(".safetensors") and os.path.isfile(path)
    assert os.path.getsize(path) < 2_000_000  # small enough to ship in the package
    shipped = load_network(path, kind)
    untrained = type(shipped)(**shipped.config)
    # meta-trained: not the Adam-like start (the last layer left zero)
    assert shipped.output.mlp[-1].weight.abs().max() > 0
    opt = cls(build("mlp")[0], total_steps=100)  # the run's length, for a network that follows a schedule
    for (n, p), q in zip(shipped.state_dict().items(), opt.network.state_dict().values()):
        assert torch.equal(p, q), n
    assert not torch.equal(untrained.output.mlp[-1].weight, opt.network.output.mlp[-1].weight)
    with pytest.raises(KeyError, match="Could not resolve"):
        shipped_checkpoint("rnn")


def test_checkpoints_are_read_with_weights_only(tmp_path, monkeypatch, hand_set_checkpoint):
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real(*a, **k))
    load_network(hand_set_checkpoint)
    assert calls and all(k.get("weights_only") is True for k in calls)


class _Payload:
    """Pickled into a file: weights_only=True must refuse it."""


def test_a_pickled_object_is_refused_in_one_line(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "nngraph.optim/1", "kind": "graph", "payload": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError) as err:
        LearnedOptimizer(build("mlp")[0], str(path))
    assert "weights_only=True" in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------ errors
class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(x) if x.sum() > 0 else x


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message and len(message) < 600, message
    return message


def test_a_model_the_converter_refuses_is_one_line():
    with pytest.raises(nngraph.UnsupportedError) as err:
        LearnedOptimizer(_DataDependent(), example_inputs=(torch.randn(2, 3),), total_steps=10)
    message = _one_line(err)
    assert "LearnedOptimizer cannot place the parameters of _DataDependent" in message
    assert "PerParameterMLPOptimizer" in message


def test_a_parameter_not_in_the_model_is_one_line():
    model, _ = build("mlp")
    stranger = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError) as err:
        LearnedOptimizer(model, params=[*model.parameters(), stranger], total_steps=10)
    assert "is not a parameter of the Sequential" in _one_line(err)
    opt = LearnedOptimizer(model, total_steps=10)
    with pytest.raises(ValueError) as err:
        opt.add_param_group({"params": [stranger]})
    assert "position 0" in _one_line(err)


def test_other_misuse_is_one_line(tmp_path, hand_set_checkpoint):
    model, _ = build("mlp")
    with pytest.raises(TypeError) as err:
        LearnedOptimizer(model.parameters())
    assert "needs the nn.Module itself" in _one_line(err)
    with pytest.raises(FileNotFoundError) as err:
        LearnedOptimizer(model, str(tmp_path / "missing.pt"))
    _one_line(err)
    with pytest.raises(CheckpointError) as err:
        PerParameterMLPOptimizer(model, hand_set_checkpoint)
    assert "LearnedOptimizer reads it" in _one_line(err)
    with pytest.raises(ValueError) as err:
        LearnedOptimizer(model, lr=0.0, total_steps=10)
    _one_line(err)
    scheduled = GraphUpdateNetwork(hidden_dim=8, num_layers=1, context_dim=2, output_dim=8, rule="cone", progress=True)
    with pytest.raises(ValueError) as err:
        LearnedOptimizer(model, network=scheduled)
    assert "give total_steps=" in _one_line(err)
    with pytest.raises(ValueError) as err:
        LearnedOptimizer(model, network=scheduled, total_steps=0)
    _one_line(err)
    saved = LearnedOptimizer(model, network=scheduled, total_steps=10).state_dict()
    unscheduled = LearnedOptimizer(model, network=GraphUpdateNetwork(hidden_dim=8, num_layers=1, context_dim=2,
                                                                     output_dim=8))
    with pytest.raises(ValueError) as err:
        unscheduled.load_state_dict(saved)
    assert "give" not in _one_line(err) and "total_steps=" in _one_line(err)


@pytest.mark.parametrize("kind", ["graph", "mlp"])
def test_a_scheduled_network_reads_the_fraction_of_the_run_done(kind):
    """With ``total_steps=T`` the optimizer's k-th step (k = 0, 1, ...) is the functional step
    (advance_state -> entry_features -> network) at progress k / T, held at 1 past the end; another T gives
    other steps (the network reads it)."""
    torch.manual_seed(0)
    if kind == "graph":
        network = GraphUpdateNetwork(hidden_dim=8, num_layers=1, context_dim=2, output_dim=8, rule="cone", progress=True)
    else:
        network = PerParameterUpdateNetwork(output_dim=8, rule="cone", progress=True)
    with torch.no_grad():
        for p in network.output.mlp.parameters():
            p.normal_(0, 0.5)
        network.output.additive.fill_(0.5)
    x, y = _blobs(64)
    x = x[:, :4]
    total = 3

    def run(steps: int, total_steps: int) -> list[torch.Tensor]:
        model, _ = build("mlp")
        opt = (LearnedOptimizer(model, network=network, total_steps=total_steps) if kind == "graph" else
               PerParameterMLPOptimizer(model, network=network, total_steps=total_steps))
        _train(model, opt, x, y % 3, steps)
        return [p.detach().clone() for p in model.parameters()]

    # the reference: the functional pieces, step by step
    model, inputs = build("mlp")
    params = list(model.parameters())
    segments = Segments([p.numel() for p in params])
    graph, placement = place(model, params, inputs)
    state = init_state(segments.num_entries, len(network.betas))
    for k in range(5):
        model.zero_grad()
        F.cross_entropy(model(x), y % 3).backward()
        grad = torch.cat([p.grad.reshape(-1) for p in params])  # (P,)
        state = advance_state(state, grad, network.betas)
        weight = torch.cat([p.detach().reshape(-1) for p in params])  # (P,)
        features = entry_features(weight, grad, state, segments, network.betas)
        progress = torch.full((segments.num_entries,), min(k / total, 1.0))  # (P,)
        with torch.no_grad():
            step = network(features, segments, graph, placement, progress)  # (P,)
            for p, d in zip(params, step.split(segments.sizes)):
                p.add_(d.view_as(p))
    ours = run(5, total)
    for p, q in zip(ours, params):
        assert torch.allclose(p, q, atol=1e-6)
    other = run(5, 50)
    assert max(float((p - q).abs().max()) for p, q in zip(ours, other)) > 1e-4
