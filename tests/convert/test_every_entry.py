"""``Layout.writes_every_entry``: ``to_graph`` skips zeroing ``edge_attr`` only when the placements and identity
constants write every entry exactly once, checked against counting every written position (the obvious way)."""
import pytest
import torch
from torch import nn

from nngraph.convert import build_layout
from nngraph.convert.layout import dense_span

from .test_blocks import GRID_CASES
from .traps import TRAPS

CONVERTED = [t for t in TRAPS if t.expected != "refused"]


def _writes(layout) -> torch.Tensor:
    """``(num_entries,)``: how many times to_graph writes every entry of edge_attr."""
    counts = torch.zeros(layout.num_entries, dtype=torch.long)
    for p in layout.edge_placements:
        counts += torch.bincount(p.positions.reshape(-1), minlength=layout.num_entries)
    counts += torch.bincount(layout.identity_positions.reshape(-1), minlength=layout.num_entries)
    return counts


def _check(model, inputs):
    layout = build_layout(model.eval(), inputs, cache=False, check=False)
    once = bool((_writes(layout) == 1).all())
    assert layout.writes_every_entry == once  # never claimed wrongly, and found wherever it holds
    graph = layout.to_graph(model)
    object.__setattr__(layout, "_writes_all", False)  # the zero-filled graph, as before
    assert torch.equal(graph.edge_attr, layout.to_graph(model).edge_attr)
    return once


@pytest.mark.parametrize("trap", CONVERTED, ids=[t.name for t in CONVERTED])
def test_traps(trap):
    torch.manual_seed(0)
    _check(trap.build(), trap.inputs())


@pytest.mark.parametrize("case", list(GRID_CASES))
def test_grid_layouts(case):
    torch.manual_seed(0)
    assert _check(*GRID_CASES[case]())


def test_an_entry_no_placement_writes_is_zero():
    """A layout whose placements leave an entry unwritten (here: a placement dropped by hand) is zero-filled."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    layout = build_layout(model, (torch.randn(2, 3),), cache=False)
    assert layout.writes_every_entry
    import dataclasses

    partial = dataclasses.replace(layout, edge_placements=layout.edge_placements[:1])
    assert not partial.writes_every_entry
    graph = partial.to_graph(model)
    assert torch.equal(graph.edge_attr[12:], torch.zeros(8, 1))  # the second weight's entries, unwritten


@pytest.mark.parametrize("view, span", [
    ((5, (3, 4), (4, 1)), (5, 12)),  # contiguous
    ((5, (3, 4), (1, 3)), (5, 12)),  # transposed
    ((0, (2, 1, 3), (3, 7, 1)), (0, 6)),  # a length-1 axis's stride does not matter
    ((0, (3, 4), (4, 2)), None),  # gaps
    ((0, (2, 2, 2), (1, 1, 5)), None),  # as many indices as the span, but with repeats and gaps
    ((0, (3, 2), (0, 1)), None),  # broadcast: repeats
])
def test_dense_span(view, span):
    assert dense_span(view) == span
