"""Weight matching (nngraph.symmetry) and weight-space MixUp (tasks.inr_classification.mixup).

An alignment is a symmetry: the aligned model computes what the original computes (float64); a model
relabelled and sign-flipped at random is aligned back onto itself exactly; the vectorised similarity equals a
loop over neuron pairs; MixUp mixes graphs and labels with the same weight and refuses what it cannot mix.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import nngraph
from nngraph import schema
from nngraph.zoo import build_model, coordinate_grid, siren_spec
from nngraph.symmetry import align_graph as align_to

from ..symmetry_reference import dense_weights, group_similarity
from nngraph.symmetry import sign_flip
from tasks.inr_classification.mixup import WeightMixup


def _siren(seed: int):
    torch.manual_seed(seed)
    return build_model(siren_spec(2, [8, 8], 1, 30.0)).double()


def _setup(seed: int = 0):
    model = _siren(seed)
    graph = nngraph.to_graph(model)
    layout = nngraph.build_layout(model, (torch.zeros(1, 2, dtype=torch.float64),))
    return model, graph, layout


def test_alignment_keeps_the_function_in_float64():
    model, reference, layout = _setup(0)
    other = _siren(1)
    aligned, perm, sign = align_to(nngraph.to_graph(other), reference, layout)
    assert not torch.equal(perm, torch.arange(perm.numel())) or bool((sign < 0).any())  # it did move something
    coords = coordinate_grid(16, 16).double()
    torch.testing.assert_close(nngraph.from_graph(aligned, other)(coords), other(coords), rtol=0, atol=1e-12)


def test_alignment_brings_the_weights_closer():
    _, reference, layout = _setup(0)
    other = nngraph.to_graph(_siren(1))
    aligned, _, _ = align_to(other, reference, layout)
    before = (other.edge_attr - reference.edge_attr).square().sum()
    after = (aligned.edge_attr - reference.edge_attr).square().sum()
    assert after < 0.9 * before


def test_a_relabelled_and_flipped_copy_aligns_back_exactly():
    model, graph, layout = _setup(0)
    moved = sign_flip(layout.permute_graph(graph, layout.random_node_permutation(torch.Generator().manual_seed(2))),
                      p=0.5, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(moved.edge_attr, graph.edge_attr)
    aligned, _, _ = align_to(moved, graph, layout)
    torch.testing.assert_close(aligned.edge_attr, graph.edge_attr, rtol=0, atol=0)
    torch.testing.assert_close(aligned.x, graph.x, rtol=0, atol=0)


def test_a_wrong_sign_rule_would_be_caught():
    """The function check can fail: negating a neuron's incoming weights only changes the outputs."""
    model, graph, layout = _setup(0)
    wrong = graph.clone()
    hidden = graph.node_type == int(schema.NodeType.HIDDEN)
    first = int(torch.nonzero(hidden)[0])
    wrong.edge_attr = torch.where((graph.edge_index[1] == first).unsqueeze(-1), -graph.edge_attr, graph.edge_attr)
    coords = coordinate_grid(8, 8).double()
    assert not torch.allclose(nngraph.from_graph(wrong, model)(coords), model(coords), atol=1e-3)


def test_group_similarity_matches_a_loop_over_neuron_pairs():
    _, g_ref, layout = _setup(0)
    g_oth = nngraph.to_graph(_siren(1))
    a_ref, a_oth = dense_weights(g_ref), dense_weights(g_oth)
    b_ref, b_oth = g_ref.x[:, schema.BIAS].double(), g_oth.x[:, schema.BIAS].double()
    for group in layout.symmetries:
        fast = group_similarity(a_ref, b_ref, a_oth, b_oth, group.rows)
        slow = torch.zeros_like(fast)
        for i in range(group.rows.shape[1]):
            for j in range(group.rows.shape[1]):
                for row in group.rows:
                    u, v = int(row[i]), int(row[j])
                    total = float(b_ref[u] * b_oth[v])
                    for k in range(g_ref.num_nodes):
                        total += float(a_ref[k, u] * a_oth[k, v] + a_ref[u, k] * a_oth[v, k])
                    slow[i, j] += total
        torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)


def test_the_dense_reference_refuses_conv_kernels_and_the_library_aligns_them():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 2, 3)).double()
    x = (torch.zeros(1, 1, 8, 8, dtype=torch.float64),)
    layout = nngraph.build_layout(model, x)
    graph = layout.to_graph(model)
    with pytest.raises(ValueError, match="one value"):
        dense_weights(graph)
    moved = sign_flip(layout.permute_graph(graph, layout.random_node_permutation(torch.Generator().manual_seed(0))),
                      p=1.0)
    assert not torch.equal(moved.edge_attr, graph.edge_attr)
    aligned, _, _ = align_to(moved, graph, layout)
    assert torch.equal(aligned.x, graph.x) and torch.allclose(aligned.edge_attr, graph.edge_attr, rtol=0, atol=1e-15)


def _batch(n: int = 4):
    graphs = []
    for s in range(n):
        g = nngraph.to_graph(_siren(s).float())
        g.y = torch.tensor([s % 3])
        graphs.append(g)
    return Batch.from_data_list(graphs), graphs


def test_mixup_mixes_weights_and_labels_with_one_weight():
    batch, graphs = _batch()
    lam, partner = torch.tensor([1.0, 0.25, 0.5, 0.9]), torch.tensor([1, 2, 3, 0])
    mixed = WeightMixup(num_classes=3).mix(batch, lam, partner)
    assert mixed.y.shape == (4, 3)
    torch.testing.assert_close(mixed.y.sum(-1), torch.ones(4))
    n, w = graphs[0].num_nodes, graphs[0].edge_attr.size(0)
    for i in range(4):  # a loop over graphs against the batched reshapes
        j, a = int(partner[i]), float(lam[i])
        torch.testing.assert_close(mixed.edge_attr[i * w:(i + 1) * w], a * graphs[i].edge_attr + (1 - a) * graphs[j].edge_attr)
        torch.testing.assert_close(mixed.x[i * n:(i + 1) * n], a * graphs[i].x + (1 - a) * graphs[j].x)
        expected = torch.zeros(3)
        expected[int(graphs[i].y)] += a
        expected[int(graphs[j].y)] += 1 - a
        torch.testing.assert_close(mixed.y[i], expected)
    torch.testing.assert_close(mixed.edge_attr[:w], graphs[0].edge_attr)  # lambda 1: the graph itself


def test_mixup_draws_partners_and_weights():
    batch, _ = _batch()
    torch.manual_seed(0)
    mixed = WeightMixup(num_classes=3, alpha=0.4)(batch)
    assert mixed.y.shape == (4, 3) and not torch.equal(mixed.edge_attr, batch.edge_attr)
    torch.testing.assert_close(mixed.y.sum(-1), torch.ones(4))


def test_mixup_refuses_mixed_architectures_and_probes():
    g_small = nngraph.to_graph(_siren(0).float())
    torch.manual_seed(0)
    g_big = nngraph.to_graph(build_model(siren_spec(2, [16, 16], 1, 30.0)))
    for g in (g_small, g_big):
        g.y = torch.tensor([0])
    with pytest.raises(ValueError, match="one architecture"):
        WeightMixup(3)(Batch.from_data_list([g_small, g_big]))
    g_small.probe = torch.zeros(g_small.num_nodes, 2)
    with pytest.raises(ValueError, match="probe"):
        WeightMixup(3)(Batch.from_data_list([g_small, g_small.clone()]))
    with pytest.raises(ValueError, match="alpha"):
        WeightMixup(3, alpha=0.0)
