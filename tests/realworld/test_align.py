"""nngraph.symmetry.align on every real-world model: a relabelled copy, negated where an odd activation allows, is
recovered exactly (heads as blocks, kernels, tied spaces), and its outputs equal the model's in float64. (No suite model
has an odd activation where a flip is a symmetry today; tests/test_symmetry.py covers flips on tanh MLPs.)"""
from __future__ import annotations

import pytest
import torch

import nngraph
from nngraph import symmetry
from nngraph.convert.precision import float64_islands

from .hf_models import MODELS, reinitialise

pytestmark = pytest.mark.realworld


@pytest.mark.parametrize("name", sorted(MODELS))
def test_align_recovers_a_relabelled_copy_of_every_real_model(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    model = reinitialise(model.eval()).double()
    inputs = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    layout = nngraph.build_layout(model, inputs)
    graph = layout.to_graph(model, compact=False)
    generator = torch.Generator().manual_seed(1)
    perm = symmetry.random_permutation(layout, generator)
    flippable = symmetry.flippable_nodes(graph)  # odd activations (a pooler's tanh): negated where drawn
    sign = torch.where(flippable & (torch.rand(layout.num_nodes, generator=generator) < 0.5), -1.0, 1.0).double()
    other = layout.from_graph(symmetry.apply_signs(layout.permute_graph(graph, perm), sign), model)
    assert any(not torch.equal(p, q) for p, q in zip(model.state_dict().values(), other.state_dict().values()))
    with torch.no_grad(), float64_islands():  # a symmetry: the test's premise (LLaMA's float32 casts lifted)
        before, after = (nngraph.convert.module_info.output_tensors(m(*inputs)) for m in (model, other))
        assert max(float((a - b).abs().max()) for a, b in zip(before, after)) < 1e-9
    aligned = symmetry.align(model, other, inputs)
    for (key, p), q in zip(model.state_dict().items(), aligned.state_dict().values()):
        assert torch.equal(p, q), f"{name}: {key} not recovered"
