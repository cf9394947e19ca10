import itertools

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import nngraph
from nngraph.gnn import NeuralGraphEncoder
from nngraph.schema import BIAS, Activation, EdgeType, NodeKind, NodeType, Pool
from nngraph.testing import assert_equivariant, assert_invariant

from .graph_checks import (
    assert_falls_back,
    assert_function_preserved,
    assert_round_trip,
    assert_same_up_to_relabelling,
    edge_dict,
)

I, H, C = 3, 4, 2
CELLS = {"rnn_tanh": (nn.RNN, {}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}), "lstm": (nn.LSTM, {}),
         "gru": (nn.GRU, {})}
GATES = {nn.RNN: 1, nn.LSTM: 4, nn.GRU: 3}


class Classifier(nn.Module):
    """A recurrent layer and a Linear head on the last step of the output (``read="out"``) or on the last
    layer's final state ``h_n[-1]`` (``read="h_n"``)."""

    def __init__(self, cell="lstm", read="out", num_layers=1, bidirectional=False, batch_first=True, bias=True):
        super().__init__()
        kind, kw = CELLS[cell]
        self.rnn = kind(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                        bias=bias, **kw)
        self.read = read
        self.head = nn.Linear(H * (2 if bidirectional and read == "out" else 1), C)

    def forward(self, x):
        out, h_n = self.rnn(x)
        if self.read == "h_n":
            h = h_n[0] if isinstance(self.rnn, nn.LSTM) else h_n
            return self.head(h[-1])
        return self.head(out[:, -1] if self.rnn.batch_first else out[-1])


def seq(batch_first=True, dtype=torch.float64, features=I):
    return torch.randn(*((2, 5, features) if batch_first else (5, 2, features)), dtype=dtype)


