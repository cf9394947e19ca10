"""Models torch.fx cannot trace reach the converters through torch.export."""
import pytest
import torch
from torch import nn

import nngraph
from nngraph.schema import Activation, NodeKind

from .graph_checks import assert_function_preserved, assert_same_up_to_relabelling


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


def test_export_names_an_unsupported_aten_op():
    class MatmulParam(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.w = nn.Parameter(torch.randn(4, 4))

        def forward(self, x):
            return self.lin(x) @ self.w

    with pytest.raises(nngraph.UnsupportedError, match="'w'"):
        nngraph.to_graph(MatmulParam(), torch.randn(2, 3), method="export")


def test_export_of_functional_sine_with_other_scale_refused():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.b(3.0 * self.a(x))

    with pytest.raises(nngraph.UnsupportedError, match="scaled by the constant 3.0"):
        nngraph.to_graph(Scaled(), torch.randn(2, 2), method="export")


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
