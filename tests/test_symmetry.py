"""nngraph.symmetry: sampling, applying and aligning by the symmetries the converter derives, for any architecture."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nngraph
from nngraph import symmetry
from nngraph.symmetry import match
from nngraph.convert.module_info import output_tensors
from .convert.test_fallback import _ReturnsNumber
from .symmetry_reference import dense_weights, group_similarity


def _mlp(seed: int, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 3)).double()


def _cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).double().eval()


def _same_outputs(a: nn.Module, b: nn.Module, inputs) -> float:
    with torch.no_grad():
        return max(float((x - y).abs().max()) for x, y in zip(output_tensors(a(*inputs)), output_tensors(b(*inputs))))


@pytest.mark.parametrize("build, inputs", [
    (_mlp, lambda: (torch.randn(5, 4, dtype=torch.float64),)),
    (_cnn, lambda: (torch.randn(2, 3, 10, 10, dtype=torch.float64),)),
])
def test_align_recovers_a_relabelled_copy_exactly(build, inputs):
    model, x = build(0), inputs()
    layout = nngraph.build_layout(model, x)
    perm = symmetry.random_permutation(layout, torch.Generator().manual_seed(3))
    other = symmetry.permute_model(model, perm, x, layout)
    assert _same_outputs(model, other, x) < 1e-12  # a symmetry: the test's premise
    assert any(not torch.equal(p, q) for p, q in zip(model.state_dict().values(), other.state_dict().values()))
    aligned, (found, sign) = symmetry.align(model, other, x, return_permutation=True)
    for (key, p), q in zip(model.state_dict().items(), aligned.state_dict().values()):
        assert torch.equal(p, q), key
    assert torch.equal(found[perm], torch.arange(layout.num_nodes))  # the inverse of the relabelling


def test_align_of_independent_models_keeps_the_function_and_brings_the_weights_closer():
    x = (torch.randn(7, 4, dtype=torch.float64),)
    reference, model = _mlp(0, width=32), _mlp(1, width=32)
    aligned = symmetry.align(reference, model, x)
    assert _same_outputs(model, aligned, x) < 1e-12
    distance = lambda m: sum(float((p - q).pow(2).sum()) for p, q in zip(reference.parameters(), m.parameters()))  # noqa: E731
    assert distance(aligned) < 0.9 * distance(model)


def test_sparse_similarity_equals_the_dense_reference():
    """The sparse per-group similarity against the dense N x N one of the tasks' first version (MLPs only)."""
    a, b = _mlp(0), _mlp(1)
    layout = nngraph.build_layout(a)
    ga, gb = layout.to_graph(a), layout.to_graph(b)
    features = match._Features(layout, ga)
    for group in layout.symmetries:
        dense = group_similarity(dense_weights(ga), ga.x[:, 0].double(), dense_weights(gb), gb.x[:, 0].double(),
                                 group.rows)
        sparse = features.similarity(group.rows, gb)
        assert torch.allclose(sparse, dense, rtol=1e-12, atol=1e-12)


def test_random_permutation_transform_relabels_graphs_of_the_same_function():
    model = _cnn(0)
    x = (torch.randn(2, 3, 10, 10, dtype=torch.float64),)
    layout = nngraph.build_layout(model, x)
    transform = symmetry.RandomPermutation(layout, torch.Generator().manual_seed(0))
    graph = layout.to_graph(model)
    moved = transform(graph)
    assert not torch.equal(moved.x, graph.x)
    assert _same_outputs(model, layout.from_graph(moved, model), x) < 1e-12
    encoder = nngraph.NeuralGraphEncoder(3, hidden_dim=8, num_layers=2).double()
    with torch.no_grad():
        assert float((encoder(graph) - encoder(moved)).abs().max()) < 1e-10
    assert "symmetry groups" in repr(transform)


def test_align_refuses_models_of_different_architectures():
    with pytest.raises(ValueError, match="not one architecture"):
        symmetry.align(_mlp(0, width=16), _mlp(0, width=8))


