"""The fallback (nngraph/convert/fallback.py) and its proof (repair.py): every path converts a real model to a
sound graph with an exact inverse, and the encoder is invariant / equivariant on it (float64, the model's own
outputs checked first by the testing helpers)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

import nngraph
from nngraph.convert.repair import repair
from nngraph.schema import EdgeType, NodeKind
from nngraph.testing import assert_equivariant, assert_invariant


class Pointwise(nn.Module):
    """Operations no converter names, each acting on every neuron alone: seen through."""

    def __init__(self, exponent: float = 2.0):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.exponent = exponent

    def forward(self, x):
        h = torch.erf(self.a(x)).pow(self.exponent)
        return self.c(torch.special.expit(self.b(h)) * 3.0)


class Cumulative(nn.Module):
    """``cumsum`` along the neurons mixes them in order: opaque, its inputs fixed."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(torch.cumsum(self.a(x), -1)))))


class Gathered(nn.Module):
    """A gather whose index is computed from the activations (``argsort``): opaque."""

    def __init__(self):
        super().__init__()
        self.a, self.c = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.a(x)
        return self.c(torch.gather(h, -1, h.argsort(-1)))


def spiky(h):
    """The identity on values up to 50, a reversal of the neurons where one exceeds it."""
    return torch.where(h.abs() > 50, h.flip(-1), h)


torch.fx.wrap("spiky")  # one fx node, run as a whole by the fallback's test


class Trap(nn.Module):
    """Looks elementwise on the fallback's standard-normal samples (nothing exceeds 50) and is not on the model,
    whose activations do (weights scaled up): only the proof on the model catches it."""

    def __init__(self):
        super().__init__()
        self.a, self.c = nn.Linear(4, 8), nn.Linear(8, 3)
        with torch.no_grad():
            self.a.weight.mul_(500.0)

    def forward(self, x):
        h = self.a(x)
        return self.c(spiky(h))


def weight_norm_mlp():
    return nn.Sequential(parametrizations.weight_norm(nn.Linear(4, 8)), nn.Tanh(), nn.Linear(8, 3))


class RowCumsum(nn.Module):
    """A weight derived by a ``cumsum`` over its rows: the derivation orders the neurons, which stay fixed."""

    def __init__(self):
        super().__init__()
        self.w, self.c = nn.Parameter(torch.randn(8, 4)), nn.Linear(8, 3)

    def forward(self, x):
        return self.c(torch.tanh(torch.nn.functional.linear(x, torch.cumsum(self.w, 0))))


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.c = nn.Linear(4, 8), nn.Linear(8, 3)
        self.spare = nn.Parameter(torch.randn(5, 9))

    def forward(self, x):
        return self.c(torch.relu(self.a(x)))


class PositionIds(nn.Module):
    """Position ids computed from the token ids with integer arithmetic (RoBERTa's ``ne`` and ``cumsum``):
    constants of the input, not activations."""

    def __init__(self):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(20, 8), nn.Embedding(16, 8)
        self.a, self.c = nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, ids):
        mask = ids.ne(1).int()
        positions = torch.cumsum(mask, 1) * mask + 1
        return self.c(torch.relu(self.a(self.tokens(ids) + self.positions(positions))))


def _vec():
    return (torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),)


def _ids():
    return (torch.randint(0, 20, (2, 6), generator=torch.Generator().manual_seed(0)),)