def randomize_biases(model):
    """Default biases are small uniform draws; make them distinct and large enough to matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name:
                p.copy_(torch.randn_like(p))
    return model


MATRIX = list(itertools.product(CELLS, [1, 2], [False, True], [True, False], ["out", "h_n"]))


# ----------------------------------------------------------------------- reference


def _reference_edges(model: nn.Module, g, layout, x_nodes: torch.Tensor):
    """Every edge of the recurrent layer and every node feature, built by looping over the weights."""
    rnn = model.rnn
    kind, g_count = type(rnn), GATES[type(rnn)]
    dirs = ("", "_reverse") if rnn.bidirectional else ("",)
    expected, biases = {}, {}
    inputs = x_nodes
    for layer in range(rnn.num_layers):
        outs = []
        for sfx in dirs:
            key = f"rnn.l{layer}{sfx}"
            hidden, ih, hh, gates = (layout.module_nodes[k] for k in (key, f"{key}.ih", f"{key}.hh", f"{key}.gates"))
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}{sfx}"), getattr(rnn, f"weight_hh_l{layer}{sfx}")
            for r in range(g_count * H):
                for c in range(inputs.numel()):
                    expected[(int(inputs[c]), int(ih[r]), int(EdgeType.WEIGHT))] = w_ih[r, c].item()
                for c in range(H):
                    expected[(int(hidden[c]), int(hh[r]), int(EdgeType.RECURRENT))] = w_hh[r, c].item()
                for rows in (ih, hh):  # gate k of unit j sums row k * H + j of both weights
                    expected[(int(rows[r]), int(gates[r]), int(EdgeType.RESIDUAL))] = 1.0
                biases[int(ih[r])] = getattr(rnn, f"bias_ih_l{layer}{sfx}")[r].item()
                biases[int(hh[r])] = getattr(rnn, f"bias_hh_l{layer}{sfx}")[r].item()
            for j in range(H):
                gate = [int(gates[k * H + j]) for k in range(g_count)]
                if kind is nn.LSTM:
                    cell = int(layout.module_nodes[f"{key}.cell"][j])
                    for src, dst in ((gate[0], cell), (gate[1], cell), (gate[2], cell), (gate[3], int(hidden[j])),
                                     (cell, int(hidden[j]))):
                        expected[(src, dst, int(EdgeType.GATE))] = 1.0
                elif kind is nn.GRU:
                    for src, dst in ((gate[0], gate[2]), (gate[1], int(hidden[j])), (gate[2], int(hidden[j]))):
                        expected[(src, dst, int(EdgeType.GATE))] = 1.0
            outs.append(hidden)
        inputs = torch.cat(outs)
    return expected, biases


@pytest.mark.parametrize("cell", list(CELLS))
def test_recurrent_layer_against_reference_loop(cell):
    torch.manual_seed(0)
    model = randomize_biases(Classifier(cell, num_layers=2, bidirectional=True))
    x = seq(dtype=torch.float32)
    g = nngraph.to_graph(model, x)
    layout = nngraph.build_layout(model, (x,))
    expected, biases = _reference_edges(model, g, layout, torch.arange(I))
    head = set(layout.module_nodes["head"].tolist())
    # out[:, -1] is recorded on POOL copies of the last layer's units (the layer reads its units back itself)
    picked = torch.nonzero(g.node_kind == NodeKind.POOL).reshape(-1)
    assert picked.numel() == 2 * H and (g.pool[picked, 0] == int(Pool.SELECT)).all()
    got = {key: a.item() for key, a in edge_dict(g).items() if key[1] not in head | set(picked.tolist())}
    assert got == expected
    for node, value in biases.items():
        assert g.x[node, BIAS].item() == value
    kinds, acts = g.node_kind, g.act
    for layer, sfx in itertools.product(range(2), ("", "_reverse")):
        key = f"rnn.l{layer}{sfx}"
        hidden, gates = layout.module_nodes[key], layout.module_nodes[f"{key}.gates"].view(-1, H)  # (G, H)
        assert (kinds[hidden] == NodeKind.RECURRENT_HIDDEN).all()
        assert (kinds[layout.module_nodes[f"{key}.ih"]] == NodeKind.LINEAR).all()
        if cell == "lstm":
            want = [(NodeKind.GATE_INPUT, Activation.SIGMOID), (NodeKind.GATE_FORGET, Activation.SIGMOID),
                    (NodeKind.CANDIDATE, Activation.TANH), (NodeKind.GATE_OUTPUT, Activation.SIGMOID)]
            assert (kinds[layout.module_nodes[f"{key}.cell"]] == NodeKind.LSTM_CELL).all()
        elif cell == "gru":
            want = [(NodeKind.GATE_RESET, Activation.SIGMOID), (NodeKind.GATE_UPDATE, Activation.SIGMOID),
                    (NodeKind.CANDIDATE, Activation.TANH)]
        else:
            want = [(NodeKind.RECURRENT_HIDDEN, Activation.TANH if cell == "rnn_tanh" else Activation.RELU)]
        for rows, (k, a) in zip(gates, want):
            assert (kinds[rows] == k).all() and (acts[rows] == a).all()
    assert (g.node_type[layout.module_nodes["rnn.l1"]] == NodeType.HIDDEN).all()


def test_cells_give_different_graphs():
    """RNN(tanh), RNN(relu), LSTM and GRU never give one graph."""
    graphs = {c: nngraph.to_graph(Classifier(c), seq(dtype=torch.float32)) for c in CELLS}
    signatures = {(tuple(g.node_kind.tolist()), tuple(g.act.tolist()), tuple(g.edge_type.tolist()))
                  for g in graphs.values()}
    assert len(signatures) == len(CELLS)


# ----------------------------------------------------------------------- round trips and soundness


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
def test_round_trip(cell, bias, batch_first):
    torch.manual_seed(1)
    model = Classifier(cell, num_layers=2, bidirectional=True, batch_first=batch_first, bias=bias)
    assert_round_trip(model, seq(batch_first, torch.float32))


@pytest.mark.parametrize("cell", list(CELLS))
def test_round_trip_bare_layer_and_unbatched_input(cell):
    torch.manual_seed(2)
    kind, kw = CELLS[cell]
    layer = kind(I, H, num_layers=2, bidirectional=True, **kw)
    assert_round_trip(layer, torch.randn(5, 2, I))
    assert_round_trip(layer, torch.randn(5, I))  # (T, I): no batch axis
    assert nngraph.verify(layer, torch.randn(5, I)).ok


@pytest.mark.parametrize("cell, layers, bidirectional, batch_first, read", MATRIX)
def test_verify_sound_and_every_unit_permutable(cell, layers, bidirectional, batch_first, read):
    torch.manual_seed(3)
    model = randomize_biases(Classifier(cell, read, layers, bidirectional, batch_first))
    report = nngraph.verify(model, seq(batch_first), num_permutations=4)
    assert report.ok, report
    assert report.num_permutable == report.num_hidden > 0  # nothing fixed needlessly
    assert report.moved_fraction > 0.5


def test_verify_catches_gates_that_do_not_move_with_their_unit(monkeypatch):
    """The soundness check can fail: a converter that forgets to tie the hidden rows to the units."""
    from nngraph.convert import builder as builder_module

    model = randomize_biases(Classifier("lstm"))
    real_tie = builder_module.GraphBuilder.tie

    def tie_all_but_recurrent_rows(self, a, b):
        kinds = torch.cat(self._node_chunks["kind"])
        if (kinds[b] == NodeKind.LINEAR).all() and int(b[0]) > int(a[0]):  # the weight_hh rows come after the units
            return
        real_tie(self, a, b)

    monkeypatch.setattr(builder_module.GraphBuilder, "tie", tie_all_but_recurrent_rows)
    report = nngraph.verify(model, seq())
    assert not report.ok and report.max_output_error > 1e-3


# ----------------------------------------------------------------------- permutations by hand


def _permute_direction(rnn: nn.RNNBase, layer: int, sfx: str, perm: torch.Tensor, next_columns=None) -> None:
    """Relabel the hidden units of one layer and direction by ``perm`` in place (new unit j is old unit perm[j])."""
    g = GATES[type(rnn)]
    rows = torch.cat([k * H + perm for k in range(g)])  # (G * H,)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            p = getattr(rnn, f"{name}_l{layer}{sfx}")
            p.copy_(p[rows])
        w_hh = getattr(rnn, f"weight_hh_l{layer}{sfx}")
        w_hh.copy_(w_hh[:, perm])
        for weight, offset in next_columns or ():
            cols = torch.arange(weight.shape[1])
            cols[offset:offset + H] = offset + perm
            weight.copy_(weight[:, cols])


@pytest.mark.parametrize("cell", list(CELLS))
def test_hand_permuted_units_give_the_relabelled_graph(cell):
    torch.manual_seed(4)
    model = randomize_biases(Classifier(cell, "out", num_layers=2, bidirectional=True)).double()
    permuted = Classifier(cell, "out", num_layers=2, bidirectional=True).double()
    permuted.load_state_dict(model.state_dict())
    rnn = permuted.rnn
    p_bwd0, p_fwd1 = torch.randperm(H), torch.randperm(H)
    # layer 0 backward feeds columns H..2H of both layer-1 weights; layer 1 forward feeds the head's first H columns
    _permute_direction(rnn, 0, "_reverse", p_bwd0, [(rnn.weight_ih_l1, H), (rnn.weight_ih_l1_reverse, H)])
    _permute_direction(rnn, 1, "", p_fwd1, [(permuted.head.weight, 0)])
    x = seq()
    assert_function_preserved(model, permuted, x)
    g1, g2 = nngraph.to_graph(model, x), nngraph.to_graph(permuted, x)
    layout = nngraph.build_layout(model, (x,))
    perm = torch.arange(g1.num_nodes)
    for key, p in (("rnn.l0_reverse", p_bwd0), ("rnn.l1", p_fwd1)):
        parts = [layout.module_nodes[key]] + [layout.module_nodes[f"{key}.{s}"].view(-1, H)
                                              for s in ("ih", "hh", "gates")]
        if cell == "lstm":
            parts.append(layout.module_nodes[f"{key}.cell"])
        if key == "rnn.l1":  # out[:, -1]'s recorded pick: POOL copies of the units, forward direction first
            parts.append(torch.nonzero(g1.node_kind == NodeKind.POOL).reshape(-1)[:H])
        for nodes in [row for part in parts for row in part.view(-1, H)]:
            perm[nodes[p]] = nodes
    assert_same_up_to_relabelling(g1, g2, perm)
    # the test can fail: the gates left behind when their unit moves
    wrong = perm.clone()
    gates = layout.module_nodes["rnn.l1.gates"][:H]
    wrong[gates] = gates
    with pytest.raises(AssertionError):
        assert_same_up_to_relabelling(g1, g2, wrong)


def test_permutations_outside_the_symmetry_change_the_function():
    """The symmetry checks check themselves: one gate's rows moved alone, or a unit moved without the
    columns of weight_hh, is not a symmetry."""
    torch.manual_seed(5)
    model = randomize_biases(Classifier("gru")).double()
    x = seq()
    p = torch.tensor([1, 0, 2, 3])
    for which in ("one_gate", "rows_only"):
        changed = Classifier("gru").double()
        changed.load_state_dict(model.state_dict())
        rnn = changed.rnn
        with torch.no_grad():
            if which == "one_gate":  # the reset rows of units 0 and 1 swapped, nothing else
                rows = torch.cat([p, torch.arange(H, 3 * H)])
                rnn.weight_ih_l0.copy_(rnn.weight_ih_l0[rows])
                rnn.weight_hh_l0.copy_(rnn.weight_hh_l0[rows])
            else:
                rows = torch.cat([k * H + p for k in range(3)])
                for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                    getattr(rnn, name).copy_(getattr(rnn, name)[rows])
                changed.head.weight.copy_(changed.head.weight[:, p])
        with pytest.raises(AssertionError):
            assert_function_preserved(model, changed, x)


@pytest.mark.parametrize("cell", list(CELLS))
def test_random_hidden_permutation_preserves_function_and_relabels(cell):
    torch.manual_seed(6)
    model = randomize_biases(Classifier(cell, "h_n", num_layers=2, bidirectional=True)).double()
    x = seq()
    g = nngraph.to_graph(model, x)
    units = nngraph.build_layout(model, (x,)).module_nodes["rnn.l0"]
    moved = False
    for seed in range(3):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), (x,))
        assert_function_preserved(model, permuted, x)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)
        moved |= not torch.equal(perm[units], units)
    assert moved, "the hidden units were never permuted"


# ----------------------------------------------------------------------- the encoder


def _encoder():
    torch.manual_seed(7)
    return NeuralGraphEncoder(out_dim=3, hidden_dim=16, num_layers=2).double()


@pytest.mark.parametrize("cell", list(CELLS))
def test_encoder_is_invariant_and_equivariant_on_recurrent_graphs(cell):
    torch.manual_seed(8)
    model = randomize_biases(Classifier(cell, "out", num_layers=2, bidirectional=True))
    x = seq()
    gen = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    assert assert_invariant(_encoder(), model, (x,), generator=gen()) < 1e-10
    errors = assert_equivariant(_encoder(), model, (x,), generator=gen())
    assert max(errors.values()) < 1e-10


def test_encoder_reads_a_batch_mixing_an_lstm_and_an_mlp():
    lstm = nngraph.to_graph(Classifier("lstm", num_layers=2, bidirectional=True).double(), seq())
    mlp = nngraph.to_graph(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).double())
    encoder = _encoder()
    batch = Batch.from_data_list([lstm, mlp])
    out = encoder(batch)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert torch.allclose(out[0], encoder(lstm)[0], atol=1e-12) and torch.allclose(out[1], encoder(mlp)[0], atol=1e-12)


# ----------------------------------------------------------------------- what follows the layer


class ReLUOnLast(Classifier):
    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(torch.relu(out[:, -1]))


class MeanOverTime(Classifier):
    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out.mean(1))


@pytest.mark.parametrize("make, kind", [(ReLUOnLast, NodeKind.POOL), (MeanOverTime, NodeKind.POOL)])
def test_activation_or_pooling_of_the_output_goes_on_copies_of_the_state(make, kind):
    """The units' values are read back by the recurrence, so what follows is recorded on tied copies (the
    last step's pick ``out[:, -1]`` makes them, and the relu after it goes on them)."""
    model = make("lstm").double()
    x = seq()
    layout = nngraph.build_layout(model, (x,))
    g = nngraph.to_graph(model, x)
    units = layout.module_nodes["rnn.l0"]
    assert (g.act[units] == 0).all() and (g.pool[units] == 0).all()
    assert int((g.node_kind == kind).sum()) == H
    if make is ReLUOnLast:
        assert (g.act[g.node_kind == kind] == int(Activation.RELU)).all()
    assert nngraph.verify(model, x).ok