@pytest.mark.parametrize("data, match", [
    (torch.randn(6, 5, dtype=torch.float64), r"data of shapes \[\(6, 5\)\] does not run through Sequential: mat1"),
    ((torch.randn(6, 4, dtype=torch.float64),) * 2, "takes 2 positional arguments but 3 were given"),
    ((torch.randn(6, 4), torch.randn(5, 4)), "batches differ in size"),
    ([torch.randn(6, 4), 3], "a batch tensor or a tuple of them"),
])
def test_align_on_data_the_model_cannot_run_is_a_one_line_error(data, match):
    with pytest.raises(ValueError, match=match) as caught:
        symmetry.align(_mlp(0), _mlp(1), data=data)
    assert "\n" not in str(caught.value)


def test_align_of_models_the_converter_refuses_says_why():
    with pytest.raises(nngraph.UnsupportedError, match="returns no tensor"):
        symmetry.align(_ReturnsNumber(), _ReturnsNumber(), torch.randn(2, 4))


def test_merge_of_a_model_and_its_relabelled_copy_is_the_model_only_when_aligned():
    model, x = _mlp(0), (torch.randn(5, 4, dtype=torch.float64),)
    layout = nngraph.build_layout(model, x)
    other = symmetry.permute_model(model, symmetry.random_permutation(layout, torch.Generator().manual_seed(0)),
                                   x, layout)
    merged = symmetry.merge([model, other], example_inputs=x)
    assert _same_outputs(model, merged, x) < 1e-12
    naive = symmetry.merge([model, other], aligned=False)
    assert _same_outputs(model, naive, x) > 1e-3
    with pytest.raises(ValueError, match="summing to 1"):
        symmetry.merge([model, other], weights=[0.5, 0.6])


def test_interpolation_barrier_against_the_path_computed_by_hand():
    a, b = _mlp(0), _mlp(1)
    x = torch.randn(9, 4, dtype=torch.float64)
    loss = lambda m: float(m(x).pow(2).mean())  # noqa: E731
    curve = symmetry.interpolation_barrier(a, b, loss, steps=5)
    by_hand = []
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        mid = _mlp(0)
        with torch.no_grad():
            for p, pa, pb in zip(mid.parameters(), a.parameters(), b.parameters()):
                p.copy_((1 - t) * pa + t * pb)
        by_hand.append(loss(mid))
    assert curve["loss"] == pytest.approx(by_hand, rel=1e-12)
    line = [(1 - t) * by_hand[0] + t * by_hand[-1] for t in curve["t"]]
    assert curve["barrier"] == pytest.approx(max(v - w for v, w in zip(by_hand, line)), rel=1e-12)
    assert symmetry.interpolation_barrier(a, a, loss, steps=3)["barrier"] == pytest.approx(0.0, abs=1e-12)


def test_activation_matching_recovers_a_relabelled_copy_and_keeps_the_function_of_others():
    model, x = _mlp(0, width=32), (torch.randn(5, 4, dtype=torch.float64),)
    data = (torch.randn(64, 4, dtype=torch.float64),)
    layout = nngraph.build_layout(model, x)
    other = symmetry.permute_model(model, symmetry.random_permutation(layout, torch.Generator().manual_seed(2)),
                                   x, layout)
    aligned = symmetry.align(model, other, x, data=data)
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), aligned.state_dict().values()))
    independent = _mlp(5, width=32)
    assert _same_outputs(independent, symmetry.align(model, independent, x, data=data), x) < 1e-12


def _attention(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, batch_first=True, norm_first=True)
    return nn.Sequential(nn.Linear(3, 8), nn.TransformerEncoder(layer, 1, enable_nested_tensor=False),
                         nn.Linear(8, 2)).double().eval()


def _tanh_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3)).double()


