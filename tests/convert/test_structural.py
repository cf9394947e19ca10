"""Residual sums, activations used twice, indexing, and the errors for what cannot be represented."""
import pytest
import torch
from torch import nn

import nngraph
from nngraph.schema import Activation, EdgeType, NodeKind, NodeType

from .graph_checks import assert_falls_back, assert_function_preserved, assert_round_trip, assert_same_up_to_relabelling


class ResidualMLP(nn.Module):
    def __init__(self, d=6, hidden=10):
        super().__init__()
        self.inp = nn.Linear(3, d)
        self.f1, self.f2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.g1, self.g2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.out = nn.Linear(d, 2)

    def forward(self, x):
        h = self.inp(x)
        h = h + self.f2(torch.relu(self.f1(h)))
        h = h + self.g2(torch.tanh(self.g1(h)))
        return self.out(h)


def test_residual_sum_nodes_and_identity_edges():
    m = ResidualMLP()
    g = assert_round_trip(m, torch.randn(4, 3))
    sums = (g.node_kind == NodeKind.SUM).nonzero().view(-1)
    assert sums.numel() == 12
    residual = g.edge_type == EdgeType.RESIDUAL
    assert residual.sum() == 24
    assert g.edge_attr[residual].eq(1).all()  # identity edges carry 1
    assert torch.isin(g.edge_index[1, residual], sums).all()


def test_residual_stream_permuted_as_one():
    torch.manual_seed(0)
    m = ResidualMLP().double()
    x = torch.randn(8, 3, dtype=torch.float64)
    d, hidden = 6, 10
    p, q, r = torch.randperm(d), torch.randperm(hidden), torch.randperm(hidden)  # stream, f, g
    pm = ResidualMLP().double()
    with torch.no_grad():
        pm.inp.weight.copy_(m.inp.weight[p]); pm.inp.bias.copy_(m.inp.bias[p])
        pm.f1.weight.copy_(m.f1.weight[q][:, p]); pm.f1.bias.copy_(m.f1.bias[q])
        pm.f2.weight.copy_(m.f2.weight[p][:, q]); pm.f2.bias.copy_(m.f2.bias[p])
        pm.g1.weight.copy_(m.g1.weight[r][:, p]); pm.g1.bias.copy_(m.g1.bias[r])
        pm.g2.weight.copy_(m.g2.weight[p][:, r]); pm.g2.bias.copy_(m.g2.bias[p])
        pm.out.weight.copy_(m.out.weight[:, p]); pm.out.bias.copy_(m.out.bias)
    assert_function_preserved(m, pm, x)
    g1, g2 = nngraph.to_graph(m), nngraph.to_graph(pm)
    layout = nngraph.build_layout(m)
    perm = torch.arange(g1.num_nodes)
    stream = [layout.module_nodes["inp"], layout.module_nodes["f2"], layout.module_nodes["g2"]]
    sums = (g1.node_kind == NodeKind.SUM).nonzero().view(-1).view(2, d)
    for nodes, pi in [(n, p) for n in stream + list(sums)] + [(layout.module_nodes["f1"], q), (layout.module_nodes["g1"], r)]:
        perm[nodes[pi]] = nodes
    assert_same_up_to_relabelling(g1, g2, perm)
    permuted, perm2 = nngraph.random_hidden_permutation(m, torch.Generator().manual_seed(5))
    assert_function_preserved(m, permuted, x)
    assert_same_up_to_relabelling(g1, nngraph.to_graph(permuted), perm2)


def test_activation_of_a_value_used_twice_gets_its_own_neurons():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 4), nn.Linear(4, 4)

        def forward(self, x):
            h = self.a(x)
            return self.b(torch.relu(h)) + h

    g = assert_round_trip(Twice(), torch.randn(3, 2))
    assert (g.node_kind == NodeKind.ACTIVATION).sum() == 4
    assert (g.act[g.node_kind == NodeKind.LINEAR][:4] == 0).all()  # the raw h stays unmarked
    assert (g.act[g.node_kind == NodeKind.ACTIVATION] == Activation.RELU).all()
    model = Twice().double()
    permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(1))
    assert_function_preserved(model, permuted, torch.randn(5, 2, dtype=torch.float64))
    assert_same_up_to_relabelling(nngraph.to_graph(model), nngraph.to_graph(permuted), perm)


