import pytest
import torch
from torch import nn

import nngraph
from nngraph.schema import NORM_BIAS, NORM_WEIGHT, RUNNING_MEAN, RUNNING_VAR, EdgeType, NodeKind

from .graph_checks import (
    assert_falls_back,
    assert_function_preserved,
    assert_round_trip,
    assert_same_up_to_relabelling,
    edge_dict,
    nodes_of,
)


def trained_bn_mlp(dtype=torch.float32):
    """Linear -> BatchNorm1d -> ReLU -> Linear -> LayerNorm -> Tanh -> Linear, BN stats from training steps."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 4), nn.LayerNorm(4),
                        nn.Tanh(), nn.Linear(4, 2)).to(dtype)
    with torch.no_grad():
        for p in (mlp[1].weight, mlp[1].bias, mlp[4].weight, mlp[4].bias):
            p.copy_(torch.randn_like(p))
    mlp.train()
    for _ in range(3):
        mlp(torch.randn(16, 3, dtype=dtype) * 2 + 1)
    return mlp.eval()


def reference_norm(graph, mlp, norm_name, in_name):
    """Slow and obvious: loop over the neurons of one normalization layer."""
    norm = dict(mlp.named_modules())[norm_name]
    src, dst = nodes_of(mlp, in_name), nodes_of(mlp, norm_name)
    edges = edge_dict(graph)
    for c in range(dst.numel()):
        assert graph.node_kind[dst[c]] == NodeKind.NORM
        assert edges[(int(src[c]), int(dst[c]), int(EdgeType.NORM))].tolist() == [1.0]
        for attr, column in (("weight", NORM_WEIGHT), ("bias", NORM_BIAS), ("running_mean", RUNNING_MEAN),
                             ("running_var", RUNNING_VAR)):
            value = getattr(norm, attr, None)
            expected = 0.0 if value is None else value[c].item()
            assert graph.x[dst[c], column].item() == expected, (norm_name, attr, c)
        assert graph.layer[dst[c]] == graph.layer[src[c]] + 1
    assert sum(1 for key in edges if key[2] == EdgeType.NORM and key[1] in set(dst.tolist())) == dst.numel()


def test_batch_norm_and_layer_norm_against_reference_loop():
    mlp = trained_bn_mlp()
    g = nngraph.to_graph(mlp)
    assert g.num_nodes == 3 + 6 + 6 + 4 + 4 + 2
    reference_norm(g, mlp, "1", "0")
    reference_norm(g, mlp, "4", "3")


def test_group_norm_against_reference_loop():
    mlp = nn.Sequential(nn.Linear(3, 12), nn.GroupNorm(4, 12), nn.ReLU(), nn.Linear(12, 2))
    g = nngraph.to_graph(mlp)
    reference_norm(g, mlp, "1", "0")
    out, groups = nodes_of(mlp, "1"), nodes_of(mlp, "1.groups")
    assert groups.numel() == 4 and (g.node_kind[groups] == NodeKind.GROUP).all()
    members = {(s, d) for (s, d, t) in edge_dict(g) if t == EdgeType.GROUP_MEMBER}
    assert members == {(int(groups[c // 3]), int(out[c])) for c in range(12)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_batch_norm_with_training_stats(dtype):
    mlp = trained_bn_mlp(dtype)
    assert not torch.equal(mlp[1].running_mean, torch.zeros(6, dtype=dtype))
    g = assert_round_trip(mlp, torch.randn(5, 3, dtype=dtype))
    assert g.x.dtype == dtype


@pytest.mark.parametrize("norm, shape", [
    (nn.BatchNorm2d(3), (2, 3, 4, 4)),
    (nn.BatchNorm3d(3), (2, 3, 2, 2, 2)),
    (nn.BatchNorm1d(3), (2, 3, 5)),
    (nn.BatchNorm2d(3, affine=False), (2, 3, 4, 4)),
    (nn.BatchNorm2d(3, track_running_stats=False), (2, 3, 4, 4)),
    (nn.GroupNorm(3, 6), (2, 6, 4)),
    (nn.GroupNorm(2, 6, affine=False), (2, 6, 4)),
])
def test_round_trip_channel_norms_on_feature_maps(norm, shape):
    torch.manual_seed(1)
    model = nn.Sequential(norm, nn.Flatten(), nn.Linear(shape[1] * int(torch.tensor(shape[2:]).prod()), 2))
    model.train()
    model(torch.randn(*shape) * 3 + 2)  # non-trivial running statistics where tracked
    g = assert_round_trip(model.eval(), torch.randn(*shape))
    assert (g.node_kind == NodeKind.NORM).sum() == shape[1]


@pytest.mark.parametrize("norm", [nn.LayerNorm(5), nn.LayerNorm(5, bias=False), nn.LayerNorm(5, elementwise_affine=False),
                                  nn.GroupNorm(5, 5), nn.GroupNorm(1, 5)])
def test_round_trip_layer_and_group_norm_in_mlp(norm):
    torch.manual_seed(2)
    mlp = nn.Sequential(nn.Linear(3, 5), norm, nn.GELU(), nn.Linear(5, 2))
    with torch.no_grad():
        for p in norm.parameters():
            p.copy_(torch.randn_like(p))
    assert_round_trip(mlp, torch.randn(4, 3))


def test_hand_permuted_norm_mlp_gives_relabelled_graph():
    mlp = trained_bn_mlp(torch.float64)
    permuted = trained_bn_mlp(torch.float64)
    p1, p2 = torch.randperm(6), torch.randperm(4)
    with torch.no_grad():
        permuted[0].weight.copy_(mlp[0].weight[p1]); permuted[0].bias.copy_(mlp[0].bias[p1])
        for attr in ("weight", "bias", "running_mean", "running_var"):
            getattr(permuted[1], attr).copy_(getattr(mlp[1], attr)[p1])
        permuted[3].weight.copy_(mlp[3].weight[p2][:, p1]); permuted[3].bias.copy_(mlp[3].bias[p2])
        permuted[4].weight.copy_(mlp[4].weight[p2]); permuted[4].bias.copy_(mlp[4].bias[p2])
        permuted[6].weight.copy_(mlp[6].weight[:, p2])
    x = torch.randn(16, 3, dtype=torch.float64)
    assert_function_preserved(mlp, permuted, x)
    g1, g2 = nngraph.to_graph(mlp), nngraph.to_graph(permuted)
    perm = torch.arange(g1.num_nodes)
    for name, p in (("0", p1), ("1", p1), ("3", p2), ("4", p2)):
        nodes = nodes_of(mlp, name)
        perm[nodes[p]] = nodes  # neuron p[j] of the original is neuron j of the permuted model
    assert_same_up_to_relabelling(g1, g2, perm)
    wrong = perm.clone()
    bn = nodes_of(mlp, "1")
    wrong[bn[[0, 1]]] = wrong[bn[[1, 0]]]  # BN neurons not following their inputs
    with pytest.raises(AssertionError):
        assert_same_up_to_relabelling(g1, g2, wrong)


@pytest.mark.parametrize("make", [
    lambda: trained_bn_mlp(torch.float64),
    lambda: nn.Sequential(nn.Linear(3, 12), nn.GroupNorm(4, 12), nn.ReLU(), nn.Linear(12, 12), nn.GroupNorm(3, 12),
                          nn.SiLU(), nn.Linear(12, 2)).double(),
    lambda: nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2)).double(),
])
def test_random_hidden_permutation_preserves_function_and_relabels(make):
    torch.manual_seed(3)
    model = make()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm1d)):
                m.weight.copy_(torch.randn_like(m.weight)); m.bias.copy_(torch.randn_like(m.bias))
    x = torch.randn(8, 3, dtype=torch.float64)
    g = nngraph.to_graph(model)
    for seed in range(5):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed))
        assert not torch.equal(perm, torch.arange(perm.numel()))
        assert_function_preserved(model, permuted, x)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted), perm)


def test_group_norm_permutations_never_break_groups():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 12), nn.GroupNorm(4, 12), nn.ReLU(), nn.Linear(12, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(12)); model[1].bias.copy_(torch.randn(12))
    x = torch.randn(8, 3, dtype=torch.float64)
    channels, groups = nodes_of(model, "1"), nodes_of(model, "1.groups")
    for seed in range(20):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed))
        assert_function_preserved(model, permuted, x)
        # every group's channels land together, on the channels of the group its node moved to
        position = {int(n): i for i, n in enumerate(channels)}
        for g, node in enumerate(groups):
            new_group = int((groups == perm[node]).nonzero())
            landed = {position[int(perm[channels[c]])] // 3 for c in range(3 * g, 3 * g + 3)}
            assert landed == {new_group}
    # the test can fail: a permutation that mixes two groups changes the function
    swap = torch.arange(12)
    swap[[0, 3]] = swap[[3, 0]]
    broken = nn.Sequential(*[m for m in nngraph.from_graph(nngraph.to_graph(model), model)])
    with torch.no_grad():
        broken[0].weight.copy_(model[0].weight[swap]); broken[0].bias.copy_(model[0].bias[swap])
        broken[1].weight.copy_(model[1].weight[swap]); broken[1].bias.copy_(model[1].bias[swap])
        broken[3].weight.copy_(model[3].weight[:, swap])
    with pytest.raises(AssertionError):
        assert_function_preserved(model, broken, x)


def test_fallbacks_name_the_problem():
    assert_falls_back(nn.LayerNorm((2, 3)), (torch.randn(4, 2, 3),), match="last dimension only")
    assert_falls_back(nn.Sequential(nn.BatchNorm2d(3), nn.LayerNorm(4), nn.Flatten(), nn.Linear(48, 2)),
                      (torch.randn(2, 3, 4, 4),), match="along axis 3 .* neurons are along axis 1")
    assert_falls_back(nn.LayerNorm((2, 3)), (torch.randn(4, 2, 3),), match="normalized_shape")
    assert_falls_back(nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.BatchNorm1d(48), nn.Linear(48, 2)),
                      (torch.randn(2, 3, 4, 4),), match="flattened feature map")


def test_cnn_with_batch_norm_and_group_norm_round_trips_and_symmetries():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.GroupNorm(2, 4),
                          nn.SiLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).double()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    model.train()
    model(x * 2 + 1)
    model.eval()
    with torch.no_grad():
        for m in (model[1], model[4]):
            m.weight.copy_(torch.randn_like(m.weight)); m.bias.copy_(torch.randn_like(m.bias))
    g = assert_round_trip(model, x)
    for seed in range(3):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), x)
        assert_function_preserved(model, permuted, x)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)
