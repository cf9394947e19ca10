"""The learned step is bounded: per tensor, within e^-c .. e^c times Adam's at the learned rate, whatever the network
outputs and however wide the layer (a per-edge output must not grow with fan-in)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nngraph.optim import (GraphUpdateNetwork, PerParameterUpdateNetwork, Segments, StepOutput, advance_state,
                           entry_features, init_state, place)
from nngraph.optim.output import base_channel


def _wild(network: nn.Module, scale: float = 3.0, seed: int = 0) -> nn.Module:
    """``network`` with every weight drawn large: outputs far from anything meta-training would give."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, scale)
        network.output.log_lr.fill_(math.log(1e-2))
    return network


def _features(model: nn.Module, inputs, steps: int = 3):
    """Features of ``model``'s parameters after ``steps`` gradients of a random target."""
    params = list(model.parameters())
    segments = Segments([p.numel() for p in params])
    state = init_state(segments.num_entries, 3)
    target = torch.randn(model(*inputs).shape, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        model.zero_grad()
        ((model(*inputs) - target) ** 2).mean().backward()
        grad = torch.cat([p.grad.reshape(-1) for p in params])  # (P,)
        state = advance_state(state, grad)
    weight = torch.cat([p.detach().reshape(-1) for p in params])  # (P,)
    return entry_features(weight, grad, state, segments), segments, params


def _per_tensor_ratio(step, features, segments, lr):
    """``(T,)``: every tensor's step rms over lr times its Adam direction's rms."""
    adam = features[:, base_channel((0.5, 0.9, 0.99))]
    rms = segments.mean_square(torch.stack([step, adam])).sqrt()  # (2, T)
    return rms[0] / (lr * rms[1])


@pytest.mark.parametrize("width", [8, 64, 512])
def test_graph_step_stays_within_bounds_at_any_width(width):
    torch.manual_seed(width)
    model = nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))
    inputs = (torch.randn(16, 6),)
    features, segments, params = _features(model, inputs)
    graph, placement = place(model, params, inputs)
    network = _wild(GraphUpdateNetwork(hidden_dim=16, num_layers=2, context_dim=4, output_dim=16))
    with torch.no_grad():
        step = network(features, segments, graph, placement)  # (P,)
        raw = network.output.mlp(torch.cat([features, torch.zeros(len(features), 4)], 1))  # (P, 2)
    assert raw.abs().max() > 10  # the network's outputs are wild: the bound is what keeps the step in range
    ratio = _per_tensor_ratio(step, features, segments, 1e-2)
    c = network.output.max_log_scale
    assert torch.all(ratio <= math.exp(c) * (1 + 1e-5)) and torch.all(ratio >= math.exp(-c) * (1 - 1e-5)), ratio
    assert torch.isfinite(step).all()


def test_per_parameter_step_stays_within_bounds():
    model = nn.Sequential(nn.Linear(6, 256), nn.ReLU(), nn.Linear(256, 3))
    features, segments, _ = _features(model, (torch.randn(16, 6),))
    network = _wild(PerParameterUpdateNetwork(output_dim=16, max_log_scale=0.5))
    with torch.no_grad():
        ratio = _per_tensor_ratio(network(features, segments), features, segments, 1e-2)
    assert torch.all(ratio <= math.exp(0.5) * (1 + 1e-5)) and torch.all(ratio >= math.exp(-0.5) * (1 - 1e-5))


def test_a_tensor_without_gradient_gets_no_step():
    """Adam's direction is zero on a tensor whose gradient is zero; rescaling to its norm keeps the step zero."""
    features = torch.randn(10, 8)
    features[:4, base_channel((0.5, 0.9, 0.99))] = 0.0
    segments = Segments([4, 6])
    output = _wild(PerParameterUpdateNetwork(output_dim=8)).output
    with torch.no_grad():
        step = output(features, segments)
    assert torch.equal(step[:4], torch.zeros(4)) and step[4:].abs().min() > 0


