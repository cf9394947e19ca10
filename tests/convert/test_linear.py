import pytest
import torch
from torch import nn

import nngraph
from nngraph.schema import BIAS, EdgeType, NodeKind, NodeType

from .graph_checks import (
    assert_function_preserved,
    assert_round_trip,
    assert_same_up_to_relabelling,
    nodes_of,
)


def siren(widths=(2, 32, 32, 1)):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nngraph.Sine())
    return nn.Sequential(*layers)


def test_mlp_counts_and_fields():
    g = nngraph.to_graph(siren())
    assert g.num_nodes == 67 and g.num_edges == 1120
    assert g.edge_attr.shape == (1120, 1) and g.x.shape == (67, 5)
    assert (g.node_type == NodeType.INPUT).sum() == 2 and (g.node_type == NodeType.OUTPUT).sum() == 1
    assert g.io_position[g.node_type == NodeType.HIDDEN].eq(-1).all()
    assert g.io_position[g.node_type == NodeType.INPUT].tolist() == [0, 1]
    assert g.layer.unique().tolist() == [0, 1, 2, 3]
    assert (g.edge_type == EdgeType.WEIGHT).all()
    assert g.kernel_shape.shape == (1120, 3) and g.kernel_shape.eq(1).all()  # 1x1 kernels: one row per edge


def reference_linear_graph(mlp: nn.Sequential):
    """Slow and obvious: a loop over every weight of every Linear layer."""
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    layer_nodes, next_id = [], 0
    sizes = [linears[0].in_features] + [m.out_features for m in linears]
    for size in sizes:
        layer_nodes.append(list(range(next_id, next_id + size)))
        next_id += size
    edges, bias = {}, torch.zeros(next_id)
    for k, lin in enumerate(linears):
        for o in range(lin.out_features):
            bias[layer_nodes[k + 1][o]] = lin.bias[o]
            for i in range(lin.in_features):
                edges[(layer_nodes[k][i], layer_nodes[k + 1][o])] = lin.weight[o, i].item()
    return edges, bias


def test_linear_against_reference_loop():
    mlp = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    g = nngraph.to_graph(mlp)
    edges, bias = reference_linear_graph(mlp)
    got = {(s, d): a.item() for s, d, a in zip(g.edge_index[0].tolist(), g.edge_index[1].tolist(), g.edge_attr[:, 0])}
    assert got == edges
    assert torch.equal(g.x[:, BIAS], bias)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_bit_for_bit(dtype):
    mlp = siren().to(dtype)
    g = assert_round_trip(mlp, torch.randn(4, 2, dtype=dtype))
    assert g.x.dtype == dtype and g.edge_attr.dtype == dtype


def test_linear_without_bias_round_trips():
    mlp = nn.Sequential(nn.Linear(3, 4, bias=False), nn.GELU(), nn.Linear(4, 2))
    g = assert_round_trip(mlp, torch.randn(2, 3))
    assert g.x[3:7, BIAS].eq(0).all()


def test_hand_permuted_mlp_gives_relabelled_graph():
    torch.manual_seed(0)
    mlp = siren((2, 8, 6, 3)).double()
    p1, p2 = torch.randperm(8), torch.randperm(6)
    permuted = nn.Sequential(*[m for m in siren((2, 8, 6, 3)).double()])
    with torch.no_grad():
        permuted[0].weight.copy_(mlp[0].weight[p1]); permuted[0].bias.copy_(mlp[0].bias[p1])
        permuted[2].weight.copy_(mlp[2].weight[p2][:, p1]); permuted[2].bias.copy_(mlp[2].bias[p2])
        permuted[4].weight.copy_(mlp[4].weight[:, p2]); permuted[4].bias.copy_(mlp[4].bias)
    x = torch.randn(16, 2, dtype=torch.float64)
    assert_function_preserved(mlp, permuted, x)
    g1, g2 = nngraph.to_graph(mlp), nngraph.to_graph(permuted)
    perm = torch.arange(g1.num_nodes)
    for name, p in (("0", p1), ("2", p2)):
        nodes = nodes_of(mlp, name)
        perm[nodes[p]] = nodes  # neuron p[j] of the original is neuron j of the permuted model
    assert_same_up_to_relabelling(g1, g2, perm)
    # and a wrong relabelling is caught
    wrong = perm.clone()
    wrong[[2, 3]] = wrong[[3, 2]]
    with pytest.raises(AssertionError):
        assert_same_up_to_relabelling(g1, g2, wrong)


def test_random_hidden_permutation_preserves_function_and_relabels():
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(4, 16), nn.SiLU(), nn.Dropout(0.1), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    permuted, perm = nngraph.random_hidden_permutation(mlp, torch.Generator().manual_seed(3))
    assert_function_preserved(mlp, permuted, torch.randn(8, 4, dtype=torch.float64))
    assert not torch.equal(perm, torch.arange(perm.numel()))
    assert_same_up_to_relabelling(nngraph.to_graph(mlp), nngraph.to_graph(permuted), perm)
    inputs_outputs = nngraph.to_graph(mlp).node_type != NodeType.HIDDEN
    assert torch.equal(perm[inputs_outputs], torch.arange(perm.numel())[inputs_outputs])


def test_node_kinds_and_activation_recorded():
    g = nngraph.to_graph(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)))
    assert g.node_kind.tolist() == [NodeKind.INPUT] * 2 + [NodeKind.LINEAR] * 4
    assert g.act.tolist() == [0, 0, 4, 4, 4, 0]


def test_flattened_image_input_makes_one_input_node_per_pixel():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10))
    g = assert_round_trip(mlp, torch.randn(2, 1, 8, 8))
    assert (g.node_type == NodeType.INPUT).sum() == 64
