"""Pooling and spatial reductions, flatten heads after convolutions, and batching kernel boxes."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch

import nngraph
from nngraph.schema import EdgeType

from .graph_checks import (
    assert_falls_back,
    assert_function_preserved,
    assert_round_trip,
    assert_same_up_to_relabelling,
    edge_dict,
    nodes_of,
)


class ConvPool(nn.Module):
    """conv -> relu -> pool -> conv (1x1): the pool's neurons are the first conv's channels."""

    def __init__(self, pool, dims=2):
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        self.conv, self.pool, self.out = conv(2, 4, 3, padding=1), pool, conv(4, 3, 1)

    def forward(self, x):
        return self.out(self.pool(torch.relu(self.conv(x))))


POOLS = {
    "max1d": (nn.MaxPool1d(2), 1), "max2d": (nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), 2),
    "max3d": (nn.MaxPool3d(2), 3), "avg1d": (nn.AvgPool1d(3, stride=1), 1),
    "avg2d": (nn.AvgPool2d(2, count_include_pad=False, padding=1), 2), "avg3d": (nn.AvgPool3d(2), 3),
    "adaptive_avg1d": (nn.AdaptiveAvgPool1d(3), 1), "adaptive_avg2d": (nn.AdaptiveAvgPool2d((1, 2)), 2),
    "adaptive_avg3d": (nn.AdaptiveAvgPool3d(1), 3), "adaptive_max1d": (nn.AdaptiveMaxPool1d(2), 1),
    "adaptive_max2d": (nn.AdaptiveMaxPool2d(3), 2), "adaptive_max3d": (nn.AdaptiveMaxPool3d((1, 2, 2)), 3),
    "lp2d": (nn.LPPool2d(2, 2), 2),
}


@pytest.mark.parametrize("case", sorted(POOLS))
def test_pool_modules_keep_the_channel_nodes(case):
    torch.manual_seed(0)
    pool, dims = POOLS[case]
    x = torch.randn(2, 2, *[6] * dims)
    g = assert_round_trip(ConvPool(pool, dims), x)
    without = nngraph.to_graph(ConvPool(nn.Identity(), dims), x)
    assert g.num_nodes == without.num_nodes == 2 + 4 + 3 and g.num_edges == without.num_edges == 8 + 12
    assert torch.equal(g.edge_index, without.edge_index) and torch.equal(g.layer, without.layer)


class Functional(nn.Module):
    def __init__(self, fn, dims=2, rest=None):
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        self.conv, self.fn, self.out = conv(2, 4, 3), fn, nn.Linear(4, 3)
        self.rest = tuple(range(2, 2 + dims)) if rest is None else rest  # spatial dims left after fn

    def extra_repr(self) -> str:  # the layout cache keys on repr: tell the variants apart
        return f"fn={self.fn!r}, rest={self.rest}"

    def forward(self, x):
        h = self.fn(torch.tanh(self.conv(x)))  # (B, 4, *S')
        if self.rest:
            h = h.mean(dim=self.rest)  # (B, 4)
        return self.out(h)  # (B, 3)


FUNCTIONS = {
    "max_pool1d": (lambda h: F.max_pool1d(h, 2), 1),
    "max_pool2d": (lambda h: F.max_pool2d(h, 2, stride=1), 2),
    "max_pool3d": (lambda h: F.max_pool3d(h, 2), 3),
    "avg_pool1d": (lambda h: F.avg_pool1d(h, 2), 1),
    "avg_pool2d": (lambda h: F.avg_pool2d(h, kernel_size=2), 2),
    "avg_pool3d": (lambda h: F.avg_pool3d(h, 2), 3),
    "adaptive_avg_pool2d": (lambda h: F.adaptive_avg_pool2d(h, 2), 2),
    "adaptive_max_pool1d": (lambda h: F.adaptive_max_pool1d(h, 1), 1),
    "adaptive_max_pool3d": (lambda h: F.adaptive_max_pool3d(h, 1), 3),
    "sum_keepdim": (lambda h: h.sum(dim=(2, 3), keepdim=True), 2),
    "torch_sum": (lambda h: torch.sum(h, -1), 2, (2,)),
    "torch_mean_dim2": (lambda h: torch.mean(h, dim=[2]), 1, ()),
    "amax": (lambda h: h.amax(dim=(-1,)), 1, ()),
    "torch_amin": (lambda h: torch.amin(h, 2, True), 2),
    "mean_sum_amax_3d": (lambda h: h.mean(3).sum(-1).amax(2), 3, ()),
}


@pytest.mark.parametrize("case", sorted(FUNCTIONS))
def test_functional_pools_and_reductions_round_trip(case):
    torch.manual_seed(0)
    fn, dims, *rest = FUNCTIONS[case]
    x = torch.randn(2, 2, *[6] * dims)
    g = assert_round_trip(Functional(fn, dims, *rest), x)
    assert g.num_nodes == 2 + 4 + 3 and g.num_edges == 8 + 12


def test_reductions_over_neurons_fall_back():
    cases = [(lambda h: h.mean(1), "dimension 1, which holds the neurons"),  # (B, 4, 4, 4) -> (B, 4, 4)
             (lambda h: torch.sum(h, dim=(-3, -1)), "dimension 1, which holds the neurons"),  # -> (B, 4)
             (lambda h: h.sum().expand(2, 4), "every dimension")]  # -> () -> (2, 4)
    for fn, words in cases:
        assert_falls_back(Functional(fn, 2, ()), torch.randn(2, 2, 6, 6), match=words)


def test_max_pool_with_indices_falls_back():
    class WithIndices(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pool = nn.Conv2d(2, 4, 1), nn.MaxPool2d(2, return_indices=True)

        def forward(self, x):
            return self.pool(self.conv(x))[0]

    assert_falls_back(WithIndices(), torch.randn(1, 2, 4, 4), match="returns the indices")


# ----------------------------------------------------------------------------- flatten heads


class FlattenHead(nn.Module):
    def __init__(self, k=3, pool=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, k, padding=k // 2)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        side = 4 if pool else 8
        self.fc = nn.Linear(4 * side * side, 5)

    def forward(self, x):  # (B, 3, 8, 8)
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))  # (B, 4 * S * S) -> (B, 5)


def reference_flatten_head(model: FlattenHead, side: int):
    """Slow and obvious: fc edge (channel c -> output o) carries fc.weight[o, c*S*S + h*S + w] at (h, w)
    of an S x S kernel; conv edge (i -> c) carries its k x k kernel."""
    conv_nodes = list(range(3, 7))
    fc_nodes = list(range(7, 12))
    edges = {}
    k = model.conv.kernel_size[0]
    for c, i in itertools.product(range(4), range(3)):
        kernel = torch.full((1, k, k), float("nan"))
        for h, w in itertools.product(range(k), range(k)):
            kernel[0, h, w] = model.conv.weight[c, i, h, w]
        edges[(i, conv_nodes[c], int(EdgeType.WEIGHT))] = kernel.reshape(-1)
    for o, c in itertools.product(range(5), range(4)):
        kernel = torch.full((1, side, side), float("nan"))
        for h, w in itertools.product(range(side), range(side)):
            kernel[0, h, w] = model.fc.weight[o, c * side * side + h * side + w]
        edges[(conv_nodes[c], fc_nodes[o], int(EdgeType.WEIGHT))] = kernel.reshape(-1)
    return edges


@pytest.mark.parametrize("k, pool", [(3, False), (5, True), (3, True)])
def test_flatten_head_against_reference_loop(k, pool):
    torch.manual_seed(0)
    model = FlattenHead(k, pool)
    x = torch.randn(2, 3, 8, 8)
    g = assert_round_trip(model, x)
    side = 4 if pool else 8
    # the conv's k x k kernels, then the fc's S x S spatial maps, each at its own size
    assert g.kernel_shape.tolist() == [[1, k, k]] * 12 + [[1, side, side]] * 20
    expected = reference_flatten_head(model, side)
    got = edge_dict(g)
    assert got.keys() == expected.keys()
    for key, kernel in expected.items():
        assert torch.equal(got[key], kernel), key


def test_flatten_head_permutation_and_deprecated_kernel_box():
    torch.manual_seed(1)
    model = FlattenHead(3, pool=True).double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(0), x)
    assert_function_preserved(model, permuted, x)
    assert_same_up_to_relabelling(nngraph.to_graph(model, x), nngraph.to_graph(permuted, x), perm)
    hidden = nodes_of(model, "conv", x)
    assert not torch.equal(perm[hidden], hidden)
    with pytest.warns(DeprecationWarning, match="kernel_box"):
        g = nngraph.to_graph(model, x, kernel_box=(3, 9, 9))
    assert torch.equal(g.edge_attr, nngraph.to_graph(model, x).edge_attr)  # nothing is padded
    back = nngraph.from_graph(g, model, x)
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


# ----------------------------------------------------------------------------- batching


class GapCNN(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 3, k, padding=k // 2), nn.Conv2d(3, 2, k)
        self.fc = nn.Linear(2, 4)

    def forward(self, x):
        h = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        return self.fc(F.adaptive_avg_pool2d(torch.relu(self.conv2(h)), 1).flatten(1))


def test_batching_3x3_and_5x5_cnns_keeps_every_kernel_at_its_size():
    torch.manual_seed(0)
    small, large = GapCNN(3), GapCNN(5)
    x = torch.randn(1, 1, 12, 12)
    g3, g5 = nngraph.to_graph(small, x), nngraph.to_graph(large, x)
    assert g3.kernel_shape.amax(0).tolist() == [1, 3, 3] and g5.kernel_shape.amax(0).tolist() == [1, 5, 5]
    batch = Batch.from_data_list([g3, g5])
    assert batch.num_graphs == 2
    assert torch.equal(batch.edge_attr, torch.cat([g3.edge_attr, g5.edge_attr]))  # (W3 + W5, 1), no padding
    assert torch.equal(batch.kernel_shape, torch.cat([g3.kernel_shape, g5.kernel_shape]))
    assert batch.edge_attr.shape == ((3 + 6) * 9 + 8 + (3 + 6) * 25 + 8, 1)
    assert torch.equal(batch.edge_attr[:27].view(3, 3, 3), small.conv1.weight.detach()[:, 0])  # conv1, as stored
    # the linear head's 1x1 kernels are single rows: edge o * 2 + c carries weight[o, c]
    assert torch.equal(batch.edge_attr[(3 + 6) * 9:(3 + 6) * 9 + 8, 0], small.fc.weight.detach().reshape(-1))
    # each graph comes back out of the batch and converts back exactly
    for model, g in zip((small, large), batch.to_data_list()):
        back = nngraph.from_graph(g, model, x)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))


def test_unbatched_input_keeps_channels_on_axis_0():
    torch.manual_seed(0)
    g = assert_round_trip(ConvPool(nn.AvgPool2d(2)), torch.randn(2, 6, 6))
    assert g.num_nodes == 2 + 4 + 3


def test_flattened_global_pool_is_plain_features():
    """(B, C, 1, 1) -> flatten -> (B, C): one value per neuron, so per-neuron layers may follow."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(4),
                          nn.Linear(4, 2)).eval()
    g = assert_round_trip(model, torch.randn(2, 3, 6, 6))
    assert g.kernel_shape.amax(0).tolist() == [1, 3, 3] and g.num_nodes == 3 + 4 + 4 + 2
    assert g.kernel_shape[-8:].eq(1).all()  # the linear edges after the pool carry single weights