class BothDirections(nn.Module):
    def __init__(self, cell="gru"):
        super().__init__()
        kind, kw = CELLS[cell]
        self.rnn = kind(I, H, num_layers=2, bidirectional=True, **kw)
        self.head = nn.Linear(2 * H, C)

    def forward(self, x):
        _, h_n = self.rnn(x)
        h = h_n[0] if isinstance(self.rnn, nn.LSTM) else h_n
        return self.head(torch.cat([h[-2], h[-1]], dim=1))


@pytest.mark.parametrize("cell", list(CELLS))
def test_reading_both_directions_of_h_n_keeps_every_symmetry(cell):
    torch.manual_seed(10)
    model = randomize_biases(BothDirections(cell))
    report = nngraph.verify(model, seq(False))
    assert report.ok and report.num_permutable == report.num_hidden, report


class InitialState(nn.Module):
    def __init__(self, source):
        super().__init__()
        self.rnn = nn.LSTM(I, H, batch_first=True)
        self.init = nn.Linear(I, H) if source == "activations" else None
        self.head = nn.Linear(H, C)
        self.source = source

    def forward(self, x, h0):
        if self.source == "activations":
            h0 = self.init(x[:, 0]).unsqueeze(0)  # (1, B, H) from a layer
        out, _ = self.rnn(x, (h0, h0))
        return self.head(out[:, -1])


