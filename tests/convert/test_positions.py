"""Positions picked out of an activation (``x[:, 0]``, ``x[:, -1]``, ``x[:, 1:]``, ``select``, ``unbind``)
or reordered (``flip``, ``roll``) are recorded (``Pool.SELECT`` / ``SLICE`` / ``FLIP`` / ``ROLL``): two picks
never give one graph."""
import pytest
import torch
from torch import nn

import nngraph
from nngraph.convert import GraphMismatchError
from nngraph.schema import POOL_ARGS, Pool

from .graph_checks import assert_falls_back, assert_round_trip
from .test_op_args import assert_differ_only_in, encoder


class Pick(nn.Module):
    """``c(pick(relu(a(x))))`` on ``(B, 5, 6)`` sequences, or ``c(pick(x))`` with ``on_input``."""

    def __init__(self, pick, on_input: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.c = nn.Linear(6, 3)
        self.a = None if on_input else nn.Linear(6, 6)
        self.pick = pick

    def forward(self, x):  # (B, 5, 6)
        h = x if self.a is None else torch.relu(self.a(x))
        return self.c(self.pick(h))  # (B, 3)


PICKS = {
    "first": lambda h: h[:, 0],
    "last": lambda h: h[:, -1],
    "fourth": lambda h: h[:, 4],  # the last one, written from the start
    "select_2": lambda h: torch.select(h, 1, 2),
    "unbind_1": lambda h: h.unbind(1)[1],
    "tail_mean": lambda h: h[:, 1:].mean(1),
    "every_other_mean": lambda h: h[:, ::2].mean(1),
    "mean": lambda h: h.mean(1),
    "flip_first": lambda h: h.flip(1)[:, 0],  # the last token, read after reversing the positions
    "roll1_first": lambda h: torch.roll(h, 1, 1)[:, 0],
    "roll2_first": lambda h: torch.roll(h, shifts=2, dims=1)[:, 0],
    "roll_back_first": lambda h: torch.roll(h, -3, 1)[:, 0],  # the same shift as 2, written from the other end
}
PAIRS = [("first", "last"), ("last", "fourth"), ("first", "select_2"), ("select_2", "unbind_1"),
         ("tail_mean", "mean"), ("tail_mean", "every_other_mean"), ("first", "flip_first"),
         ("first", "roll1_first"), ("roll1_first", "roll2_first"), ("flip_first", "roll1_first")]


def x_seq():
    return torch.randn(2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


#: (a reduction of a raw model input reads its axis 1 as the neurons, so those picks are tested on activations)
CASES = [(a, b, on_input) for a, b in PAIRS for on_input in (False, True) if not (on_input and "mean" in a + b)]


@pytest.mark.parametrize("a, b, on_input", CASES)
def test_two_picks_give_two_graphs(a, b, on_input):
    x = x_seq()
    ma, mb = Pick(PICKS[a], on_input).double().eval(), Pick(PICKS[b], on_input).double().eval()
    ga, gb = nngraph.to_graph(ma, x), nngraph.to_graph(mb, x)
    if ga.num_nodes == gb.num_nodes and ga.edge_index.shape == gb.edge_index.shape:
        differ = {k for k in ("pool", "pool_args") if not torch.equal(ga[k], gb[k])}
        assert differ
        assert_differ_only_in(ga, gb, differ)
        with pytest.raises(GraphMismatchError, match="poolings"):
            nngraph.from_graph(ga, mb, x)
    enc = encoder()
    assert (enc(ga) - enc(gb)).abs().max() > 1e-6


def test_recorded_values():
    g = nngraph.to_graph(Pick(PICKS["last"]).double(), x_seq())
    picked = g.pool[:, 0] == int(Pool.SELECT)
    assert int(picked.sum()) == 6  # the six neurons of relu(a(x))
    row = g.pool_args[picked][0, 0]
    col = {name: float(row[i]) for i, name in enumerate(POOL_ARGS)}
    assert (col["kernel_d"], col["kernel_h"], col["kernel_w"], col["stride_d"], col["after_act"]) == (-2, 4, 5, 1, 1)
    g = nngraph.to_graph(Pick(PICKS["tail_mean"]).double(), x_seq())
    row = g.pool_args[g.pool[:, 0] == int(Pool.SLICE)][0, 0]
    col = {name: float(row[i]) for i, name in enumerate(POOL_ARGS)}
    assert (col["kernel_d"], col["kernel_h"], col["kernel_w"], col["stride_d"], col["stride_h"]) == (-2, 1, 4, 1, 5)
    assert set(g.pool[g.pool[:, 0] == int(Pool.SLICE), 1].tolist()) == {int(Pool.MEAN)}


@pytest.mark.parametrize("name, on_input", [(n, i) for n in sorted(PICKS) for i in (False, True)
                                             if not (i and "mean" in n)])
def test_sound_and_exact(name, on_input):
    model, x = Pick(PICKS[name], on_input).double().eval(), x_seq()
    assert nngraph.verify(model, x).ok
    assert_round_trip(model, x)


def test_export_records_the_same_picks():
    for name in ("first", "last", "tail_mean", "flip_first", "roll2_first"):
        model, x = Pick(PICKS[name]).double().eval(), x_seq()
        fx, ex = nngraph.to_graph(model, x), nngraph.to_graph(model, x, method="export")
        assert torch.equal(fx.pool, ex.pool) and torch.equal(fx.pool_args, ex.pool_args), name


def test_reorders_record_dimension_shift_and_size():
    g = nngraph.to_graph(Pick(PICKS["roll2_first"]).double(), x_seq())
    rolled = g.pool[:, 0] == int(Pool.ROLL)
    assert int(rolled.sum()) == 6 and set(g.pool[rolled, 1].tolist()) == {int(Pool.SELECT)}
    col = dict(zip(POOL_ARGS, g.pool_args[rolled][0, 0].tolist()))
    assert (col["kernel_d"], col["kernel_h"], col["kernel_w"]) == (-2, 2, 5)
    same = nngraph.to_graph(Pick(PICKS["roll_back_first"]).double(), x_seq())  # -3 is +2 on 5 positions
    assert torch.equal(g.pool, same.pool) and torch.equal(g.pool_args, same.pool_args)
    flipped = nngraph.to_graph(Pick(PICKS["flip_first"]).double(), x_seq())
    col = dict(zip(POOL_ARGS, flipped.pool_args[flipped.pool[:, 0] == int(Pool.FLIP)][0, 0].tolist()))
    assert (col["kernel_d"], col["kernel_w"]) == (-2, 5)


def test_a_flip_or_roll_of_the_neuron_axis_is_a_relabelling_without_record():
    for pick in (lambda h: h.flip(2)[:, 0], lambda h: torch.roll(h, 2, -1)[:, 0]):
        model = Pick(pick).double().eval()
        g = nngraph.to_graph(model, x_seq())
        assert not ((g.pool == int(Pool.FLIP)) | (g.pool == int(Pool.ROLL))).any()
        assert nngraph.verify(model, x_seq()).ok
        assert_round_trip(model, x_seq())


def test_a_value_picked_twice_gets_neurons_per_pick():
    model = Pick(lambda h: h[:, 0] + h[:, -1]).double()
    g = nngraph.to_graph(model, x_seq())
    assert int((g.pool[:, 0] == int(Pool.SELECT)).sum()) == 12  # two tied copies of the six neurons
    assert nngraph.verify(model, x_seq()).ok


def test_positions_dropped_by_a_list_index_fall_back_by_name():
    assert_falls_back(Pick(lambda h: h[:, [0, 2]].mean(1)).double(), x_seq(),
                      match=r"getitem at fx node .*: seen through")  # picking positions acts on each neuron alone


class Join(nn.Module):
    """``c(cat([a(x), b(x)]))`` or with the operands swapped, same weights."""

    def __init__(self, swap: bool):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c, self.swap = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(6, 2), swap

    def forward(self, x):  # (B, 4)
        parts = [torch.tanh(self.a(x)), torch.tanh(self.b(x))]
        return self.c(torch.cat(parts[::-1] if self.swap else parts, -1))  # (B, 2)


def test_the_order_of_a_cat_of_neurons_shows_in_the_graph():
    """The operand order is a labelling of the joined neurons: the edges from each block carry the weights
    of their own columns, so swapping the operands under the same weights changes the graph (the encoder
    sees it), and is the graph of the model with the columns swapped back."""
    x = torch.randn(3, 4, dtype=torch.float64)
    m1, m2 = Join(False).double().eval(), Join(True).double().eval()
    assert not torch.allclose(m1(x), m2(x))
    g1, g2 = nngraph.to_graph(m1, x), nngraph.to_graph(m2, x)
    enc = encoder()
    assert (enc(g1) - enc(g2)).abs().max() > 1e-6
    same = Join(True).double().eval()
    with torch.no_grad():
        same.c.weight.copy_(torch.cat([m1.c.weight[:, 3:], m1.c.weight[:, :3]], 1))  # the same function as m1
    assert torch.allclose(same(x), m1(x))
    assert (enc(nngraph.to_graph(same, x)) - enc(g1)).abs().max() < 1e-10


class MapHead(nn.Module):
    """``f(flatten(move(relu(conv(x)))))`` on ``(B, 2, 4, 4)`` maps."""

    def __init__(self, move):
        super().__init__()
        torch.manual_seed(0)
        self.c, self.f, self.move = nn.Conv2d(2, 3, 3, padding=1), nn.Linear(3 * 4 * 4, 2), move

    def forward(self, x):
        return self.f(self.move(torch.relu(self.c(x))).flatten(1))


MOVES = {
    "none": lambda h: h,
    "transpose": lambda h: h.transpose(2, 3),
    "permute": lambda h: h.permute(0, 1, 3, 2),  # the same function as transpose
    "movedim": lambda h: h.movedim(3, 2),  # and again
    "channels_last_and_back": lambda h: h.permute(0, 2, 3, 1).permute(0, 3, 1, 2),  # neurons moved, not positions
}


def _maps():
    return torch.randn(2, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def test_a_transpose_of_position_axes_is_recorded():
    graphs = {name: nngraph.to_graph(MapHead(move).double(), _maps()) for name, move in MOVES.items()}
    reordered = {name: bool((g.pool == int(Pool.REORDER)).any()) for name, g in graphs.items()}
    assert reordered == {"none": False, "transpose": True, "permute": True, "movedim": True,
                         "channels_last_and_back": False}
    assert not torch.equal(graphs["none"].pool_args, graphs["transpose"].pool_args)
    for name in ("permute", "movedim"):  # one function, one record
        assert torch.equal(graphs["transpose"].pool_args, graphs[name].pool_args)
    col = dict(zip(POOL_ARGS, graphs["transpose"].pool_args[graphs["transpose"].pool[:, 0] == int(Pool.REORDER)][0, 0]
                   .tolist()))
    assert (col["kernel_d"], col["kernel_h"], col["kernel_w"]) == (21, 4, 4)  # two axes of 4, swapped
    for name, move in MOVES.items():
        model = MapHead(move).double().eval()
        assert nngraph.verify(model, _maps()).ok, name
        assert_round_trip(model, _maps())


def test_moving_the_batch_axis_is_not_a_reorder():
    """``(B, T, E) -> (T, B, E)`` (a ``batch_first=False`` layout) changes no function's definition."""
    model = Pick(lambda h: h.transpose(0, 1)[0]).double().eval()  # the first token, read through (T, B, E)
    graph = nngraph.to_graph(model, x_seq())
    assert not (graph.pool == int(Pool.REORDER)).any()
    assert nngraph.verify(model, x_seq()).ok
