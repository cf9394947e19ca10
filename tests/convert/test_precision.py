"""A model that computes in float32 in places (Hugging Face's RMSNorm) is still checked at float64's tolerance.

``verify`` and ``repair`` run such a forward with its lower-precision casts lifted to float64
(:func:`nngraph.convert.precision.float64_islands`), so a claim that changes the outputs by 1e-6 (well below the
``1000 * eps(float32)`` the check needed before) is caught.
"""
from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import nngraph
from nngraph.convert import api
from nngraph.convert.precision import float64_islands
from nngraph.convert.repair import check_tolerance


class Float32RMSNorm(nn.Module):
    """RMSNorm written as Hugging Face's LLaMA writes it: the statistics in float32 whatever the input's dtype."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        dtype = h.dtype
        h = h.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.weight * h.to(dtype)


class IslandNet(nn.Module):
    """Linear -> tanh -> float32 RMSNorm -> Linear (converted through torch.export, whose RMSNorm pattern keeps the
    hidden neurons permutable); ``leak`` adds ``leak * h[:, 0]`` to the outputs, which singles
    out one hidden neuron (permuting the hidden layer then changes the function by about ``leak``)."""

    def __init__(self, leak: float = 0.0):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.norm, self.fc2 = nn.Linear(5, 24), Float32RMSNorm(24), nn.Linear(24, 3)
        self.leak = leak

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(torch.tanh(self.fc1(x)))
        y = self.fc2(h)
        if self.leak:
            y = y + self.leak * h[:, :1]
        return y


def _inputs() -> torch.Tensor:
    return torch.randn(16, 5, generator=torch.Generator().manual_seed(1))


def test_a_float32_island_drops_precision_and_the_lifted_forward_does_not():
    model, x = IslandNet().double(), _inputs().double()
    with torch.no_grad():
        plain = model(x)
        with float64_islands() as casts:
            lifted = model(x)
        h = torch.tanh(model.fc1(x))
        reference = model.fc2(model.norm.weight * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6))
    assert lifted.dtype == torch.float64
    assert casts.rewritten >= 1
    assert float((lifted - reference).abs().max()) < 1e-14  # float64 throughout
    assert float((plain - reference).abs().max()) > 1e-9  # the island rounds to float32
    assert torch.get_default_dtype() == torch.float32  # restored


def test_the_layout_claims_the_hidden_layer_and_records_the_cast():
    layout = api.build_layout(IslandNet(), (_inputs(),), cache=False, method="export")
    assert torch.float32 in layout.casts
    assert check_tolerance(layout, torch.float64) > 1e-5  # the tolerance the check needed without lifting
    assert sum(g.rows.numel() for g in layout.symmetries) >= 24  # the 24 hidden neurons are claimed permutable


def test_verify_stays_tight_on_a_float32_island():
    report = nngraph.verify(IslandNet(), _inputs(), method="export")
    assert report.ok, report
    assert report.tolerance == 1e-9
    assert report.max_output_error < 1e-13


def test_verify_catches_a_claim_that_changes_outputs_by_less_than_float32s_tolerance(monkeypatch):
    leaky = IslandNet(leak=1e-6)
    clean_layout = api.build_layout(IslandNet(), (_inputs(),), cache=False, method="export")  # claims the hidden layer
    monkeypatch.setattr(sys.modules["nngraph.convert.verify"], "_build_layout",
                        lambda module, *args, **kwargs: clean_layout)
    with torch.no_grad():  # the claim is wrong for the leaky model: permuting its hidden layer moves its outputs
        x = _inputs().double()
        model = leaky.double()
        perm = torch.arange(24).roll(1)  # moves neuron 0
        h = model.norm(torch.tanh(model.fc1(x)))
        moved = model.fc2(h) + 1e-6 * h[:, perm][:, :1]
        change = float((moved - model(x)).abs().max() / model(x).abs().max())
    assert 1e-9 < change < 1e-4
    report = nngraph.verify(leaky, _inputs())
    assert not report.ok, report
    assert 1e-9 < report.max_output_error < check_tolerance(clean_layout, torch.float64)


def test_to_graph_fixes_such_a_claim_when_a_fallback_built_it(monkeypatch):
    """``repair`` (the proof a fallback graph gets) uses the same lifted forward: at float32's tolerance it would
    keep the leaky claim."""
    from nngraph.convert.repair import repair

    clean_layout = api.build_layout(IslandNet(), (_inputs(),), cache=False, method="export")
    claimed = sum(g.rows.numel() for g in clean_layout.symmetries)
    repaired = repair(IslandNet(leak=1e-6), clean_layout, (_inputs(),))
    assert sum(g.rows.numel() for g in repaired.symmetries) < claimed
    kept = repair(IslandNet(), clean_layout, (_inputs(),))
    assert sum(g.rows.numel() for g in kept.symmetries) == claimed


@pytest.mark.parametrize("cast", ["float", "half", "bfloat16", "to", "dtype_kwarg", "default_dtype"])
def test_every_kind_of_cast_is_lifted(cast):
    x = torch.randn(4, dtype=torch.float64)
    with float64_islands():
        y = {"float": lambda: x.float(), "half": lambda: x.half(), "bfloat16": lambda: x.bfloat16(),
             "to": lambda: x.to(torch.float32), "dtype_kwarg": lambda: torch.zeros(4, dtype=torch.float32) + x,
             "default_dtype": lambda: torch.ones(4) * x}[cast]()
    assert y.dtype == torch.float64


def test_a_bitcast_view_is_not_rewritten():
    x = torch.randn(4, dtype=torch.float64)
    with float64_islands():
        y = x.view(torch.float32)  # the same 32 bytes read as 8 float32 numbers
    assert y.dtype == torch.float32 and y.shape == (8,)
