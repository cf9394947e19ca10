"""tasks.diagnostics.inr_signs: sign matching finds a flipped and relabelled copy that permutations alone cannot,
and every alignment keeps the function in float64."""
from __future__ import annotations

import numpy as np
import torch

import nngraph
from nngraph.symmetry import flippable_nodes, sign_flip
from nngraph.zoo import build_model
from nngraph.zoo.specs import siren_spec
from tasks.diagnostics import inr_signs


def _siren(seed: int, hidden=(6, 6)):
    torch.manual_seed(seed)
    return build_model(siren_spec(2, list(hidden), 1, 30.0)).eval()


def test_sign_matching_finds_a_flipped_relabelled_copy_that_permutations_alone_do_not():
    # one hidden layer: weight matching is one exact assignment (with more, a descent that may stop short)
    model = _siren(0, hidden=(8,))
    coords = torch.rand(2, 2)  # (2, 2)
    layout = nngraph.build_layout(model, (coords,))
    graph = layout.to_graph(model)
    flipped = sign_flip(graph, p=0.5, generator=torch.Generator().manual_seed(1))
    copy = layout.permute_graph(flipped, layout.random_node_permutation(torch.Generator().manual_seed(2)))
    other = layout.to_graph(_siren(3, hidden=(8,)))
    relabelled = layout.permute_graph(other, layout.random_node_permutation(torch.Generator().manual_seed(4)))
    # digit 0's pair is (graph, its flipped relabelled copy), digit 1's (other, its relabelled copy)
    d = inr_signs.pair_distances([graph, copy, other, relabelled], np.array([0, 0, 1, 1]), layout, pairs=1, seed=0)
    assert 0 < d["negated"][0] < 1 and d["negated"][1] == 0
    assert d["permutation + sign"][0] < 1e-6 < 0.1 < d["permutation"][0] < d["none"][0]
    assert d["permutation"][1] < 1e-6 < 0.1 < d["none"][1]  # a plain relabelling: permutations suffice
    assert len(d["layers"]) == 2 and all(float(v.max()) < 1e-6 for v in d["layers"].values())  # both layers


def test_without_signs_stops_every_flip_and_nothing_else():
    graph = nngraph.to_graph(_siren(0), torch.rand(2, 2))
    assert bool(flippable_nodes(graph).any())
    plain = inr_signs.without_signs(graph)
    assert not bool(flippable_nodes(plain).any())
    assert torch.equal(plain.x, graph.x) and torch.equal(plain.edge_attr, graph.edge_attr)
    assert torch.equal(graph.act, nngraph.to_graph(_siren(0), torch.rand(2, 2)).act)  # the original untouched


def test_alignment_keeps_the_function_in_float64():
    coords = torch.rand(50, 2)  # (P, 2)
    changes = {a: inr_signs.function_change(_siren(0), _siren(1), coords, a) for a in ("permutation",
                                                                                       "permutation + sign")}
    assert changes["permutation"][1] == 0 and changes["permutation + sign"][1] > 0  # the check sees a flip
    assert all(change < 1e-12 for change, _ in changes.values())