def test_initial_state_given_as_input_fixes_the_units():
    model = randomize_biases(InitialState("input"))
    x, h0 = seq(dtype=torch.float32), torch.randn(1, 2, H)
    report = nngraph.verify(model, (x, h0))
    assert report.ok, report
    assert report.num_permutable == 0 < report.num_hidden  # the state does not move with the units
    # units, cells, 4 gates, 4 rows of weight_ih and 4 of weight_hh per unit, and out[:, -1]'s POOL copies
    assert report.num_hidden == 15 * H



# ----------------------------------------------------------------------- fallbacks and refusals


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(I, H, batch_first=True)
        self.head = nn.Linear(H, C)

    def forward(self, x):
        packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([5, 3]), batch_first=True)
        _, h = self.rnn(packed)
        return self.head(h[-1])


class StackedStateLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(I, H, num_layers=2)
        self.head = nn.Linear(H, C)

    def forward(self, x):
        return self.head(self.rnn(x)[1])  # one Linear on every layer's state: weights shared across spaces


class StateSummedOverLayers(StackedStateLinear):
    def forward(self, x):
        return self.head(self.rnn(x)[1].sum(0))


@pytest.mark.parametrize("make, inputs, match", [
    (lambda: nn.LSTM(I, H, proj_size=2), lambda: (torch.randn(5, 2, I),), "proj_size"),
    (lambda: InitialState("activations"), lambda: (seq(dtype=torch.float32), torch.zeros(1, 2, H)),
     "initial state computed from the model's activations"),
    (StackedStateLinear, lambda: (seq(False, torch.float32),), "split into 2 heads"),
    (StateSummedOverLayers, lambda: (seq(False, torch.float32),), "layers and directions of a recurrent h_n"),
])
def test_fallbacks_name_the_operation(make, inputs, match):
    assert_falls_back(make(), inputs(), match=match)


