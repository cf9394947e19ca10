"""Two different functions never give one graph: activation kinds and parameters (``act``,
``act_args``), poolings (``pool``, ``pool_args``) and convolution geometry (``conv_args``)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.convert import GraphMismatchError
from nngraph.gnn import NeuralGraphEncoder
from nngraph.modules import Sine
from nngraph.schema import CONV_ARGS, POOL_ARGS, Activation, Pool
from nngraph.testing import assert_invariant

from .graph_checks import assert_falls_back, assert_function_preserved, assert_round_trip, assert_same_up_to_relabelling

# ----------------------------------------------------------------------------- models


class Mlp(nn.Module):
    def __init__(self, act: nn.Module, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.act, self.b = nn.Linear(3, 5), act, nn.Linear(5, 2)

    def forward(self, x):  # (B, 3)
        return self.b(self.act(self.a(x)))  # (B, 2)


class PoolNet(nn.Module):
    """conv -> relu -> pool (or pool -> relu) -> 1x1 conv -> global average -> linear: the parameters
    do not depend on the pool."""

    def __init__(self, pool: nn.Module, pool_first: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv, self.pool, self.mix, self.fc = nn.Conv2d(2, 4, 3, padding=1), pool, nn.Conv2d(4, 3, 1), nn.Linear(3, 2)
        self.pool_first = pool_first

    def forward(self, x):  # (B, 2, 8, 8)
        h = self.conv(x)
        h = torch.relu(self.pool(h)) if self.pool_first else self.pool(torch.relu(h))
        return self.fc(F.adaptive_avg_pool2d(self.mix(h), 1).flatten(1))  # (B, 2)


class ReduceNet(nn.Module):
    def __init__(self, op: str, dims=(2, 3), seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv, self.fc = nn.Conv2d(2, 4, 3), nn.Linear(4, 2)
        self.op, self.dims = op, dims

    def forward(self, x):  # (B, 2, 8, 8)
        h = getattr(torch.tanh(self.conv(x)), self.op)(dim=self.dims)  # (B, 4[, 6])
        return self.fc(h if len(self.dims) == 2 else h.mean(-1))  # (B, 2)


def conv_net(seed: int = 0, transposed: bool = False, **kw) -> nn.Module:
    torch.manual_seed(seed)
    conv = nn.ConvTranspose2d(2, 4, 3, **kw) if transposed else nn.Conv2d(2, 4, 3, **kw)
    return nn.Sequential(conv, nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def x_mlp():
    return torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def x_img():
    return torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


ACTS = {
    "relu": nn.ReLU(), "relu6": nn.ReLU6(), "leaky_0.01": nn.LeakyReLU(0.01), "leaky_0.5": nn.LeakyReLU(0.5),
    "gelu": nn.GELU(), "gelu_tanh": nn.GELU("tanh"), "sine_1": Sine(1.0), "sine_30": Sine(30.0), "mish": nn.Mish(),
    "hardswish": nn.Hardswish(), "hardsigmoid": nn.Hardsigmoid(), "sigmoid": nn.Sigmoid(),
    "softplus": nn.Softplus(), "softplus_beta2": nn.Softplus(beta=2.0), "softplus_thr5": nn.Softplus(threshold=5.0),
    "hardtanh": nn.Hardtanh(), "hardtanh_2": nn.Hardtanh(-2.0, 2.0), "hardtanh_0_6": nn.Hardtanh(0.0, 6.0),
    "elu": nn.ELU(), "elu_0.5": nn.ELU(0.5), "celu": nn.CELU(), "celu_0.3": nn.CELU(0.3), "selu": nn.SELU(),
    "logsigmoid": nn.LogSigmoid(), "softshrink": nn.Softshrink(0.5), "softshrink_0.2": nn.Softshrink(0.2),
    "hardshrink": nn.Hardshrink(0.5), "threshold": nn.Threshold(0.1, 0.0), "threshold_v1": nn.Threshold(0.1, 1.0),
    "tanh": nn.Tanh(), "silu": nn.SiLU(),
}

#: (a, b, the fields their graphs differ in)
ACT_PAIRS = [
    ("relu", "relu6", {"act"}), ("leaky_0.01", "leaky_0.5", {"act_args"}), ("gelu", "gelu_tanh", {"act"}),
    ("sine_1", "sine_30", {"act_args"}), ("mish", "hardswish", {"act"}), ("softplus", "softplus_beta2", {"act_args"}),
    ("softplus", "softplus_thr5", {"act_args"}), ("hardtanh", "hardtanh_2", {"act_args"}),
    ("hardtanh", "relu6", {"act", "act_args"}), ("elu", "elu_0.5", {"act_args"}), ("elu", "celu", {"act"}),
    ("celu", "celu_0.3", {"act_args"}), ("selu", "elu", {"act", "act_args"}), ("sigmoid", "hardsigmoid", {"act"}),
    ("softshrink", "softshrink_0.2", {"act_args"}), ("softshrink", "hardshrink", {"act"}),
    ("threshold", "threshold_v1", {"act_args"}), ("logsigmoid", "sigmoid", {"act"}),
]

POOLS = {
    "max2": lambda: PoolNet(nn.MaxPool2d(2)), "max3": lambda: PoolNet(nn.MaxPool2d(3)),
    "max2_s1": lambda: PoolNet(nn.MaxPool2d(2, stride=1)), "max2_d2": lambda: PoolNet(nn.MaxPool2d(2, dilation=2)),
    "max2_ceil": lambda: PoolNet(nn.MaxPool2d(3, stride=2, ceil_mode=True)),
    "max2_floor": lambda: PoolNet(nn.MaxPool2d(3, stride=2)),
    "avg2": lambda: PoolNet(nn.AvgPool2d(2)), "avg3_p1": lambda: PoolNet(nn.AvgPool2d(3, 1, 1)),
    "avg3_p1_nopad": lambda: PoolNet(nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
    "avg2_div3": lambda: PoolNet(nn.AvgPool2d(2, divisor_override=3)),
    "avg2_first": lambda: PoolNet(nn.AvgPool2d(2), pool_first=True),
    "lp2": lambda: PoolNet(nn.LPPool2d(2, 2)), "lp3": lambda: PoolNet(nn.LPPool2d(3, 2)),
    "adaptive_avg2": lambda: PoolNet(nn.AdaptiveAvgPool2d(2)), "adaptive_avg3": lambda: PoolNet(nn.AdaptiveAvgPool2d(3)),
    "adaptive_max2": lambda: PoolNet(nn.AdaptiveMaxPool2d(2)),
    "adaptive_avg_none": lambda: PoolNet(nn.AdaptiveAvgPool2d((None, 2))),
    "mean": lambda: ReduceNet("mean"), "sum": lambda: ReduceNet("sum"), "amax": lambda: ReduceNet("amax"),
    "amin": lambda: ReduceNet("amin"), "mean_h": lambda: ReduceNet("mean", (2,)), "mean_w": lambda: ReduceNet("mean", (3,)),
}

POOL_PAIRS = [
    ("max2", "avg2", {"pool", "pool_args"}), ("max2", "max3", {"pool_args"}), ("max2", "max2_s1", {"pool_args"}),
    ("max2", "max2_d2", {"pool_args"}), ("max2_ceil", "max2_floor", {"pool_args"}),
    ("avg3_p1", "avg3_p1_nopad", {"pool_args"}), ("avg2", "avg2_div3", {"pool_args"}),
    ("avg2", "avg2_first", {"pool_args"}), ("lp2", "lp3", {"pool_args"}), ("avg2", "lp2", {"pool", "pool_args"}),
    ("adaptive_avg2", "adaptive_max2", {"pool"}), ("adaptive_avg2", "adaptive_avg3", {"pool_args"}),
    ("adaptive_avg2", "adaptive_avg_none", {"pool_args"}),
    ("mean", "sum", {"pool"}), ("mean", "amax", {"pool"}), ("amax", "amin", {"pool"}), ("mean_h", "mean_w", {"pool_args"}),
]

CONVS = {
    "plain": {}, "stride2": {"stride": 2}, "dilation2": {"dilation": 2}, "pad1": {"padding": 1}, "pad2": {"padding": 2},
    "pad_10": {"padding": (1, 0)}, "reflect": {"padding": 1, "padding_mode": "reflect"},
    "replicate": {"padding": 1, "padding_mode": "replicate"}, "circular": {"padding": 1, "padding_mode": "circular"},
    "same": {"padding": "same"}, "transposed": {"transposed": True}, "transposed_s2": {"transposed": True, "stride": 2},
    "transposed_op1": {"transposed": True, "stride": 2, "output_padding": 1},
}

CONV_PAIRS = [
    ("plain", "stride2"), ("plain", "dilation2"), ("pad1", "pad2"), ("pad1", "pad_10"), ("pad1", "reflect"),
    ("reflect", "replicate"), ("replicate", "circular"), ("transposed", "transposed_s2"),
    ("transposed_s2", "transposed_op1"),
]

MODELS = {
    **{f"act_{k}": (lambda v=v: Mlp(copy.deepcopy(v)), x_mlp) for k, v in ACTS.items()},
    **{f"pool_{k}": (v, x_img) for k, v in POOLS.items()},
    **{f"conv_{k}": (lambda v=v: conv_net(**v), x_img) for k, v in CONVS.items()},
}


def make(name):
    build, inputs = MODELS[name]
    return build().double().eval(), inputs()


def graph_keys(g):
    """The tensor fields (``num_nodes`` and the recorded ``input_spec`` are compared by their own tests)."""
    return sorted(k for k in g.keys() if k not in ("num_nodes", "input_spec"))


def assert_differ_only_in(g1, g2, fields):
    assert graph_keys(g1) == graph_keys(g2)
    for key in graph_keys(g1):
        same = torch.equal(g1[key], g2[key])
        assert same != (key in fields), f"{key}: {'equal' if same else 'different'}"


# ----------------------------------------------------------------------------- pairs


def encoder():
    torch.manual_seed(1)
    return NeuralGraphEncoder(out_dim=3, hidden_dim=16, num_layers=2).double()


PAIRS = ([("act", a, b, fields, "other activations|activations with other parameters") for a, b, fields in ACT_PAIRS]
         + [("pool", a, b, fields, "poolings") for a, b, fields in POOL_PAIRS]
         + [("conv", a, b, {"conv_args"}, "convolutions with other strides") for a, b in CONV_PAIRS])


@pytest.mark.parametrize("family, a, b, fields, refusal", PAIRS, ids=[f"{f}-{a}-{b}" for f, a, b, _, _ in PAIRS])
def test_pairs_differ_in_their_record_only(family, a, b, fields, refusal):
    """Two functions of one family give graphs that differ only in the record of the difference,
    ``from_graph`` refuses one into the other, and the encoder tells them apart."""
    (ma, x), (mb, _) = make(f"{family}_{a}"), make(f"{family}_{b}")
    ga, gb = nngraph.to_graph(ma, x), nngraph.to_graph(mb, x)
    assert_differ_only_in(ga, gb, fields)
    with pytest.raises(GraphMismatchError, match=refusal):
        nngraph.from_graph(ga, mb, x)
    enc = encoder()
    assert (enc(ga) - enc(gb)).abs().max() > 1e-6


def test_relu_graph_into_a_tanh_model_is_refused():
    x = x_mlp()
    g = nngraph.to_graph(make("act_relu")[0], x)
    with pytest.raises(GraphMismatchError, match="other activations"):
        nngraph.from_graph(g, make("act_tanh")[0], x)


def test_spellings_of_one_function_give_one_graph():
    x = x_mlp()
    g = lambda name: nngraph.to_graph(make(name)[0], x)  # noqa: E731
    assert_differ_only_in(g("act_hardtanh_0_6"), g("act_relu6"), set())

    class Functional(nn.Module):
        def __init__(self, fn):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b, self.fn = nn.Linear(3, 5), nn.Linear(5, 2), fn

        def forward(self, x):
            return self.b(self.fn(self.a(x)))

    cases = [(lambda h: F.leaky_relu(h, 0.5), "act_leaky_0.5"), (lambda h: F.gelu(h, approximate="tanh"), "act_gelu_tanh"),
             (lambda h: F.softplus(h, 2.0), "act_softplus_beta2"), (lambda h: F.hardtanh(h, -2.0, 2.0), "act_hardtanh_2"),
             (lambda h: F.relu6(h), "act_relu6"), (lambda h: F.threshold(h, 0.1, 1.0), "act_threshold_v1"),
             (lambda h: F.elu(h, 0.5, False), "act_elu_0.5"), (lambda h: F.celu(h, alpha=0.3), "act_celu_0.3")]
    for fn, name in cases:
        assert_differ_only_in(nngraph.to_graph(Functional(fn).double(), x), g(name), set())


def test_recorded_values():
    x = x_mlp()
    g = nngraph.to_graph(make("act_softplus_thr5")[0], x)
    hidden = g.node_type == 1
    assert (g.act[hidden] == Activation.SOFTPLUS).all()
    assert g.act_args[hidden].tolist() == [[1.0, 5.0]] * 5 and not g.act_args[~hidden].any()
    g = nngraph.to_graph(make("pool_max2_s1")[0], x_img())
    pooled = g.pool[:, 0] == Pool.MAX
    assert int(pooled.sum()) == 4 and (g.pool[pooled, 1:] == 0).all()
    row = dict(zip(POOL_ARGS, g.pool_args[pooled][0, 0].tolist()))
    assert (row["kernel_h"], row["kernel_w"], row["stride_w"], row["kernel_d"], row["after_act"]) == (2, 2, 1, 1, 1)
    g = nngraph.to_graph(make("conv_same")[0], x_img())
    conv = dict(zip(CONV_ARGS, g.conv_args[2].tolist()))  # node 2: the first conv channel
    assert (conv["stride_w"], conv["pad_before_w"], conv["pad_after_w"], conv["dilation_d"]) == (1, 1, 1, 1)
    g = nngraph.to_graph(make("conv_transposed_op1")[0], x_img())
    conv = dict(zip(CONV_ARGS, g.conv_args[2].tolist()))
    assert (conv["transposed"], conv["stride_h"], conv["output_padding_w"]) == (1, 2, 1)


def test_pool_of_a_value_used_unpooled_gets_its_own_neurons():
    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.a, self.b = nn.Conv2d(2, 4, 3), nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.conv(x))  # (B, 4, 6, 6)
            return self.a(h.amax(dim=(2, 3))) + self.b(h.mean(dim=(2, 3)))

    m, x = Both().double(), x_img()
    g = assert_round_trip(m, x)
    from nngraph.schema import NodeKind
    pools = g.node_kind == NodeKind.POOL
    assert int(pools.sum()) == 8 and sorted(g.pool[pools, 0].unique().tolist()) == [Pool.MEAN, Pool.AMAX]
    assert not g.pool[~pools].any()  # the relu'd conv channels themselves are not pooled
    permuted, perm = nngraph.random_hidden_permutation(m, torch.Generator().manual_seed(0), x)
    assert_function_preserved(m, permuted, x)
    assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)


def test_more_than_three_pools_in_a_row_fall_back():
    m = nn.Sequential(nn.Conv3d(1, 2, 1), nn.MaxPool3d(1), nn.MaxPool3d(1), nn.MaxPool3d(1), nn.MaxPool3d(1))
    assert_falls_back(m, torch.randn(1, 1, 2, 2, 2), match="more than 3 poolings")


# ----------------------------------------------------------------------------- soundness


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_permutation_and_invariance(name):
    m, x = make(name)
    assert_round_trip(m, x)
    permuted, perm = nngraph.random_hidden_permutation(m, torch.Generator().manual_seed(0), x)
    hidden = nngraph.build_layout(m, (x,)).symmetries[0].rows.reshape(-1)
    assert not torch.equal(perm[hidden], hidden)  # something moved
    assert_function_preserved(m, permuted, x)
    assert_same_up_to_relabelling(nngraph.to_graph(m, x), nngraph.to_graph(permuted, x), perm)
    assert assert_invariant(encoder(), m, (x,), generator=torch.Generator().manual_seed(2)) < 1e-10


def test_encoder_reads_graphs_without_the_new_fields_as_zeros():
    m, x = make("act_relu")
    g = nngraph.to_graph(m, x)
    old = g.clone()
    for key in ("act_args", "conv_args", "pool", "pool_args"):
        del old[key]
    enc = encoder()
    assert torch.equal(enc(g), enc(old))
    g.act_args = g.act_args + 1.0
    assert (enc(g) - enc(old)).abs().max() > 1e-6


# ----------------------------------------------------------------------------- fallbacks


def test_unknown_activations_fall_back_by_name():
    class ClampedReLU(nn.ReLU):
        def forward(self, x):
            return torch.clamp(x, min=0.1)

    cases = [(ClampedReLU(), "clamp"), (nn.Softsign(), "Softsign"), (nn.Tanhshrink(), "Tanhshrink"),
             (nn.PReLU(), "PReLU"), (nn.RReLU(), "RReLU")]
    for act, name in cases:
        assert_falls_back(Mlp(act), torch.randn(2, 3), match=f"(?i){name}")  # the module's or function's name
    # Softsign exports as abs / add / div
    assert_falls_back(Mlp(nn.Softsign()), torch.randn(2, 3), match="abs", method="export")


def test_transformer_feed_forward_activation_is_recorded():
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    layer = lambda act: nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, activation=act, batch_first=True)  # noqa: E731
    torch.manual_seed(0)
    g1 = nngraph.to_graph(layer(nn.LeakyReLU(0.2)).double().eval(), x)
    torch.manual_seed(0)
    g2 = nngraph.to_graph(layer(nn.LeakyReLU(0.3)).double().eval(), x)
    assert_differ_only_in(g1, g2, {"act_args"})
    assert sorted(g1.act_args[g1.act == Activation.LEAKY_RELU, 0].unique().tolist()) == [0.2]
    assert_falls_back(layer(nn.Softsign()).eval(), x.float(), match="TransformerEncoderLayer")
