"""Models torch.fx cannot trace reach the converters through torch.export."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.schema import Activation, NodeKind

from .graph_checks import assert_falls_back, assert_function_preserved, assert_same_up_to_relabelling


class ShapeBranching(nn.Module):
    """``if`` on a shape: fx cannot trace it, export specialises it away."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.sin(30 * self.a(x)) if x.shape[-1] == 2 else x
        h = h + torch.relu(self.b(h))
        return self.c(h)


def test_fx_alone_refuses_and_auto_falls_back_to_export():
    m, x = ShapeBranching().double(), torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(nngraph.UnsupportedError, match="torch.fx could not trace"):
        nngraph.to_graph(m, x, method="fx")
    g = nngraph.to_graph(m, x)
    assert g.num_nodes == 2 + 8 + 8 + 8 + 3  # inputs, a, b, the residual sums, c
    assert (g.node_kind == NodeKind.SUM).sum() == 8
    assert (g.act == Activation.SINE).sum() == 8 and (g.act == Activation.RELU).sum() == 8
    back = nngraph.from_graph(g, m, x)
    for (n, p), q in zip(m.named_parameters(), back.parameters()):
        assert torch.equal(p, q), n
    permuted, perm = nngraph.random_hidden_permutation(m, torch.Generator().manual_seed(0), x)
    assert_function_preserved(m, permuted, x)
    assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)


def test_export_and_fx_agree_on_a_cnn():
    cnn = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 5, padding=2), nn.GELU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    ).eval()
    x = torch.randn(2, 1, 8, 8)
    by_fx = nngraph.to_graph(cnn, x, method="fx")
    by_export = nngraph.to_graph(cnn, x, method="export")
    for key in ("x", "edge_index", "edge_attr", "edge_type", "node_kind", "node_type", "act", "layer"):
        assert torch.equal(by_fx[key], by_export[key]), key


def test_export_names_an_unsupported_aten_op_and_falls_back():
    class MatmulParam(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.w = nn.Parameter(torch.randn(4, 4))

        def forward(self, x):
            return self.lin(x) @ self.w

    assert_falls_back(MatmulParam(), torch.randn(2, 3), match="'w'", method="export")


def test_a_constant_scale_outside_sine_is_a_scale_node_on_both_paths():
    from nngraph.schema import EdgeType, NodeKind

    class Scaled(nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor
            self.a, self.b = nn.Linear(2, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.b(self.factor * self.a(x))

    x = torch.randn(2, 2)
    model = Scaled(3.0)
    g_fx, g_export = nngraph.to_graph(model, x, method="fx"), nngraph.to_graph(model, x, method="export")
    for g in (g_fx, g_export):
        assert int((g.node_kind == NodeKind.CONSTANT_SCALE).sum()) == 4
        assert torch.equal(g.edge_attr[g.edge_type == EdgeType.SCALE].reshape(-1), torch.full((4,), 3.0))
    assert torch.equal(g_fx.edge_index, g_export.edge_index) and torch.equal(g_fx.edge_attr, g_export.edge_attr)
    assert nngraph.verify(model, x).ok
    other = nngraph.to_graph(Scaled(0.5), x)  # another factor gives another graph
    assert torch.equal(other.edge_attr[other.edge_type == EdgeType.SCALE].reshape(-1), torch.full((4,), 0.5))


class GatedByConstants(nn.Module):
    """A non-persistent buffer and a tensor constant: constants of the forward, not in the state dict."""

    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(3, 4), nn.Linear(4, 2)
        self.register_buffer("gate", torch.tensor([1.0, 0.0, 1.0, 1.0]), persistent=False)
        self.scale = torch.tensor(3.0)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)) * self.gate * self.scale)


def test_an_unlifted_program_keeps_the_state_dict_and_converts_as_the_model():
    from nngraph.convert.program import program_module
    from nngraph.convert.trace import is_aten_graph

    model, x = GatedByConstants().eval(), torch.randn(2, 3)
    program = program_module(torch.export.export(model, (x,)))
    # fx.GraphModule makes every tensor it reads a buffer, in copies too; the program's are constants again
    assert set(program.state_dict()) == set(model.state_dict()) == {"fc.weight", "fc.bias", "out.weight", "out.bias"}
    assert set(copy.deepcopy(program).state_dict()) == set(model.state_dict())
    program.load_state_dict(model.state_dict())  # strict: a file saved from the model loads as it is
    assert torch.equal(program(x), model(x))
    assert is_aten_graph(program) and not is_aten_graph(torch.fx.symbolic_trace(model.fc))
    by_model = nngraph.to_graph(model, x, method="export")
    by_program = nngraph.to_graph(program, x)  # method="auto": an ATen graph goes straight to torch.export
    for key in ("x", "edge_index", "edge_attr", "edge_type", "node_kind", "node_type", "act", "layer"):
        assert torch.equal(by_model[key], by_program[key]), key
    scrambled = copy.deepcopy(program)
    scrambled.load_state_dict({k: torch.randn_like(v) + 7.0 for k, v in model.state_dict().items()})
    back = nngraph.from_graph(by_program, scrambled)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
    assert torch.equal(back(x), model(x))
    assert nngraph.verify(program, x).ok  # verify converts a float64 deep copy


