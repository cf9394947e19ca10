"""nngraph.symmetry.align on every real-world model: a relabelled copy is recovered exactly (heads as blocks,
kernels, tied spaces), and its outputs equal the model's in float64."""
from __future__ import annotations

import pytest
import torch

import nngraph
from nngraph import symmetry

from .hf_models import MODELS, reinitialise

pytestmark = pytest.mark.realworld


@pytest.mark.parametrize("name", sorted(MODELS))
def test_align_recovers_a_relabelled_copy_of_every_real_model(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    model = reinitialise(model.eval()).double()
    inputs = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    layout = nngraph.build_layout(model, inputs)
    other = symmetry.permute_model(model, symmetry.random_permutation(layout, torch.Generator().manual_seed(1)),
                                   inputs, layout)
    assert any(not torch.equal(p, q) for p, q in zip(model.state_dict().values(), other.state_dict().values()))
    aligned = symmetry.align(model, other, inputs)
    for (key, p), q in zip(model.state_dict().items(), aligned.state_dict().values()):
        assert torch.equal(p, q), f"{name}: {key} not recovered"