def test_selecting_neurons_fixes_them_and_stays_sound():
    class Picks(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 6), nn.Linear(3, 1)

        def forward(self, x):
            return self.b(self.a(x)[:, :3])

    model = Picks()
    layout = nngraph.build_layout(model)
    assert layout.symmetries == ()  # the only hidden space is the one a selection reads: fixed
    g = assert_round_trip(model, torch.randn(3, 2))
    src = g.edge_index[0][g.edge_index[1] == layout.module_nodes["b"][0]]
    assert torch.equal(src, layout.module_nodes["a"][:3])  # b reads the first three neurons of a
    assert nngraph.verify(model).ok


def test_sorting_features_falls_back():
    class Sorts(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 6), nn.Linear(6, 1)

        def forward(self, x):
            return self.b(torch.sort(self.a(x), dim=-1).values)

    assert_falls_back(Sorts(), None, match=r"sort at fx node")


def test_unknown_modules_are_traced_into_and_the_fallback_names_the_operation():
    class Mystery(nn.Module):
        def forward(self, x):
            return x.cumsum(-1)

    # softmin over the neurons commutes with permuting them: seen through
    model = nn.Sequential(nn.Linear(2, 3), nn.Softmin(dim=-1), nn.Linear(3, 1))
    assert_falls_back(model, None, match=r"softmin at fx node '.*': seen through")
    assert_falls_back(nn.Sequential(nn.Linear(2, 3), Mystery(), nn.Linear(3, 1)), None,
                      match=r"cumsum at fx node '.*': opaque")


def test_unread_parameter_is_kept_on_fixed_parameter_nodes():
    class Extra(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 3)
            self.unused = nn.Linear(3, 3)

        def forward(self, x):
            return self.a(x)

    model = Extra()
    g = assert_round_trip(model)  # every entry of unused.weight and unused.bias comes back exactly
    parameter = g.node_kind == NodeKind.PARAMETER
    assert int(parameter.sum()) == 3 + 3  # unused.weight's rows, unused.bias's entries
    src, dst = g.edge_index
    assert torch.equal(parameter[src], parameter[dst]), "an unread parameter is read by a neuron"
    layout = nngraph.build_layout(model)
    assert not any(parameter[s.rows.reshape(-1)].any() for s in layout.symmetries), "parameter nodes must be fixed"
    assert nngraph.verify(model).ok


def test_scalar_added_to_activation_falls_back():
    class Shift(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 3), nn.Linear(3, 1)

        def forward(self, x):
            return self.b(self.a(x) + 1.0)

    assert_falls_back(Shift(), None, match=r"add at fx node '.*': seen through")  # acts on each neuron alone


def test_from_graph_refuses_a_graph_of_another_architecture():
    small = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    other = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 1))
    with pytest.raises(nngraph.GraphMismatchError, match="nodes"):
        nngraph.from_graph(nngraph.to_graph(small), other)
    g = nngraph.to_graph(small)
    g.edge_attr = g.edge_attr[:, :0]
    with pytest.raises(nngraph.GraphMismatchError, match="edge features"):
        nngraph.from_graph(g, small)


def test_output_neurons_are_indexed_and_fixed():
    g = nngraph.to_graph(ResidualMLP())
    out = g.node_type == NodeType.OUTPUT
    assert g.io_position[out].tolist() == [0, 1]


def test_layout_cache_tells_apart_models_whose_forward_branches_on_a_flag():
    class Flagged(nn.Module):
        def __init__(self, flag):
            super().__init__()
            self.flag = flag
            self.a, self.b = nn.Linear(2, 3), nn.Linear(3, 1)

        def forward(self, x):
            h = self.a(x)
            return self.b(torch.relu(h) if self.flag else torch.tanh(h))

    relu, tanh = nngraph.to_graph(Flagged(True)), nngraph.to_graph(Flagged(False))
    assert (relu.act == Activation.RELU).sum() == 3 and (tanh.act == Activation.TANH).sum() == 3
    # same architecture, other weights: one cached layout serves both
    assert nngraph.build_layout(Flagged(True)) is nngraph.build_layout(Flagged(True))


