"""ResNets built without torchvision: a narrow one for symmetries (default run), the ResNet-18-sized
one for size (``-m slow``)."""
import time

import pytest
import torch

import nngraph
from benchmarks.resnet import ResNet, resnet18
from nngraph.schema import EdgeType, NodeKind

from .graph_checks import assert_function_preserved, assert_round_trip, assert_same_up_to_relabelling


@pytest.mark.parametrize("norm", [False, True])
def test_narrow_resnet_round_trip_and_random_symmetry(norm):
    torch.manual_seed(0)
    model = ResNet(widths=(4, 6, 8, 8), blocks=(2, 1, 1, 2), num_classes=5, norm=norm).double().eval()
    if norm:  # non-trivial running statistics, so that permuting them matters
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    g = assert_round_trip(model, x)
    assert {tuple(v) for v in g.kernel_shape.tolist()} == {(1, 7, 7), (1, 3, 3), (1, 1, 1)}  # stem, blocks, the rest
    # one residual sum per block (blocks 2, 1, 1, 2 of widths 4, 6, 8, 8), 2 identity edges per summed channel
    sums = g.node_kind == NodeKind.SUM
    assert int(sums.sum()) == 2 * 4 + 6 + 8 + 2 * 8
    assert int((g.edge_type == EdgeType.RESIDUAL).sum()) == 2 * int(sums.sum())
    for seed in range(2):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), x)
        assert_function_preserved(model, permuted, x)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)
        assert not torch.equal(perm, torch.arange(perm.numel()))


@pytest.mark.slow  # 4 s on an idle machine, 13 s when the 2 cores are shared; about 600 MiB
def test_resnet18_converts_and_round_trips():
    torch.manual_seed(0)
    model = resnet18().eval()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    x = torch.randn(1, 3, 64, 64)
    start = time.perf_counter()
    g = assert_round_trip(model, x)
    assert time.perf_counter() - start < 60
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert g.num_edges == sum(c.in_channels * c.out_channels for c in convs) + 512 * 1000 + \
        sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)) + \
        2 * int((g.node_kind == NodeKind.SUM).sum())
    # every kernel at its own size: one row per weight, plus a 1 per identity edge (norms, residual sums)
    identity = int((g.edge_type != EdgeType.WEIGHT).sum())
    weights = sum(c.weight.numel() for c in convs) + model.fc.weight.numel()
    assert g.edge_attr.shape == (weights + identity, 1)
