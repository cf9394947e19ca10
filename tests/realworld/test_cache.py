"""Converting leaves the user's model exactly as it was, and the layout cache hits on the second call and on a
second model built alike, whichever tracer ran (torch.export replaces Hugging Face's dict attributes)."""
from __future__ import annotations

import pytest
import torch

import nngraph
from nngraph.convert import api

from .hf_models import MODELS, build as _build

pytestmark = pytest.mark.realworld


def _state(module: torch.nn.Module) -> dict:
    """Every attribute of every submodule, by identity (the objects themselves, not copies)."""
    return {(name, key): value for name, sub in module.named_modules() for key, value in vars(sub).items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_conversion_leaves_the_model_unchanged_and_hits_the_cache(name):
    model, inputs = _build(name)
    before = _state(model)
    api.clear_cache()
    graph = nngraph.to_graph(model, inputs)
    after = _state(model)
    assert after.keys() == before.keys()
    assert [k for k in before if after[k] is not before[k]] == []
    layout = nngraph.build_layout(model, inputs)
    assert len(api._LAYOUT_CACHE) == 1  # the second call found the first one's layout
    twin, _ = _build(name)  # another instance, another config object: built alike, so one layout
    assert nngraph.build_layout(twin, inputs) is layout
    assert torch.equal(nngraph.to_graph(twin, inputs).edge_index, graph.edge_index)


def test_models_that_differ_in_a_config_flag_do_not_share_a_layout():
    model, inputs = _build("LlamaForCausalLM")
    api.clear_cache()
    layout = nngraph.build_layout(model, inputs)
    other, _ = _build("LlamaForCausalLM")
    other.config.rms_norm_eps = 0.5  # read by the forward: another function
    for module in other.modules():
        if hasattr(module, "variance_epsilon"):
            module.variance_epsilon = 0.5
    assert nngraph.build_layout(other, inputs) is not layout
