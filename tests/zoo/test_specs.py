import pytest
import torch
from torch import fx

from nngraph.modules import Sine
from nngraph.zoo import ResidualBlock, build_model, count_parameters, siren_spec
from nngraph.zoo.specs import ACTIVATIONS

IN_SHAPE = [1, 8, 8]

SPECS = [
    {"family": "mlp", "in_shape": IN_SHAPE, "hidden": [16, 8], "num_classes": 10, "act": "gelu", "norm": "layer",
     "dropout": 0.1},
    {"family": "mlp", "in_shape": IN_SHAPE, "hidden": [16], "num_classes": 10, "act": "tanh", "norm": "batch",
     "dropout": 0.0},
    {"family": "cnn", "in_shape": IN_SHAPE, "channels": [4, 8], "strides": [1, 2], "kernel_size": 5,
     "act": "silu", "norm": "batch", "head": "flatten", "dropout": 0.0, "num_classes": 10},
    {"family": "cnn", "in_shape": [3, 7, 7], "channels": [4, 4, 4], "strides": [2, 2, 2], "kernel_size": 3,
     "act": "relu", "norm": "none", "head": "gap", "dropout": 0.3, "num_classes": 5},
    {"family": "resnet", "in_shape": IN_SHAPE, "width": 6, "blocks": 2, "stem_stride": 2, "kernel_size": 3,
     "act": "relu", "norm": "batch", "head": "flatten", "dropout": 0.0, "num_classes": 10},
    {"family": "resnet", "in_shape": IN_SHAPE, "width": 4, "blocks": 1, "stem_stride": 1, "kernel_size": 5,
     "act": "gelu", "norm": "none", "head": "gap", "dropout": 0.0, "num_classes": 10},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s['family']}-{s['norm']}-{s.get('head', '')}")
def test_classifier_specs_build_trace_and_run(spec):
    model = build_model(spec).eval()
    x = torch.randn(3, *spec["in_shape"])
    assert model(x).shape == (3, spec["num_classes"])
    traced = fx.symbolic_trace(model)  # the converter relies on torch.fx
    torch.testing.assert_close(traced(x), model(x))
    # only plain torch.nn layers (plus our residual block)
    for m in model.modules():
        assert m.__module__.startswith("torch.nn") or isinstance(m, ResidualBlock), type(m)


def test_residual_block_is_a_residual():
    block = ResidualBlock(4, 3, "relu", "none")
    torch.nn.init.zeros_(block.conv2.weight)
    torch.nn.init.zeros_(block.conv2.bias)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), x)


def test_siren_spec_builds_linear_sine_stack():
    model = build_model(siren_spec(2, [32, 16], 3, w0=30.0))
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "Sine", "Linear", "Sine", "Linear"]
    assert all(m.w0 == 30.0 for m in model if isinstance(m, Sine))
    assert model(torch.zeros(5, 2)).shape == (5, 3)
    assert count_parameters(siren_spec(2, [32, 32], 1)) == 2 * 32 + 32 + 32 * 32 + 32 + 32 + 1


def test_unknown_family_and_activation_are_named():
    with pytest.raises(ValueError, match="among choices"):
        build_model({"family": "transformer"})
    bad = dict(SPECS[0], act="swish")
    with pytest.raises(ValueError, match=str(sorted(ACTIVATIONS)).replace("[", r"\[").replace("]", r"\]")):
        build_model(bad)
