"""Convolutions: against a slow reference loop, round trips, hand-written and random permutations."""
import itertools

import pytest
import torch
from torch import nn

import nngraph
from nngraph.schema import BIAS, EdgeType, NodeKind, NodeType

from .graph_checks import (
    assert_falls_back,
    assert_function_preserved,
    assert_round_trip,
    assert_same_up_to_relabelling,
    edge_dict,
    nodes_of,
)


# ----------------------------------------------------------------------------- reference


def reference_conv_graph(convs: list[nn.Module]):
    """Slow and obvious: a chain of convolutions, one loop over every weight and kernel position.
    Every edge carries its kernel at its own shape, padded to three dimensions."""
    shapes = [(1,) * (3 - len(c.kernel_size)) + tuple(c.kernel_size) for c in convs]
    layer_nodes, next_id = [], 0
    for size in [convs[0].in_channels] + [c.out_channels for c in convs]:
        layer_nodes.append(list(range(next_id, next_id + size)))
        next_id += size
    edges, bias = {}, torch.zeros(next_id)
    for k, (conv, shape) in enumerate(zip(convs, shapes)):
        cin_g, cout_g = conv.in_channels // conv.groups, conv.out_channels // conv.groups
        for o in range(conv.out_channels):
            if conv.bias is not None:
                bias[layer_nodes[k + 1][o]] = conv.bias[o]
            for j in range(cin_g):
                i = (o // cout_g) * cin_g + j
                kernel = torch.full(shape, float("nan"))
                for pos in itertools.product(*[range(s) for s in conv.kernel_size]):
                    d, h, w = (0,) * (3 - len(pos)) + pos
                    kernel[d, h, w] = conv.weight[(o, j) + pos]
                edges[(layer_nodes[k][i], layer_nodes[k + 1][o], int(EdgeType.WEIGHT))] = kernel.reshape(-1)
    return edges, bias


CHAINS = {
    "conv1d": lambda: [nn.Conv1d(3, 4, 5, stride=2, padding=1), nn.Conv1d(4, 2, 3, dilation=2)],
    "conv2d_mixed": lambda: [nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 4, (5, 2), groups=2), nn.Conv2d(4, 2, 1)],
    "depthwise": lambda: [nn.Conv2d(2, 6, 3), nn.Conv2d(6, 6, 3, groups=6, bias=False), nn.Conv2d(6, 12, 3, groups=3)],
    "conv3d": lambda: [nn.Conv3d(2, 3, (3, 1, 2)), nn.Conv3d(3, 2, 2, stride=(1, 2, 1))],
}


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_conv_against_reference_loop(chain):
    torch.manual_seed(0)
    convs = CHAINS[chain]()
    g = nngraph.to_graph(nn.Sequential(*convs))
    edges, bias = reference_conv_graph(convs)
    got = edge_dict(g)
    assert got.keys() == edges.keys()
    for key, kernel in edges.items():
        assert torch.equal(got[key], kernel), key
    assert torch.equal(g.x[:, BIAS], bias)
    assert (g.node_kind[convs[0].in_channels:] == NodeKind.CONV).all()


def test_conv_fields_and_kernel_shapes():
    model = nn.Sequential(nn.Conv2d(3, 8, 5), nn.ReLU(), nn.Conv2d(8, 4, 3, groups=4))
    g = nngraph.to_graph(model)
    assert g.num_nodes == 3 + 8 + 4 and g.num_edges == 3 * 8 + 4 * 2
    # every kernel at its own size, one after another: 24 5x5 kernels, then 8 3x3 ones, no padding
    assert g.kernel_shape.tolist() == [[1, 5, 5]] * 24 + [[1, 3, 3]] * 8
    assert g.edge_attr.shape == (24 * 25 + 8 * 9, 1) and "kernel_box" not in g
    assert (g.node_type == NodeType.INPUT).sum() == 3 and (g.node_type == NodeType.OUTPUT).sum() == 4
    assert g.layer.tolist() == [0] * 3 + [1] * 8 + [2] * 4
    second = g.edge_attr[24 * 25:].view(4, 2, 3, 3)  # (C_out, C_in / g, 3, 3): the grouped weight as stored
    assert torch.equal(second, model[2].weight.detach())


