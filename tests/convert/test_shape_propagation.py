"""Shapes propagated on fake tensors (large models: nothing computed) equal those of the real forward (the
reference), node by node, on every trap model; a forward fake tensors cannot run falls back to the real one."""
import importlib

import pytest
import torch
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from .traps import TRAPS

trace_module = importlib.import_module("nngraph.convert.trace")  # the module, not nngraph.convert.trace()
#: traps only torch.export traces (fx refuses them), whose shapes come from export's own fake tensors
EXPORT_ONLY = {"sdpa_band_buffer_mask", "sdpa_mask_input"}
CONVERTED = [t for t in TRAPS if t.expected != "refused" and t.name not in EXPORT_ONLY]


def _metas(monkeypatch, model, inputs, fake: bool) -> dict:
    monkeypatch.setattr(trace_module, "FAKE_PROPAGATION_SIZE", 0 if fake else float("inf"))
    calls = []
    real = trace_module._propagate_fake
    monkeypatch.setattr(trace_module, "_propagate_fake", lambda gm, x: calls.append(ok := real(gm, x)) or ok)
    gm, _ = trace_module.trace(model, inputs, method="fx")
    assert bool(calls) == fake  # fake propagation tried exactly when forced
    out = {}
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        out[node.name] = _shapes(meta)
    return out, calls


def _shapes(meta):
    """``meta`` with every TensorMetadata reduced to ``(shape, dtype)`` (what the converters read)."""
    if isinstance(meta, TensorMetadata):
        return tuple(meta.shape), meta.dtype
    if isinstance(meta, (list, tuple)):
        return tuple(_shapes(m) for m in meta)
    if isinstance(meta, dict):
        return {k: _shapes(v) for k, v in meta.items()}
    return meta


@pytest.mark.parametrize("trap", CONVERTED, ids=[t.name for t in CONVERTED])
def test_fake_shapes_equal_real_ones(trap, monkeypatch):
    torch.manual_seed(0)
    model, inputs = trap.build().eval(), trap.inputs()
    real, _ = _metas(monkeypatch, model, inputs, fake=False)
    fake, calls = _metas(monkeypatch, model, inputs, fake=True)
    assert fake == real


@pytest.mark.parametrize("name", sorted(EXPORT_ONLY))
def test_the_traps_left_out_are_the_ones_fx_refuses(name):
    from nngraph.convert import UnsupportedError

    trap = next(t for t in TRAPS if t.name == name)
    with pytest.raises(UnsupportedError):
        trace_module.trace(trap.build().eval(), trap.inputs(), method="fx")


class DataDependent(nn.Module):
    """A forward whose shapes depend on values (``nonzero``): fake tensors cannot say them."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) * (x[x > 0].numel() > 0)


def test_a_data_dependent_forward_falls_back_to_the_real_one(monkeypatch):
    model, x = DataDependent(), (torch.randn(2, 4),)
    real, _ = _metas(monkeypatch, model, x, fake=False)
    fake, calls = _metas(monkeypatch, model, x, fake=True)
    assert calls == [False]  # tried, failed, the real forward ran
    assert fake == real and fake["fc"] == ((2, 3), torch.float32)


def test_training_mode_batch_norm_is_left_unchanged(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, calls = _metas(monkeypatch, model, (torch.randn(2, 3, 6, 6),), fake=True)
    assert calls == [True]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