def test_a_packed_sequence_is_refused_by_name():
    with pytest.raises(nngraph.UnsupportedError, match="could not trace Packed.*control flow"):
        nngraph.to_graph(Packed(), (seq(dtype=torch.float32),))


# ----------------------------------------------------------------------- torch.export


GRAPH_FIELDS = ("x", "edge_index", "edge_type", "edge_attr", "kernel_shape", "node_kind", "node_type", "act", "layer")


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("read", ["out", "h_n"])
def test_export_path_gives_the_fx_graph_and_is_sound(cell, read):
    """torch.export shows aten.lstm / aten.gru / aten.rnn_tanh / aten.rnn_relu with a flat parameter list;
    the lift turns it back into the layer."""
    torch.manual_seed(11)
    model = randomize_biases(Classifier(cell, read, num_layers=2, bidirectional=True, batch_first=False))
    x = seq(False, torch.float32)
    g_fx, g_export = nngraph.to_graph(model, x, method="fx"), nngraph.to_graph(model, x, method="export")
    for field in GRAPH_FIELDS:
        assert torch.equal(getattr(g_fx, field), getattr(g_export, field)), field
    report = nngraph.verify(model, x, method="export", num_permutations=3)
    assert report.ok and report.num_permutable == report.num_hidden, report


def test_export_path_initial_states():
    x, h0 = seq(dtype=torch.float32), torch.randn(1, 2, H)
    report = nngraph.verify(InitialState("input"), (x, h0), method="export")
    assert report.ok and report.num_permutable == 0, report
    assert_falls_back(InitialState("activations"), (x, h0), method="export",
                      match="initial state computed from the model's activations")
    with pytest.raises(nngraph.UnsupportedError, match="proj_size"):  # the export path still refuses it
        nngraph.to_graph(nn.LSTM(I, H, proj_size=2), torch.randn(5, 2, I), method="export")