# ----------------------------------------------------------------------------- round trips

ROUND_TRIPS = {
    "conv1d_stride_pad": (lambda: nn.Conv1d(3, 5, 4, stride=2, padding=3), (2, 3, 17)),
    "conv1d_dilation_circular": (lambda: nn.Conv1d(4, 4, 3, dilation=2, padding=2, padding_mode="circular"), (2, 4, 12)),
    "conv2d_same_reflect": (lambda: nn.Conv2d(3, 6, (3, 5), padding="same", padding_mode="reflect"), (2, 3, 9, 9)),
    "conv2d_groups_nobias": (lambda: nn.Conv2d(4, 6, 3, stride=(2, 1), groups=2, bias=False), (2, 4, 10, 10)),
    "conv2d_depthwise": (lambda: nn.Conv2d(5, 5, 3, groups=5, padding=1), (2, 5, 8, 8)),
    "conv2d_depthwise_multiplier": (lambda: nn.Conv2d(3, 6, 3, groups=3, dilation=2), (2, 3, 9, 9)),
    "conv3d": (lambda: nn.Conv3d(2, 4, (3, 2, 2), stride=2, padding=1, padding_mode="replicate"), (2, 2, 6, 6, 6)),
    "conv3d_groups": (lambda: nn.Conv3d(4, 4, 3, groups=2), (1, 4, 5, 5, 5)),
    "conv_transpose1d": (lambda: nn.ConvTranspose1d(3, 4, 3, stride=2, output_padding=1), (2, 3, 7)),
    "conv_transpose2d_groups": (lambda: nn.ConvTranspose2d(4, 6, 3, groups=2, stride=2), (2, 4, 5, 5)),
    "conv_transpose3d": (lambda: nn.ConvTranspose3d(2, 3, 2, dilation=2), (1, 2, 4, 4, 4)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", sorted(ROUND_TRIPS))
def test_conv_round_trip_bit_for_bit(case, dtype):
    torch.manual_seed(0)
    make, shape = ROUND_TRIPS[case]
    conv = make()
    model = nn.Sequential(conv, nn.ReLU(), type(conv)(conv.out_channels, 2, 1)).to(dtype)
    g = assert_round_trip(model, torch.randn(*shape, dtype=dtype))
    cin_g = conv.in_channels // conv.groups
    assert g.num_edges == conv.out_channels * cin_g + conv.out_channels * 2
    assert g.edge_attr.dtype == dtype


def test_conv_transpose_edges_follow_groups():
    conv = nn.ConvTranspose2d(4, 6, 2, groups=2)
    g = nngraph.to_graph(nn.Sequential(conv), torch.randn(1, 4, 3, 3))
    pairs = set(zip(g.edge_index[0].tolist(), g.edge_index[1].tolist()))
    # in-channels 0, 1 feed out-channels 0..2 (nodes 4..6); in-channels 2, 3 feed 3..5 (nodes 7..9)
    assert pairs == {(i, 4 + o) for i in range(2) for o in range(3)} | {(i, 7 + o) for i in (2, 3) for o in range(3)}
    edges = edge_dict(g)
    assert torch.equal(edges[(3, 8, 0)], conv.weight[3, 1].detach().reshape(-1))  # the 2x2 kernel as it is


# ----------------------------------------------------------------------------- permutations


class CNN(nn.Module):
    def __init__(self, k=3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, k, padding=k // 2)
        self.conv2 = nn.Conv2d(8, 6, k, padding=k // 2)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):  # (B, 3, 8, 8)
        h = self.pool(torch.relu(self.conv1(x)))  # (B, 8, 4, 4)
        h = torch.relu(self.conv2(h))  # (B, 6, 4, 4)
        return self.fc(torch.flatten(h, 1))  # (B, 96) -> (B, 5)


class ResidualCNN(nn.Module):
    def __init__(self, c=6, hidden=10):
        super().__init__()
        self.stem = nn.Conv2d(2, c, 3, padding=1)
        self.a1, self.a2 = nn.Conv2d(c, hidden, 3, padding=1), nn.Conv2d(hidden, c, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(c, hidden, 1), nn.Conv2d(hidden, c, 3, padding=1)
        self.head = nn.Linear(c, 3)

    def forward(self, x):  # (B, 2, H, W)
        h = self.stem(x)  # (B, c, H, W)
        h = h + self.a2(torch.relu(self.a1(h)))
        h = h + self.b2(torch.relu(self.b1(torch.relu(h))))
        return self.head(h.mean(dim=(2, 3)))  # (B, c) -> (B, 3)


def _permute_conv(dst: nn.Module, src: nn.Module, out_perm=None, in_perm=None) -> None:
    w, b = src.weight, src.bias
    if out_perm is not None:
        w, b = w[out_perm], b[out_perm]
    if in_perm is not None:
        w = w[:, in_perm]
    dst.weight.copy_(w)
    dst.bias.copy_(b)


def _relabel(perm: torch.Tensor, nodes: torch.Tensor, p: torch.Tensor) -> None:
    perm[nodes[p]] = nodes  # neuron p[j] of the original is neuron j of the permuted model


def test_hand_permuted_cnn_gives_relabelled_graph():
    torch.manual_seed(0)
    m, pm = CNN().double(), CNN().double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    p1, p2 = torch.randperm(8), torch.randperm(6)
    with torch.no_grad():
        _permute_conv(pm.conv1, m.conv1, out_perm=p1)
        _permute_conv(pm.conv2, m.conv2, out_perm=p2, in_perm=p1)
        fc = m.fc.weight.view(5, 6, 16)[:, p2].reshape(5, 96)  # (out, C, H*W): channels permuted
        pm.fc.weight.copy_(fc)
        pm.fc.bias.copy_(m.fc.bias)
    assert_function_preserved(m, pm, x)
    g1, g2 = nngraph.to_graph(m, x), nngraph.to_graph(pm, x)
    assert {tuple(s) for s in g1.kernel_shape.tolist()} == {(1, 3, 3), (1, 4, 4)}  # the convs and the 4x4 flattened map
    perm = torch.arange(g1.num_nodes)
    _relabel(perm, nodes_of(m, "conv1", x), p1)
    _relabel(perm, nodes_of(m, "conv2", x), p2)
    assert_same_up_to_relabelling(g1, g2, perm)
    wrong = perm.clone()
    hidden = nodes_of(m, "conv2", x)[:2]
    wrong[hidden] = wrong[hidden.flip(0)]
    with pytest.raises(AssertionError):
        assert_same_up_to_relabelling(g1, g2, wrong)


def test_hand_permuted_residual_cnn_gives_relabelled_graph():
    torch.manual_seed(1)
    m, pm = ResidualCNN().double(), ResidualCNN().double()
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    p, q, r = torch.randperm(6), torch.randperm(10), torch.randperm(10)  # stream, block a, block b
    with torch.no_grad():
        _permute_conv(pm.stem, m.stem, out_perm=p)
        _permute_conv(pm.a1, m.a1, out_perm=q, in_perm=p)
        _permute_conv(pm.a2, m.a2, out_perm=p, in_perm=q)
        _permute_conv(pm.b1, m.b1, out_perm=r, in_perm=p)
        _permute_conv(pm.b2, m.b2, out_perm=p, in_perm=r)
        pm.head.weight.copy_(m.head.weight[:, p])
        pm.head.bias.copy_(m.head.bias)
    assert_function_preserved(m, pm, x)
    g1, g2 = nngraph.to_graph(m, x), nngraph.to_graph(pm, x)
    perm = torch.arange(g1.num_nodes)
    layout = nngraph.build_layout(m, (x,))
    stream = [layout.module_nodes[n] for n in ("stem", "a2", "b2")]
    sums = (g1.node_kind == NodeKind.SUM).nonzero().view(-1)  # (2 * 6,)
    sum_layers = g1.layer[sums]
    stream += [sums[sum_layers == layer] for layer in sum_layers.unique()]
    # relu(h) before b1 is used raw too (the residual), so it gets ACTIVATION copies of the stream
    stream.append((g1.node_kind == NodeKind.ACTIVATION).nonzero().view(-1))
    assert len(stream) == 6 and all(s.numel() == 6 for s in stream)
    for nodes in stream:
        _relabel(perm, nodes, p)
    _relabel(perm, layout.module_nodes["a1"], q)
    _relabel(perm, layout.module_nodes["b1"], r)
    assert_same_up_to_relabelling(g1, g2, perm)


@pytest.mark.parametrize("make, shape", [
    (CNN, (3, 3, 8, 8)),
    (ResidualCNN, (3, 2, 5, 5)),
    (lambda: nn.Sequential(nn.Conv1d(2, 4, 3), nn.Tanh(), nn.Conv1d(4, 4, 3, groups=4), nn.GELU(),
                           nn.Conv1d(4, 4, 1, groups=2), nn.ReLU(), nn.Conv1d(4, 1, 1)), (3, 2, 9)),
    (lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.ConvTranspose2d(4, 5, 3, stride=2), nn.ReLU(),
                           nn.Conv2d(5, 1, 1)), (2, 2, 6, 6)),
])
def test_random_hidden_permutation_on_cnns(make, shape):
    torch.manual_seed(2)
    model = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    changed = False
    for seed in range(3):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), x)
        assert_function_preserved(model, permuted, x)
        assert_same_up_to_relabelling(nngraph.to_graph(model, x), nngraph.to_graph(permuted, x), perm)
        changed |= not torch.equal(perm, torch.arange(perm.numel()))
    assert changed


def test_grouped_conv_symmetries_keep_groups():
    """Depthwise ties its in- and out-channels; a channel multiplier freezes both spaces."""
    depthwise = nn.Sequential(nn.Conv2d(2, 4, 1), nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 1, 1))
    layout = nngraph.build_layout(depthwise, (torch.randn(1, 2, 5, 5),))
    assert len(layout.symmetries) == 1 and layout.symmetries[0].rows.shape == (2, 4)
    grouped = nn.Sequential(nn.Conv2d(2, 4, 1), nn.Conv2d(4, 6, 3, groups=2), nn.Conv2d(6, 1, 1))
    layout = nngraph.build_layout(grouped, (torch.randn(1, 2, 5, 5),))
    assert layout.symmetries == ()
    same = nn.Sequential(nn.Conv2d(2, 4, 1), nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 1, 1))
    layout = nngraph.build_layout(same, (torch.randn(1, 2, 5, 5),))
    assert len(layout.symmetries) == 1 and layout.symmetries[0].block_size == 2


# ----------------------------------------------------------------------------- errors


class ChannelSlice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.out = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.out(self.conv(x)[:, :3])


def test_channel_indexing_fixes_the_channels_and_stays_sound():
    model, x = ChannelSlice(), torch.randn(1, 3, 8, 8)
    layout = nngraph.build_layout(model, (x,))
    assert layout.symmetries == ()
    g = nngraph.to_graph(model, x)
    reads = g.edge_index[0][g.edge_index[1] == layout.module_nodes["out"][0]]
    assert torch.equal(reads, layout.module_nodes["conv"][:3])
    assert nngraph.verify(model, x).ok


def test_sorting_channels_falls_back_with_the_operation_named():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 3, 1), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.b(torch.sort(self.a(x), dim=1).values)

    assert_falls_back(M(), torch.randn(1, 2, 4, 4), match=r"sort at fx node .*: opaque")