class ConstantMasked(nn.Module):
    """Attention masked by a constant buffer (``persistent=False``), or by a plain tensor attribute."""

    def __init__(self, mask: torch.Tensor, as_attribute: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.q, self.o = nn.Linear(4, 4), nn.Linear(4, 2)
        if as_attribute:
            self.mask = mask
        else:
            self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):  # (B, T, 4)
        b, t, _ = x.shape
        h = self.q(x).view(b, t, 2, 2).transpose(1, 2)  # (B, H, T, D)
        a = torch.nn.functional.scaled_dot_product_attention(h, h, h, attn_mask=self.mask)
        return self.o(a.transpose(1, 2).reshape(b, t, 4))


@pytest.mark.parametrize("as_attribute", [False, True])
def test_layout_cache_tells_apart_models_whose_constants_differ(as_attribute):
    """A causal and a band mask of one architecture: the band model must not get the causal model's cached
    layout (it goes to the fallback, as it does on its own); two models with equal constants share one layout."""
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    band = causal & torch.ones(5, 5, dtype=torch.bool).triu(-1)
    x = torch.randn(2, 5, 4)
    graph = nngraph.to_graph(ConstantMasked(causal, as_attribute), x)
    assert (graph.node_kind == int(NodeKind.CAUSAL_HEAD)).sum() == 2
    assert_falls_back(ConstantMasked(band, as_attribute), x, match="not causal")
    banded = nngraph.to_graph(ConstantMasked(band, as_attribute), x)
    assert not (banded.node_kind == int(NodeKind.CAUSAL_HEAD)).any()
    assert nngraph.build_layout(ConstantMasked(causal.clone(), as_attribute), (x,)) is \
        nngraph.build_layout(ConstantMasked(causal, as_attribute), (x,))


def test_even_sized_kernels_are_stored_as_they_are_and_padding_is_gone():
    """A 2x2 conv and a 4x4 flatten map keep their sizes; nothing is centred or rounded up to odd sides."""
    net = nn.Sequential(nn.Conv2d(1, 3, 2), nn.ReLU(), nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    x = torch.randn(1, 1, 7, 7)
    g = nngraph.to_graph(net, x)
    assert g.kernel_shape.tolist() == [[1, 2, 2]] * 3 + [[1, 3, 3]] * 6 + [[1, 4, 4]] * 4
    assert torch.equal(g.edge_attr[:12].view(3, 2, 2), net[0].weight.detach()[:, 0])
    assert torch.equal(g.edge_attr[12 + 54:, 0], net[4].weight.detach().reshape(-1))  # (out, C * 16) as stored
    back = nngraph.from_graph(g, net, x)
    for p, q in zip(net.parameters(), back.parameters()):
        assert torch.equal(p, q)
    from nngraph.convert import pad_kernel_box

    with pytest.raises(TypeError, match="own size"):
        pad_kernel_box(g, (1, 9, 9))
    old = g.clone()
    del old.kernel_shape
    old.kernel_box = torch.tensor([[1, 5, 5]])
    with pytest.raises(nngraph.GraphMismatchError, match="older nngraph"):
        nngraph.from_graph(old, net, x)


def test_batching_keeps_io_positions_and_shifts_edges():
    a = nngraph.to_graph(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3)))
    b = nngraph.to_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 5)))
    batch = nngraph.batch_graphs([a, b])
    assert torch.equal(batch.io_position, torch.cat([a.io_position, b.io_position]))
    assert torch.equal(batch.edge_index[:, a.num_edges:], b.edge_index + a.num_nodes)
    assert torch.equal(batch.kernel_shape, torch.cat([a.kernel_shape, b.kernel_shape]))
    assert batch.edge_attr.shape == (a.num_edges + 2 * 9 + 4 * 25, 1)
