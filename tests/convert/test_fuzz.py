"""Property-based converter tests: random architectures (see ``fuzz_models``) convert to graphs that
are sound in float64 (``nngraph.verify``), whose inverse is exact, and on which the encoder is
invariant. ~300 cases by default; ``NNGRAPH_FUZZ_EXAMPLES=5000 pytest tests/convert/test_fuzz.py``
for the on-demand size."""
from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, given, settings

import nngraph
from nngraph.testing import assert_invariant

from .fuzz_models import any_net

EXAMPLES = int(os.environ.get("NNGRAPH_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="NNGRAPH_FUZZ_SEED" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(any_net)
def test_random_architectures_are_sound_and_exact(net_and_inputs):
    model, inputs = net_and_inputs
    model.eval()
    report = nngraph.verify(model, inputs, num_permutations=2)
    assert report.ok, f"{model.family} {model.steps}: {report}"


@settings(max_examples=max(EXAMPLES // 10, 10), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(any_net)
def test_encoder_is_invariant_on_random_architectures(net_and_inputs):
    model, inputs = net_and_inputs
    model.eval()
    kernels = nngraph.to_graph(model, inputs).kernel_shape  # (E, 3): a flatten head's map may be 10 wide
    inputs = tuple(x.double() for x in inputs)
    box = tuple(max(a, b) for a, b in zip((3, 9, 9), kernels.max(0).values.tolist()))
    encoder = nngraph.NeuralGraphEncoder(3, hidden_dim=8, num_layers=2, max_kernel_box=box).double()
    assert assert_invariant(encoder, model, inputs, generator=torch.Generator().manual_seed(0)) < 1e-10
