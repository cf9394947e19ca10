"""Kernels stored at their own size: exact round trips over mixed kernel shapes, and graph size."""
import pytest
import torch
from torch import nn

import nngraph
from benchmarks.resnet import ResNet
from nngraph.kernels import edge_kernels, kernel_offsets, reorder_kernels

from .graph_checks import assert_function_preserved, assert_round_trip, assert_same_up_to_relabelling


class MixedCNN(nn.Module):
    """A 7x7 stem, then 5x5, 3x3 and 1x1 convs (one with an even 2x4 kernel), a flatten head whose
    edges carry 3x3 spatial maps, and a plain Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 7, stride=2, padding=3)
        self.c5, self.c3 = nn.Conv2d(4, 5, 5, padding=2), nn.Conv2d(5, 6, 3)
        self.c1, self.even = nn.Conv2d(6, 6, 1), nn.Conv2d(6, 3, (2, 4))
        self.fc, self.out = nn.Linear(3 * 3 * 3, 7), nn.Linear(7, 2)

    def forward(self, x):  # (B, 3, 16, 16)
        h = torch.relu(self.stem(x))  # (B, 4, 8, 8)
        h = torch.relu(self.c3(torch.tanh(self.c5(h))))  # (B, 6, 6, 6)
        h = torch.relu(self.even(self.c1(h) + h))  # (B, 3, 5, 3)
        h = nn.functional.adaptive_avg_pool2d(h, 3)  # (B, 3, 3, 3)
        return self.out(torch.relu(self.fc(h.flatten(1))))


MIXED = {
    "cnn2d": (MixedCNN, (2, 3, 16, 16)),
    "conv1d_flatten": (lambda: nn.Sequential(nn.Conv1d(2, 4, 5), nn.ReLU(), nn.Conv1d(4, 3, 1), nn.Flatten(),
                                             nn.Linear(3 * 8, 2)), (2, 2, 12)),
    "conv3d": (lambda: nn.Sequential(nn.Conv3d(2, 3, (3, 1, 2)), nn.ReLU(), nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(),
                                     nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)), (2, 2, 5, 5, 5)),
}
SHAPES = {
    "cnn2d": {(1, 7, 7), (1, 5, 5), (1, 3, 3), (1, 1, 1), (1, 2, 4)},
    "conv1d_flatten": {(1, 1, 5), (1, 1, 1), (1, 1, 8)},
    "conv3d": {(3, 1, 2), (3, 3, 3), (1, 1, 1)},
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", sorted(MIXED))
def test_mixed_kernel_sizes_round_trip_bit_for_bit(case, dtype):
    torch.manual_seed(0)
    make, shape = MIXED[case]
    model = make().to(dtype).eval()
    x = torch.randn(*shape, dtype=dtype)
    g = assert_round_trip(model, x)
    assert {tuple(s) for s in g.kernel_shape.tolist()} == SHAPES[case]
    # one row per kernel entry: the weights once each, a 1 per identity edge, no padding
    identity = int((g.edge_type != 0).sum())
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    assert g.edge_attr.shape == (weights + identity, 1) and g.edge_attr.dtype == dtype
    # every edge's kernel is a weight slice as stored: the first conv's edge (in 0 -> out 0)
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)))
    assert torch.equal(edge_kernels(g.edge_attr, g.kernel_shape)[0].reshape(first.weight[0, 0].shape),
                       first.weight[0, 0].detach())


@pytest.mark.parametrize("case", sorted(MIXED))
def test_mixed_kernel_sizes_permute_with_the_model(case):
    torch.manual_seed(1)
    make, shape = MIXED[case]
    model = make().double().eval()
    x = torch.randn(*shape, dtype=torch.float64)
    layout = nngraph.build_layout(model, (x,))
    g = nngraph.to_graph(model, x)
    for seed in range(2):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), x)
        assert not torch.equal(perm, torch.arange(perm.numel()))
        assert_function_preserved(model, permuted, x)
        g2 = nngraph.to_graph(permuted, x)
        assert_same_up_to_relabelling(g, g2, perm)  # every kernel moves whole, at its own size
        # permute_graph relabels the converted graph into the same graph
        relabelled = layout.permute_graph(g, perm)
        assert torch.equal(relabelled.x, g2.x) and torch.equal(relabelled.edge_attr, g2.edge_attr)


def test_reorder_kernels_moves_whole_kernels():
    shapes = torch.tensor([[1, 1, 2], [1, 1, 1], [1, 1, 3]], dtype=torch.int32)
    rows = torch.arange(6.0).view(6, 1)  # edge 0: rows 0-1, edge 1: row 2, edge 2: rows 3-5
    assert kernel_offsets(shapes).tolist() == [0, 2, 3]
    out = reorder_kernels(rows, shapes, torch.tensor([2, 0, 1]))
    assert out.view(-1).tolist() == [3.0, 4.0, 5.0, 0.0, 1.0, 2.0]


def test_graph_of_a_resnet_is_about_as_large_as_its_parameters():
    """The features of a graph (x and edge_attr) stay within 1.5x the parameters' bytes; padding every
    kernel into the 7x7 stem's box made them 5x larger for this model."""
    torch.manual_seed(0)
    model = ResNet(widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1), num_classes=10).eval()
    g = nngraph.to_graph(model, torch.randn(1, 3, 32, 32))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    features = g.x.numel() * g.x.element_size() + g.edge_attr.numel() * g.edge_attr.element_size()
    assert features <= 1.5 * params, features / params
    padded = g.num_edges * 49 * g.edge_attr.element_size()  # what (E, 7 * 7) edge features would take
    assert padded > 4 * params
