"""Relabelling a model's hidden neurons permutes the learned optimizer's step exactly (float64)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nngraph
from nngraph import symmetry
from nngraph.optim import GraphUpdateNetwork, LearnedOptimizer, PerParameterMLPOptimizer

from .models import MODELS, build


def _random_network(seed: int = 0, rule: str = "cone") -> GraphUpdateNetwork:
    """An update network far from its Adam-like start: every weight drawn, the last layer included (with the
    cone rule it reads the run's progress, so the optimizers below are given ``total_steps``)."""
    torch.manual_seed(seed)
    network = GraphUpdateNetwork(hidden_dim=16, num_layers=2, context_dim=4, output_dim=16, rule=rule,
                                 progress=rule == "cone").double()
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, 0.3)
        network.output.log_lr.fill_(-3.0)
    return network


def _steps(model: nn.Module, inputs, opt: torch.optim.Optimizer, num: int = 3) -> None:
    """``num`` steps of ``opt`` on a loss of ``model``'s outputs on ``inputs`` (a fixed target)."""
    target = torch.randn(model(*inputs).shape, generator=torch.Generator().manual_seed(1), dtype=inputs[0].dtype)
    for _ in range(num):
        opt.zero_grad()
        ((model(*inputs) - target) ** 2).sum().backward()
        opt.step()


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    pb = dict(b.named_parameters())
    return max(float((p - pb[n]).detach().abs().max()) for n, p in a.named_parameters())


@pytest.mark.parametrize("rule", ["cone", "rescaled"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_relabelled_model_gets_relabelled_step(name, rule):
    model, inputs = build(name, dtype=torch.float64)
    layout = nngraph.build_layout(model, inputs)
    perm = symmetry.random_permutation(layout, torch.Generator().manual_seed(3))
    assert not torch.equal(perm, torch.arange(layout.num_nodes))  # the permutation moves neurons
    permuted = symmetry.permute_model(model, perm, inputs, layout)
    # the test checks itself: the relabelled model is the same function, with other parameters
    assert torch.allclose(model(*inputs), permuted(*inputs), atol=1e-12)
    assert _max_diff(model, permuted) > 1e-3
    network = _random_network(rule=rule)
    before = [p.detach().clone() for p in model.parameters()]
    _steps(model, inputs, LearnedOptimizer(model, network=network, example_inputs=inputs, total_steps=5))
    _steps(permuted, inputs, LearnedOptimizer(permuted, network=network, example_inputs=inputs, total_steps=5))
    moved = max(float((p - b).detach().abs().max()) for p, b in zip(model.parameters(), before))
    assert moved > 1e-3  # the steps are not negligible
    # stepping then relabelling equals relabelling then stepping
    assert _max_diff(symmetry.permute_model(model, perm, inputs, layout), permuted) < 1e-10


def test_the_check_fails_for_a_rule_that_reads_positions():
    """The same check on an update that depends on where an entry sits (not equivariant) fails."""
    model, inputs = build("mlp", dtype=torch.float64)
    layout = nngraph.build_layout(model, inputs)
    perm = symmetry.random_permutation(layout, torch.Generator().manual_seed(3))
    permuted = symmetry.permute_model(model, perm, inputs, layout)
    network = _random_network()

    class Positional(LearnedOptimizer):
        def _network_step(self, features, segments, params, progress):
            step = super()._network_step(features, segments, params, progress)
            return step * torch.linspace(0.5, 1.5, step.numel(), dtype=step.dtype)

    _steps(model, inputs, Positional(model, network=network, total_steps=5))
    _steps(permuted, inputs, Positional(permuted, network=network, total_steps=5))
    assert _max_diff(symmetry.permute_model(model, perm, inputs, layout), permuted) > 1e-6


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_relabelled_twin_takes_the_same_steps(name):
    model, inputs = build(name, dtype=torch.float64)
    twin, _ = build(name, dtype=torch.float64)
    network = _random_network()
    _steps(model, inputs, LearnedOptimizer(model, network=network, example_inputs=inputs, total_steps=5))
    _steps(twin, inputs, LearnedOptimizer(twin, network=network, example_inputs=inputs, relabel=True, total_steps=5,
                                          generator=torch.Generator().manual_seed(5)))
    assert _max_diff(model, twin) < 1e-10


def test_per_parameter_step_is_the_same_for_every_labelling():
    """The baseline has no graph; its step of an entry depends on that entry's features and its tensor's norms."""
    model, inputs = build("mlp", dtype=torch.float64)
    layout = nngraph.build_layout(model, inputs)
    perm = symmetry.random_permutation(layout, torch.Generator().manual_seed(3))
    permuted = symmetry.permute_model(model, perm, inputs, layout)
    torch.manual_seed(0)
    opt_a = PerParameterMLPOptimizer(model, total_steps=5)
    with torch.no_grad():
        for p in opt_a.network.parameters():
            p.normal_(0, 0.3)
    opt_a.network.double()
    opt_b = PerParameterMLPOptimizer(permuted, network=opt_a.network, total_steps=5)
    _steps(model, inputs, opt_a)
    _steps(permuted, inputs, opt_b)
    assert _max_diff(symmetry.permute_model(model, perm, inputs, layout), permuted) < 1e-10
