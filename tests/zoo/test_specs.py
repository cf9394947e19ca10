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
    {"family": "vit", "in_shape": IN_SHAPE, "patch": 2, "dim": 16, "depth": 2, "heads": 2, "mlp_ratio": 2,
     "act": "gelu", "dropout": 0.0, "num_classes": 10},
    {"family": "vit", "in_shape": IN_SHAPE, "patch": 4, "dim": 8, "depth": 1, "heads": 4, "mlp_ratio": 1,
     "act": "relu", "dropout": 0.1, "num_classes": 10},
    {"family": "gated", "in_shape": IN_SHAPE, "dim": 16, "hidden": 24, "depth": 2, "act": "silu", "num_classes": 10},
    {"family": "gated", "in_shape": [3, 7, 7], "dim": 8, "hidden": 8, "depth": 1, "act": "tanh", "num_classes": 5},
    {"family": "rnn", "in_shape": IN_SHAPE, "cell": "lstm", "hidden": 6, "num_layers": 2, "bidirectional": True,
     "readout": "h_n", "dropout": 0.1, "num_classes": 10},
    {"family": "rnn", "in_shape": [3, 7, 7], "cell": "rnn_relu", "hidden": 5, "num_layers": 1, "bidirectional": False,
     "readout": "last", "dropout": 0.0, "num_classes": 5},
]
NEW_FAMILIES = ("vit", "gated", "rnn")  # modules of their own (nngraph.zoo.blocks); layers with converters are no fx
# leaves for fx.symbolic_trace


def _id(s):
    kind, extent = s.get("norm", s.get("act", s.get("cell"))), s.get("head", s.get("depth", s.get("readout")))
    return f"{s['family']}-{kind}-{extent}"


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_classifier_specs_build_trace_and_run(spec):
    model = build_model(spec).eval()
    x = torch.randn(3, *spec["in_shape"])
    assert model(x).shape == (3, spec["num_classes"])
    if spec["family"] in NEW_FAMILIES:
        return  # traced by nngraph's tracer (layers with converters stay leaves): test_new_families_convert_soundly
    traced = fx.symbolic_trace(model)  # the converter relies on torch.fx
    torch.testing.assert_close(traced(x), model(x))
    # only plain torch.nn layers (plus our residual block)
    for m in model.modules():
        assert m.__module__.startswith("torch.nn") or isinstance(m, ResidualBlock), type(m)


@pytest.mark.parametrize("spec", [s for s in SPECS if s["family"] in NEW_FAMILIES], ids=_id)
def test_new_families_convert_soundly(spec):
    import nngraph

    model = build_model(spec).eval()
    report = nngraph.verify(model, torch.randn(3, *spec["in_shape"]))
    assert report.ok, report
    assert report.num_permutable > 0.9 * report.num_hidden  # the hidden neurons are free to move, not all fixed


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


def test_spec_size_is_computed_without_building():
    from nngraph.zoo.specs import spec_size

    for spec in SPECS + [siren_spec(2, [32, 16], 3)]:
        size = spec_size(spec)
        assert size.parameters == count_parameters(spec), spec
        model = build_model(spec).eval()
        x = torch.zeros(1, *spec["in_shape"]) if "in_shape" in spec else torch.zeros(1, 2)
        assert size.input_elements == x.numel()


@pytest.mark.parametrize("change, limit", [
    ({"hidden": [60000, 60000]}, "max_parameters"),
    ({"hidden": [8] * 1000}, "max_depth"),
    ({"hidden": [20000]}, "max_width"),
    ({"in_shape": [3, 10000, 10000]}, "max_input_elements"),
])
def test_oversized_specs_are_refused_before_allocation(monkeypatch, change, limit):
    from nngraph.errors import SpecError

    def refuse(*args, **kwargs):
        raise AssertionError("a layer was allocated")

    monkeypatch.setattr(torch.nn.Linear, "__init__", refuse)
    with pytest.raises(SpecError, match=limit):
        build_model({**SPECS[0], **change})


def test_cnn_activations_are_limited():
    from nngraph.errors import SpecError
    from nngraph.zoo.specs import SpecLimits

    spec = {**SPECS[2], "in_shape": [1, 512, 512], "channels": [256, 256], "strides": [1, 1]}
    with pytest.raises(SpecError, match="max_activations"):
        build_model(spec)
    with pytest.raises(SpecError, match="max_activations"):
        build_model(SPECS[2], limits=SpecLimits(max_activations=100))


@pytest.mark.parametrize("change, text", [
    ({"hidden": [8, -1]}, "hidden"), ({"hidden": [8.5]}, "hidden"), ({"hidden": "8"}, "hidden"),
    ({"hidden": [True]}, "hidden"), ({"in_shape": [1, 8]}, "in_shape"), ({"num_classes": 0}, "num_classes"),
])
def test_malformed_sizes_are_named(change, text):
    from nngraph.errors import SpecError

    with pytest.raises(SpecError, match=text):
        build_model({**SPECS[0], **change})


def test_missing_spec_key_is_named():
    from nngraph.errors import SpecError

    spec = dict(SPECS[2])
    del spec["strides"]
    with pytest.raises(SpecError, match="strides"):
        build_model(spec)
    with pytest.raises(SpecError, match="strides"):
        build_model({**SPECS[2], "strides": [1]})  # one stride for two layers
