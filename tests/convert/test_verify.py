"""nngraph.verify: the soundness check, and what the graph records so that no inputs are needed later."""
from __future__ import annotations

import dataclasses
import io
import sys

import pytest
import torch
from torch import nn

import nngraph
from nngraph.convert import SoundnessError, SymmetryGroup, api
from nngraph.convert.builder import GraphBuilder

from .traps import TRAPS, TiedHead

PLACE = ("module '", "fx node '", "parameter '", "the model (", "global forward hooks")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def test_verify_reports_a_sound_mlp():
    report = nngraph.verify(_mlp(), torch.randn(4, 3))
    assert report.ok, report
    assert report.max_output_error < 1e-12
    assert report.round_trip_error == 0.0
    assert report.num_hidden == report.num_permutable == 16
    assert 0.5 < report.moved_fraction < 1.0
    assert "sound" in str(report)


def _verify_builds_with(monkeypatch, layout_builder):
    """Make :func:`nngraph.verify` build its layouts with ``layout_builder`` (the module's name is shadowed by the
    function in ``nngraph.convert``, hence ``sys.modules``)."""
    monkeypatch.setattr(sys.modules["nngraph.convert.verify"], "_build_layout", layout_builder)


def _with_bogus_symmetry(monkeypatch, model, inputs):
    """Make build_layout claim that the two hidden spaces of ``model`` are one (a lie)."""
    real = api.build_layout

    def lying(module, *args, **kwargs):
        layout = real(module, *args, **kwargs)
        rows = torch.cat([g.rows for g in layout.symmetries], 1)  # (1, 16): both spaces, one row
        bogus = SymmetryGroup(rows=rows[:, torch.randperm(rows.shape[1])])
        return dataclasses.replace(layout, symmetries=(bogus,))

    _verify_builds_with(monkeypatch, lying)


def test_verify_catches_a_symmetry_that_breaks_the_graph(monkeypatch):
    model, x = _mlp(), torch.randn(4, 3)
    _with_bogus_symmetry(monkeypatch, model, x)
    report = nngraph.verify(model, x)
    assert not report.ok and report.max_output_error == float("inf")


def test_verify_catches_untied_shared_weights(monkeypatch):
    """The bug verify exists for: tied weights placed as if independent keep the graph's structure
    and the exact round trip, but their permutation changes the model's function."""
    model = next(t for t in TRAPS if t.name == "module_called_twice").build()
    ids = torch.randn(3, 6)
    assert nngraph.verify(model, ids).ok
    monkeypatch.setattr(GraphBuilder, "_share", lambda self, name, first, axis_nodes: None)
    report = nngraph.verify(model, ids)
    assert report.round_trip_error == 0.0
    assert not report.ok and 1e-3 < report.max_output_error < float("inf")
    with pytest.raises(SoundnessError, match="UNSOUND"):
        nngraph.verify(model, ids, raise_on_failure=True)
    with pytest.raises(SoundnessError):
        nngraph.to_graph(model, ids, verify=True)


def test_verify_catches_an_inexact_inverse(monkeypatch):
    model, x = _mlp(), torch.randn(4, 3)
    real = api.build_layout

    def dropping(module, *args, **kwargs):
        layout = real(module, *args, **kwargs)
        return dataclasses.replace(layout, node_placements=layout.node_placements[1:])

    _verify_builds_with(monkeypatch, dropping)
    report = nngraph.verify(model, x)
    assert report.round_trip_error > 0 and not report.ok


def test_verify_leaves_the_model_unchanged():
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nngraph.verify(model, torch.randn(4, 3))
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in model.state_dict().items())


def test_from_graph_needs_no_example_inputs_when_the_graph_recorded_them():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 2))
    x = torch.randn(2, 3, 12, 12)  # not the 16-pixel inputs nngraph would make up
    graph = nngraph.to_graph(cnn, x)
    assert graph.input_spec == [[[2, 3, 12, 12], "float32"]]
    buffer = io.BytesIO()
    torch.save(graph.to_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    back = nngraph.from_graph(type(graph).from_dict(loaded), cnn)
    assert all(torch.equal(a, b) for a, b in zip(cnn.parameters(), back.parameters()))


def test_verify_without_inputs_uses_the_made_up_ones():
    assert nngraph.verify(_mlp()).ok


# ----------------------------------------------------------------------------- shared parameters


def test_tied_weights_are_placed_once_and_permuted_together():
    model = TiedHead()
    ids = torch.randint(0, 11, (2, 5))
    layout = nngraph.build_layout(model, (ids,))
    placements = [p for p in layout.edge_placements if p.name in ("emb.weight", "head.weight")]
    assert len(placements) == 2 and sum(p.read_back for p in placements) == 1
    permuted, _ = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(1), (ids,))
    assert permuted.head.weight is permuted.emb.weight
    assert not torch.equal(permuted.emb.weight, model.emb.weight)  # the check moved something
    with torch.no_grad():
        assert torch.allclose(model(ids), permuted(ids), atol=1e-5)
    assert nngraph.verify(model, (ids,)).ok


def test_edited_tied_weights_are_read_from_their_first_place():
    model = TiedHead()
    ids = torch.randint(0, 11, (2, 5))
    graph = nngraph.to_graph(model, ids)
    layout = nngraph.build_layout(model, (ids,))
    first = next(p for p in layout.edge_placements if p.read_back and p.name in ("emb.weight", "head.weight"))
    edited = graph.clone()
    edited.edge_attr.view(-1)[first.positions] += 1.0
    back = nngraph.from_graph(edited, model)
    assert torch.equal(back.emb.weight, model.emb.weight + 1.0) and back.head.weight is back.emb.weight


# ----------------------------------------------------------------------------- the trap suite


@pytest.mark.parametrize("trap", TRAPS, ids=[t.name for t in TRAPS])
def test_trap_is_sound(trap):
    torch.manual_seed(0)
    model, inputs = trap.build(), trap.inputs()
    if trap.expected == "refused":  # code no tracer sees (hooks, an instance's forward) or a call that cannot be made
        with pytest.raises(nngraph.UnsupportedError) as error:
            nngraph.to_graph(model, inputs)
        assert any(p in str(error.value) for p in PLACE), f"the refusal does not say where: {error.value}"
        return
    report = nngraph.verify(model, inputs)
    assert report.ok, f"{trap.name}: {report}"
    fallbacks = nngraph.build_layout(model, inputs).fallbacks
    if trap.expected == "sound":
        assert not fallbacks, f"{trap.name} needed the fallback: {fallbacks}"
    else:
        assert fallbacks, f"{trap.name} converted without the fallback but was expected to need it"
        assert all(("fx node" in line or "module " in line) or line.startswith("check:") for line in fallbacks)


def test_trap_suite_is_large_and_mixed():
    outcomes = [t.expected for t in TRAPS]
    assert set(outcomes) == {"sound", "fallback", "refused"} and outcomes.count("refused") <= 5
    assert len(TRAPS) >= 50 and outcomes.count("sound") >= 15 and outcomes.count("fallback") >= 15


def test_a_selection_of_neurons_fixes_their_space_and_nothing_else():
    from .traps import SliceHead

    model = SliceHead()
    layout = nngraph.build_layout(model, (torch.randn(3, 6),))
    b_nodes = layout.module_nodes["b"]
    a_nodes = layout.module_nodes["a"]
    moved = torch.cat([g.rows.reshape(-1) for g in layout.symmetries])
    assert not torch.isin(b_nodes, moved).any()  # the selected space is fixed
    assert torch.isin(a_nodes, moved).all()  # the one before it is not
    assert nngraph.verify(model, torch.randn(3, 6)).ok