CASES = {  # name -> (model, inputs, a node kind the fallback makes, whether neurons stay permutable)
    "see_through": (Pointwise, _vec, NodeKind.ELEMENTWISE, True),
    "opaque": (Cumulative, _vec, NodeKind.OPAQUE, True),
    "activation_index": (Gathered, _vec, NodeKind.OPAQUE, False),
    "derived_parameter": (RowCumsum, _vec, NodeKind.PARAMETER, False),
    "derived_weight_norm": (weight_norm_mlp, _vec, NodeKind.LINEAR, True),  # nngraph/convert/derived.py
    "unused_parameter": (Unused, _vec, NodeKind.PARAMETER, True),
    "integer_inputs": (PositionIds, _ids, None, True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_fallback_path_is_sound_exact_and_read_equivariantly(name):
    build, inputs, kind, permutable = CASES[name]
    torch.manual_seed(0)
    model, x = build().eval(), inputs()
    report = nngraph.verify(model, x)
    assert report.ok and report.round_trip_error == 0.0, f"{name}: {report}"
    graph = nngraph.to_graph(model, x)
    if kind is not None:
        assert (graph.node_kind == kind).any(), f"{name} made no {kind.name} node"
    assert (report.num_permutable > 0) == permutable, f"{name}: {report}"
    back = nngraph.from_graph(graph, model)
    for (key, p), q in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(p, q), f"{name}: {key} changed in the round trip"
    if permutable:  # the helpers check the permuted model's outputs first, then the encoder, in float64
        encoder = nngraph.NeuralGraphEncoder(4, hidden_dim=8, num_layers=2).double()
        x64 = tuple(t.double() if t.is_floating_point() else t for t in x)
        assert assert_invariant(encoder, model, x64, generator=torch.Generator().manual_seed(0)) < 1e-10
        errors = assert_equivariant(encoder, model, x64, generator=torch.Generator().manual_seed(1))
        assert max(errors.values()) < 1e-10


def test_see_through_keeps_the_symmetry_and_records_the_operation():
    model, x = Pointwise().eval(), _vec()
    layout = nngraph.build_layout(model, x)
    assert all("seen through" in line for line in layout.fallbacks) and len(layout.fallbacks) == 3
    graph = nngraph.to_graph(model, x)
    copies = graph.node_kind == NodeKind.ELEMENTWISE
    assert int(copies.sum()) == 8 + 8 + 8  # erf, pow, expit
    assert (graph.op_code[copies, 0] > 0).all() and (graph.op_code[~copies] == 0).all()
    report = nngraph.verify(model, x)  # a, b, every copy tied to them and the scale by 3: every hidden neuron
    assert report.num_permutable == report.num_hidden == 8 * 6


def test_two_functions_never_give_one_graph():
    x = _vec()
    square, cube = Pointwise(2.0).eval(), Pointwise(3.0).eval()
    cube.load_state_dict(square.state_dict())
    g2, g3 = nngraph.to_graph(square, x), nngraph.to_graph(cube, x)
    assert torch.equal(g2.x, g3.x) and torch.equal(g2.edge_attr, g3.edge_attr)
    assert torch.equal(g2.op_code[:, 0], g3.op_code[:, 0])  # the same category: pow
    assert not torch.equal(g2.op_code[:, 1], g3.op_code[:, 1])  # its constant differs


def test_opaque_fixes_its_inputs_and_wires_them_in():
    model, x = Cumulative().eval(), _vec()
    graph, layout = nngraph.to_graph(model, x), nngraph.build_layout(model, x)
    opaque = (graph.node_kind == NodeKind.OPAQUE).nonzero().reshape(-1)
    assert opaque.numel() == 8 and any("opaque" in line and "cumsum" in line for line in layout.fallbacks)
    permutable = torch.cat([g.rows.reshape(-1) for g in layout.symmetries])
    a_nodes = layout.module_nodes["a"]
    assert not torch.isin(a_nodes, permutable).any() and not torch.isin(opaque, permutable).any()
    wired = graph.edge_index[:, graph.edge_type == EdgeType.OPAQUE]
    assert torch.isin(wired[0], a_nodes).all() and torch.isin(wired[1], opaque).all()
    assert wired.shape[1] == 64  # every input to every output when few
    assert torch.isin(layout.module_nodes["b"], permutable).any()  # b's neurons keep their symmetry


def test_the_proof_fixes_what_the_sample_got_wrong():
    model, x = Trap().eval(), _vec()
    layout = nngraph.build_layout(model, x)
    assert any(line.startswith("check:") for line in layout.fallbacks), layout.fallbacks
    assert nngraph.verify(model, x).ok
    unchecked = nngraph.build_layout(model, x, cache=False, check=False)
    assert any("seen through" in line for line in unchecked.fallbacks)  # the sample alone was fooled ...
    graph = unchecked.to_graph(model)
    wrong = unchecked.from_graph(unchecked.permute_graph(graph, unchecked.random_node_permutation(
        torch.Generator().manual_seed(0))), model)
    with torch.no_grad():
        assert (wrong(*x) - model(*x)).abs().max() > 1e-3  # its claim is false
    assert len(repair(model, unchecked, x).symmetries) < len(unchecked.symmetries)  # ... and the proof fixed it


def test_parameters_no_operation_reads_are_kept_on_fixed_nodes():
    model, x = Unused().eval(), _vec()
    graph = nngraph.to_graph(model, x)
    rows = graph.node_kind == NodeKind.PARAMETER
    assert int(rows.sum()) == 5 * 9 // 3  # rows of 9 entries cut into kernels of 3
    kernels = graph.kernel_shape[graph.edge_type == EdgeType.OPAQUE]
    assert (kernels == torch.tensor([1, 1, 3], dtype=kernels.dtype)).all()
    edited = graph.clone()
    edited.edge_attr = graph.edge_attr + 1.0
    assert torch.equal(nngraph.from_graph(edited, model).spare, model.spare + 1.0)  # read back from the graph


class _ReturnsNumber(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 2)

    def forward(self, x):
        return 3


@pytest.mark.parametrize("model, inputs, error, match", [
    (nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)), (torch.randn(2, 5),), nngraph.UnsupportedError, "shapes"),
    (nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)), ("hello",), TypeError, r"example_inputs\[0\] is a str"),
    (_ReturnsNumber(), (torch.randn(2, 4),), nngraph.UnsupportedError, "returns no tensor"),
])
def test_bad_input_is_still_a_clear_error(model, inputs, error, match):
    with pytest.raises(error, match=match):
        nngraph.to_graph(model, inputs)