def test_export_matches_fx_on_a_resnet_with_inplace_add_and_adaptive_max_pool():
    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x):
            out = self.b(torch.relu(self.a(x)))
            out += x
            return torch.relu(out)

    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Block(4), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(2, 1, 8, 8)
    by_fx, by_export = nngraph.to_graph(net, x, method="fx"), nngraph.to_graph(net, x, method="export")
    for key in ("x", "edge_index", "edge_attr", "edge_type", "node_kind", "node_type", "act", "layer"):
        assert torch.equal(by_fx[key], by_export[key]), key


def test_supported_functions_have_readable_names():
    names = nngraph.convert.supported_functions()
    assert not [n for n in names if "<locals>" in n]
    assert any(n.endswith("max_pool2d") for n in names)


# ----------------------------------------------------------------------------- parity with fx

from .test_op_args import MODELS as OP_MODELS  # noqa: E402
from .test_op_args import make as make_op_model  # noqa: E402


class FirstToken(nn.Module):
    """``x[:, 0]`` after a per-token layer (aten.select through export), and a slice of tokens."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):  # (B, T, 4)
        h = torch.relu(self.a(x))[:, 1:3]  # (B, 2, 6)
        return self.b(h[:, 0])  # (B, 2)


def _transposed(dims):
    torch.manual_seed(0)
    conv, t = {1: (nn.Conv1d, nn.ConvTranspose1d), 3: (nn.Conv3d, nn.ConvTranspose3d)}[dims]
    return nn.Sequential(conv(2, 4, 3, padding=1, padding_mode="reflect"), nn.Hardswish(),
                         t(4, 4, 3, stride=2, groups=2, dilation=2), nn.Mish())


class Encoder(nn.Module):
    """A transformer stack and a bare self-attention between Linear layers."""

    def __init__(self, norm_first=False):
        super().__init__()
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True, norm_first=norm_first,
                                           activation="gelu")
        self.inp, self.out = nn.Linear(3, 8), nn.Linear(8, 2)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):  # (B, T, 3)
        h = self.enc(self.inp(x))
        return self.out(self.att(h, h, h)[0])  # (B, T, 2)


def _bare_layer():
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, activation=nn.SiLU(), norm_first=True)


def _gnn_example(name):
    from tests.gnn.models import example

    model, (x,) = example(name)
    return model, x


PARITY = {
    **{name: lambda name=name: make_op_model(name) for name in OP_MODELS},
    **{f"gnn_{name}": lambda name=name: _gnn_example(name)
       for name in ("mlp", "cnn3", "resnet", "transformer", "cnn_norm", "mlp_norm", "embedding")},
    "encoder": lambda: (Encoder().double().eval(), torch.randn(2, 5, 3, dtype=torch.float64)),
    "encoder_norm_first": lambda: (Encoder(True).double().eval(), torch.randn(2, 5, 3, dtype=torch.float64)),
    "bare_layer": lambda: (_bare_layer().double().eval(), torch.randn(5, 2, 8, dtype=torch.float64)),
    "first_token": lambda: (FirstToken().double(), torch.randn(2, 5, 4, dtype=torch.float64)),
    "conv1d_transposed": lambda: (_transposed(1).double(), torch.randn(2, 2, 7, dtype=torch.float64)),
    "conv3d_transposed": lambda: (_transposed(3).double(), torch.randn(1, 2, 4, 4, 4, dtype=torch.float64)),
}


def assert_same_graph(a, b):
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("name", sorted(PARITY))
def test_export_gives_the_fx_graph_and_round_trips(name):
    m, x = PARITY[name]()
    by_fx, by_export = nngraph.to_graph(m, x, method="fx"), nngraph.to_graph(m, x, method="export")
    assert_same_graph(by_fx, by_export)
    scrambled = copy.deepcopy(m)
    with torch.no_grad():
        for t in list(scrambled.parameters()) + list(scrambled.buffers()):
            if t.is_floating_point():
                t.copy_(torch.randn_like(t) + 7)
    back = nngraph.from_graph(by_export, scrambled, x, method="export")
    for (key, value), restored in zip(m.state_dict().items(), back.state_dict().values()):
        assert torch.equal(value, restored), key


def test_export_refuses_a_pad_that_no_convolution_owns():
    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3)

        def forward(self, x):
            return F.pad(self.conv(x), (1, 1, 1, 1), mode="reflect")

    with pytest.raises(nngraph.UnsupportedError, match="padding with mode 'reflect'"):
        nngraph.to_graph(Padded(), torch.randn(1, 2, 6, 6), method="export")


def test_export_converts_cross_attention_and_used_attention_weights_op_by_op():
    """Not collapsible into one MultiheadAttention call, they stay ATen operations (converters and the fallback
    take them one by one): sound graphs instead of the refusals they once were."""
    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.kv, self.att = nn.Linear(3, 8), nn.Linear(3, 8), nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            kv = self.kv(x)
            return self.att(self.q(x), kv, kv)[0]

    class Weights(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.att = nn.Linear(3, 8), nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            h = self.inp(x)
            return self.att(h, h, h)[1]

    x = torch.randn(2, 5, 3, dtype=torch.float64)
    nngraph.to_graph(Cross(), x.float(), method="fx")  # fx supports it
    for build in (Cross, Weights):
        torch.manual_seed(0)
        model = build().double().eval()
        report = nngraph.verify(model, (x,), method="export")
        assert report.ok and report.round_trip_error == 0.0, report
        assert nngraph.build_layout(model, (x,), method="export").fallbacks  # some neurons fixed, proven by repair
