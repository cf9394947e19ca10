"""Hugging Face models from tiny configs: each converts to a sound graph that round-trips bit for bit,
or is refused with an UnsupportedError; never a wrong graph. The encoder is invariant / equivariant on
the graphs of real models. ``docs/converting.md`` (Real-world models) holds the table these expectations mirror."""
from __future__ import annotations

import pytest
import torch

import nngraph
from nngraph.schema import NodeKind
from nngraph.testing import assert_equivariant, assert_invariant

from .hf_models import MODELS, build

pytestmark = pytest.mark.realworld

#: name -> None (converts soundly) or a fragment of the refusal (see the Real-world models table of docs/converting.md)
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
    # shifted windows: rolls recorded (Pool.ROLL), the constant mask added to the position bias recorded on the
    # heads (Pool.SCORE_OFFSET)
    "SwinModel[shifted]": None,
    # attn_implementation="eager": matmul / softmax / matmul (nngraph/convert/eager_attention.py)
    "BertModel[eager]": None,
    "GPT2LMHeadModel[eager]": None,  # its materialised causal mask: CAUSAL_HEAD, as for sdpa
    "ViTForImageClassification[eager]": None,
    "LlamaForCausalLM[eager]": None,  # softmax in float32, grouped-query heads repeated by repeat_kv
    "T5Model[eager]": None,  # the decoder's causal mask is recorded (CAUSAL_HEAD); the sdpa graph has HEAD there
    "CLIPVisionModel[eager]": None,
}

#: eager name -> the fields in which its graph differs from the sdpa model's (same weights)
EAGER_DIFFERENCES = {
    "BertModel[eager]": set(), "GPT2LMHeadModel[eager]": set(), "ViTForImageClassification[eager]": set(),
    "LlamaForCausalLM[eager]": set(), "CLIPVisionModel[eager]": set(),
    # sdpa receives T5's causal mask already summed into the position bias, so its heads are HEAD
    "T5Model[eager]": {"node_kind"},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_converts_soundly_or_is_refused(name):
    model, inputs = build(name)
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
    assert sum(v is None for v in EXPECTED.values()) >= 19 and set(EXPECTED) == set(MODELS)


@pytest.mark.parametrize("name", sorted(EAGER_DIFFERENCES))
def test_eager_attention_gives_the_graph_of_sdpa(name):
    eager, inputs = build(name)
    sdpa, _ = build(name.removesuffix("[eager]"))
    assert {m.config._attn_implementation for m in eager.modules() if hasattr(m, "config")} == {"eager"}
    g1, g2 = nngraph.to_graph(eager, inputs), nngraph.to_graph(sdpa, inputs)
    assert g1.keys() == g2.keys() and g1.num_nodes == g2.num_nodes
    differing = {k for k in g1.keys() if isinstance(g1[k], torch.Tensor)
                 and (g1[k].shape != g2[k].shape or not torch.equal(g1[k], g2[k]))}
    assert differing == EAGER_DIFFERENCES[name]
    if differing:  # only causal heads where sdpa has plain ones
        changed = g1.node_kind != g2.node_kind
        assert (g1.node_kind[changed] == NodeKind.CAUSAL_HEAD).all() and (g2.node_kind[changed] == NodeKind.HEAD).all()


@pytest.mark.parametrize("name", ["GPT2LMHeadModel", "GPT2LMHeadModel[eager]", "ViTForImageClassification",
                                  "ConvNextModel", "EfficientNetModel", "SwinModel[shifted]"])
def test_encoder_is_invariant_and_equivariant_on_real_models(name):
    model, inputs = build(name)
    inputs = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    encoder = nngraph.NeuralGraphEncoder(4, hidden_dim=8, num_layers=2).double()
    assert assert_invariant(encoder, model, inputs, generator=torch.Generator().manual_seed(0)) < 1e-10
    errors = assert_equivariant(encoder, model, inputs, generator=torch.Generator().manual_seed(1))
    assert max(errors.values()) < 1e-10 and len(errors) >= 2