def test_a_norms_eps_is_part_of_the_graph():
    """LayerNorm with eps 1e-5 and with eps 1.0 compute different functions: their graphs differ, and a graph of
    one does not load into the other."""
    small = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8, eps=1e-5), nn.Linear(8, 2))
    large = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8, eps=1.0), nn.Linear(8, 2))
    large.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert (small(_vec()[0]) - large(_vec()[0])).abs().max() > 1e-3
    g_small, g_large = nngraph.to_graph(small), nngraph.to_graph(large)
    norm = g_small.node_kind == NodeKind.NORM
    assert torch.equal(g_small.norm_eps[norm], torch.full((8,), 1e-5)) and (g_small.norm_eps[~norm] == 0).all()
    assert torch.equal(g_large.norm_eps[norm], torch.ones(8))
    with pytest.raises(nngraph.GraphMismatchError, match="another eps"):
        nngraph.from_graph(g_small, large)


def test_torchscript_and_a_graph_without_features_are_clear_errors():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(TypeError, match="TorchScript"):
        nngraph.to_graph(torch.jit.trace(model, torch.randn(2, 4)), (torch.randn(2, 4),))
    graph = nngraph.to_graph(model)
    del graph.edge_attr
    with pytest.raises(nngraph.GraphMismatchError, match="no edge_attr"):
        nngraph.from_graph(graph, model)


class _RMSNormWritten(nn.Module):
    """RMSNorm written as arithmetic, its weight read as ``weight`` (LLaMA) or ``1 + weight`` (Gemma)."""

    def __init__(self, offset: bool):
        super().__init__()
        self.weight, self.offset = nn.Parameter(torch.randn(8) * 0.1), offset

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        return (h * ((1.0 + self.weight.float()) if self.offset else self.weight.float())).type_as(x)


def test_gemmas_one_plus_weight_norm_is_a_norm_and_another_function():
    graphs = []
    for offset in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), _RMSNormWritten(offset), nn.Linear(8, 3)).eval()
        x = _vec()
        assert nngraph.verify(model, x, method="export").ok
        layout = nngraph.build_layout(model, x, method="export")
        assert not layout.fallbacks and (layout.node_kind == NodeKind.RMS_NORM).sum() == 8
        graphs.append(layout.to_graph(model))
    plain, gemma = graphs
    norm = gemma.node_kind == NodeKind.RMS_NORM
    assert (plain.op_code == 0).all() and (gemma.op_code[norm, 1] == 1_000_000).all()
    assert torch.equal(plain.x, gemma.x)  # the same parameters: only op_code tells the functions apart


def test_a_product_with_a_one_entry_constant_is_a_scale():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.c = nn.Linear(4, 8), nn.Linear(8, 3)
            self.register_buffer("scale", torch.tensor(2.5), persistent=False)

        def forward(self, x):
            return self.c(self.a(x) * self.scale)

    model, x = Scaled().eval(), _vec()
    report = nngraph.verify(model, x)
    assert report.ok and report.num_permutable == report.num_hidden == 16
    graph = nngraph.to_graph(model, x)
    assert (graph.node_kind == NodeKind.CONSTANT_SCALE).sum() == 8
