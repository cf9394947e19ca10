"""Hugging Face models from tiny configs: each converts to a sound graph that round-trips bit for bit,
or is refused with an UnsupportedError; never a wrong graph. The encoder is invariant / equivariant on
the graphs of real models. ``README.md`` holds the coverage table these expectations mirror."""
from __future__ import annotations

import pytest
import torch

import nngraph
from nngraph.testing import assert_equivariant, assert_invariant

from .hf_models import MODELS, reinitialise

pytestmark = pytest.mark.realworld

#: name -> None (converts soundly) or a fragment of the refusal (see README's coverage table)
EXPECTED = {
    "BertModel": None,
    "DistilBertModel": None,
    "GPT2LMHeadModel": None,
    "ViTForImageClassification": None,
    "CLIPVisionModel": None,
    "ResNetModel": None,
    "MobileNetV2Model": None,
    "ConvNextModel": None,
    "LlamaForCausalLM": None,  # RMSNorm, SwiGLU, rotary (its q/k neurons fixed), grouped-query attention
    "EfficientNetModel": None,  # TF-style zero padding folded into the convs, squeeze-excitation products
    "T5Model": None,  # relative-position score bias per head (shared by every layer: attention fixed)
    "SwinModel": None,  # window attention: a relative-position bias table gathered by a constant index
}


def _built(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    return reinitialise(model.eval()), inputs


@pytest.mark.parametrize("name", sorted(MODELS))
def test_converts_soundly_or_is_refused(name):
    model, inputs = _built(name)
    expected = EXPECTED[name]
    if expected is not None:
        with pytest.raises(nngraph.UnsupportedError, match=expected):
            nngraph.to_graph(model, inputs)
        return
    report = nngraph.verify(model, inputs, num_permutations=3)
    assert report.ok, f"{name}: {report}"
    assert report.moved_fraction > 0.25 and report.output_scale > 1e-3  # the check tested something
    graph = nngraph.to_graph(model, inputs)
    back = nngraph.from_graph(graph, model)  # no example inputs: the graph recorded them
    original = dict(model.named_parameters(remove_duplicate=False))
    for key, value in back.named_parameters(remove_duplicate=False):
        assert torch.equal(value, original[key]), f"{name}: {key} changed in the round trip"


def test_the_coverage_goal():
    assert sum(v is None for v in EXPECTED.values()) >= 12 and set(EXPECTED) == set(MODELS)


@pytest.mark.parametrize("name", ["GPT2LMHeadModel", "ViTForImageClassification", "ConvNextModel",
                                  "EfficientNetModel"])
def test_encoder_is_invariant_and_equivariant_on_real_models(name):
    model, inputs = _built(name)
    inputs = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    encoder = nngraph.NeuralGraphEncoder(4, hidden_dim=8, num_layers=2).double()
    assert assert_invariant(encoder, model, inputs, generator=torch.Generator().manual_seed(0)) < 1e-10
    errors = assert_equivariant(encoder, model, inputs, generator=torch.Generator().manual_seed(1))
    assert max(errors.values()) < 1e-10 and len(errors) >= 2