def test_the_bound_check_fails_for_an_unbounded_output():
    """The same check on an unbounded rule (direction plus raw output, exp of the raw magnitude) fails."""
    model = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 3))
    features, segments, _ = _features(model, (torch.randn(16, 6),))
    output = _wild(PerParameterUpdateNetwork(output_dim=16)).output
    with torch.no_grad():
        out = output.mlp(features)  # (P, 2)
        unbounded = -1e-2 * (features[:, output.base] + out[:, 0]) * out[:, 1].clamp(-5, 5).exp()
    assert _per_tensor_ratio(unbounded, features, segments, 1e-2).max() > math.exp(output.max_log_scale)


def test_bad_bound_is_one_line():
    with pytest.raises(ValueError, match="must be positive"):
        StepOutput((0.5, 0.9, 0.99), max_log_scale=0.0)


def _sign_and_size_check(step, features, segments, output, lr: float) -> tuple[bool, bool, float]:
    """``(sizes ok, signs ok, share of entries the sign check covers)`` of the cone rule's guarantee: every entry's
    step lies between ``lr e^-c- (|a| - |b| rms(a))`` and ``lr e^c+ (|a| + |b| rms(a))``, and points against Adam's
    direction ``a`` wherever ``|a| > |b| rms(a)``."""
    adam = features[:, output.base]  # (P,)
    rms = segments.mean_square(adam.unsqueeze(0)).sqrt()[0][segments.ids]  # (P,): its tensor's rms, per entry
    b = output.max_additive * float(torch.tanh(output.additive.detach()).abs()) if output.rule == "cone" else 0.5
    upper = lr * math.exp(output.max_log_scale) * (adam.abs() + b * rms)
    lower = lr * math.exp(-output.min_log_scale) * (adam.abs() - b * rms).clamp_min(0)
    sizes = bool(torch.all(step.abs() <= upper * (1 + 1e-5)) and torch.all(step.abs() >= lower * (1 - 1e-5)))
    covered = adam.abs() > b * rms
    signs = bool(torch.all(step[covered] * adam[covered] < 0))
    return sizes, signs, float(covered.float().mean())


@pytest.mark.parametrize("width", [8, 512])
def test_cone_step_keeps_adams_sign_and_size_per_entry(width):
    """Whatever the network outputs, the cone rule's step of every entry is Adam's direction times a factor in
    (e^-c-, e^c+) plus at most |b| rms(a), so it points against Adam's direction wherever that is larger than the
    additive term; on the rescaled rule (a free correction) the same check fails."""
    torch.manual_seed(width)
    model = nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))
    inputs = (torch.randn(16, 6),)
    features, segments, params = _features(model, inputs)
    graph, placement = place(model, params, inputs)
    progress = torch.full((segments.num_entries,), 0.7)
    for rule, holds in (("cone", True), ("rescaled", False)):
        network = _wild(GraphUpdateNetwork(hidden_dim=16, num_layers=2, context_dim=4, output_dim=16, rule=rule,
                                           min_log_scale=3.0, max_additive=0.3, progress=True))
        with torch.no_grad():
            step = network(features, segments, graph, placement, progress)  # (P,)
        sizes, signs, covered = _sign_and_size_check(step, features, segments, network.output, 1e-2)
        assert torch.isfinite(step).all()
        if holds:
            assert sizes and signs and covered > 0.5, (sizes, signs, covered)
        else:
            assert not signs, rule


def test_the_step_follows_the_progress_it_is_given():
    """A network that reads the run's progress gives other steps at other progress, and refuses to step without it."""
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    features, segments, _ = _features(model, (torch.randn(16, 6),))
    scheduled = _wild(PerParameterUpdateNetwork(output_dim=8, rule="cone", progress=True))
    with torch.no_grad():
        early, late = (scheduled(features, segments, progress=torch.tensor(t)) for t in (0.0, 1.0))
    assert not torch.allclose(early, late)
    with pytest.raises(ValueError, match="pass progress"):
        scheduled(features, segments)
    with pytest.raises(ValueError, match="Could not resolve rule"):
        StepOutput((0.5, 0.9, 0.99), rule="free")