class ActivatedBidirectional(nn.Module):
    """relu and a residual on a bidirectional output: the copies are tied direction by direction."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(I, H, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * H, C)

    def forward(self, x):
        o = self.rnn(x)[0][:, -1]  # (B, 2H): two spaces side by side
        return self.head(torch.relu(o) + o)


def test_copies_of_a_bidirectional_output_keep_both_directions_permutable():
    model = randomize_biases(ActivatedBidirectional())
    x = seq(dtype=torch.float32)
    report = nngraph.verify(model, x)
    assert report.ok and report.num_permutable == report.num_hidden, report
    layout = nngraph.build_layout(model, (x,))
    fwd, bwd = layout.module_nodes["rnn.l0"], layout.module_nodes["rnn.l0_reverse"]
    owner = {int(n): k for k, s in enumerate(layout.symmetries) for n in s.rows.reshape(-1)}
    assert owner[int(fwd[0])] != owner[int(bwd[0])]  # the directions stay separate classes


def test_probe_features_read_every_layers_final_state():
    """h_n is split into one group per layer and direction; the probes merge the groups in node order."""
    from nngraph.convert import probe_features

    torch.manual_seed(12)
    model = Classifier("lstm", "h_n", num_layers=2, bidirectional=True).double()
    x = seq()
    probe = probe_features(model, x)  # (N, P)
    layout = nngraph.build_layout(model, (x,))
    _, (h_n, _) = model.rnn(x)  # (L * D, P, H)
    for k, key in enumerate(("rnn.l0", "rnn.l0_reverse", "rnn.l1", "rnn.l1_reverse")):
        assert torch.equal(probe[layout.module_nodes[key]], h_n[k].t())
    encoder = NeuralGraphEncoder(out_dim=3, hidden_dim=8, num_layers=2, probe_dim=2).double()
    assert assert_invariant(encoder, model, (x,), probe_inputs=seq()) < 1e-10