@pytest.mark.parametrize("build, inputs", [
    (_tanh_mlp, lambda: (torch.randn(5, 4, dtype=torch.float64),)),
    (_cnn, lambda: (torch.randn(2, 3, 10, 10, dtype=torch.float64),)),
    (_attention, lambda: (torch.randn(2, 5, 3, dtype=torch.float64),)),
])
def test_similarity_of_a_described_relabelling_equals_that_of_the_built_graph(build, inputs):
    """Weight matching never builds the relabelled graph (``_Relabelled``: moved ends, signed values, entries
    gathered per group and kept); every group's similarity must equal the one computed on the graph built by
    ``permute_graph`` + ``apply_signs``, for relabellings of every group, negations (the tanh MLP) and head
    blocks (the attention)."""
    reference, model, x = build(0), build(1), inputs()
    layout = nngraph.build_layout(model, x)
    graph = layout.to_graph(model)
    features = match._Features(layout, layout.to_graph(reference))
    flippable = symmetry.flippable_nodes(graph)
    if build is _tanh_mlp:
        assert int(flippable.sum()) == 12
    if build is _attention:
        assert any(g.block_size for g in layout.symmetries)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # the second and third reuse the kept entries
        perm = symmetry.random_permutation(layout, generator)
        assert not torch.equal(perm, torch.arange(layout.num_nodes))
        sign = torch.where(flippable & (torch.rand(layout.num_nodes, generator=generator) < 0.5), -1.0, 1.0)
        sign = sign.double()
        built = symmetry.apply_signs(layout.permute_graph(graph, perm), sign)
        described = match._Relabelled(features, graph, perm, sign)
        for group in layout.symmetries:
            fast = features.similarity(group.rows, described, group.satellites, group.block_size)
            slow = features.similarity(group.rows, built, group.satellites, group.block_size)
            torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)


def test_tolerance_stops_steps_that_gain_too_little():
    """``tol`` is relative to the group's similarity: at 10 no step of two independent models is worth taking (the
    model comes back as it was); at 0 and at the default the weights move closer to the reference."""
    x = (torch.randn(7, 4, dtype=torch.float64),)
    reference, model = _mlp(0, width=32), _mlp(1, width=32)
    distance = lambda m: sum(float((p - q).pow(2).sum()) for p, q in zip(reference.parameters(), m.parameters()))  # noqa: E731
    _, (perm, sign) = symmetry.align(reference, model, x, tol=10.0, return_permutation=True)
    assert torch.equal(perm, torch.arange(perm.numel())) and bool((sign == 1).all())
    for tol in (0.0, match.TOLERANCE):
        assert distance(symmetry.align(reference, model, x, tol=tol)) < 0.9 * distance(model)


def test_align_and_flips_on_blocked_graphs(monkeypatch):
    """Graphs above ``COMPACT_EDGES`` edges come blocked (no ``edge_index``): a relabelled, negated copy of a tanh
    MLP is still recovered exactly, and the flippable neurons are those of the plain graph."""
    from nngraph.convert import layout as layout_module

    torch.manual_seed(0)  # 16 wide: at 6 the descent can stop in a local optimum when both layers are negated
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    x = (torch.randn(5, 4, dtype=torch.float64),)
    layout = nngraph.build_layout(model, x)
    plain_flippable = symmetry.flippable_nodes(layout.to_graph(model, compact=False))
    monkeypatch.setattr(layout_module, "COMPACT_EDGES", 10)
    blocked = layout.to_graph(model)
    assert "edge_index" not in blocked
    assert torch.equal(symmetry.flippable_nodes(blocked), plain_flippable)
    perm = symmetry.random_permutation(layout, torch.Generator().manual_seed(1))
    sign = torch.where(plain_flippable & (torch.arange(layout.num_nodes) % 2 == 0), -1.0, 1.0).double()
    other = layout.from_graph(symmetry.apply_signs(layout.permute_graph(layout.to_graph(model, compact=False), perm),
                                                   sign), model)
    assert _same_outputs(model, other, x) < 1e-12  # a symmetry: the test's premise
    aligned = symmetry.align(model, other, x)
    for (key, p), q in zip(model.state_dict().items(), aligned.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-15, msg=key)
