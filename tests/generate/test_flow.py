"""The flow generator: samples of the template's architecture that run, an equivariant denoiser (float64),
resume after a kill, the template check, and files read with weights_only=True."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

import nngraph
from nngraph.errors import CheckpointError
from nngraph.generate import FlatDenoiser, FlowGenerator, GraphDenoiser, WeightSpace, load_generator
from nngraph.train import read_metrics

from .zoo import INPUTS, Killed, cnn, dying, mlp, zoo

TINY = {"hidden_dim": 8, "num_layers": 1}


def _fit(tmp_path, name="run", denoiser="graph", epochs=2, make=mlp, conditions="scalar", **kw):
    models, graphs, acc = zoo(make, n=10)
    cond = {"scalar": acc, "class": torch.arange(10) % 3, "none": None}[conditions]
    gen = FlowGenerator(denoiser, **TINY)
    result = gen.fit(graphs, cond, template=models[0], example_inputs=INPUTS, out_dir=str(tmp_path / name),
                     epochs=epochs, batch_size=4, progress=False, **kw)
    return gen, models, result


@pytest.mark.parametrize("denoiser", ["graph", "flat"])
@pytest.mark.parametrize("make", [mlp, cnn])
def test_samples_have_the_template_structure_and_run(tmp_path, denoiser, make):
    gen, models, result = _fit(tmp_path, denoiser=denoiser, make=make)
    assert [r["epoch"] for r in result.history] == [1, 2]
    template = nngraph.to_graph(models[0], INPUTS)
    samples = gen.sample(template, 3, condition=[0.2, 0.5, 0.8], steps=4, seed=0)
    assert len(samples) == 3
    for g in samples:
        for key in ("edge_index", "edge_type", "kernel_shape", "node_type", "layer", "act"):
            assert torch.equal(g[key], template[key]), key
        assert g.x.shape == template.x.shape and g.edge_attr.shape == template.edge_attr.shape
        assert g.x.dtype == template.x.dtype
        module = nngraph.from_graph(g, models[1])
        out = module(INPUTS)
        assert out.shape == (3, 3) and torch.isfinite(out).all()
        assert not torch.equal(module[-1].weight, models[1][-1].weight)  # new weights, not the module's
    again = gen.sample(models[0], 3, condition=[0.2, 0.5, 0.8], steps=4, seed=0)
    assert torch.equal(again[2].edge_attr, samples[2].edge_attr)  # seeded


@pytest.mark.parametrize("conditions", ["class", "none"])
def test_class_and_unconditional_generators(tmp_path, conditions):
    gen, models, _ = _fit(tmp_path, epochs=1, conditions=conditions)
    if conditions == "class":
        samples = gen.sample(models[0], 4, condition=[0, 1, 2, 2], steps=2, guidance=2.0, seed=1)
        with pytest.raises(ValueError, match="in 0..2"):
            gen.sample(models[0], 1, condition=3)
    else:
        samples = gen.sample(models[0], 4, steps=2, seed=1)
        with pytest.raises(ValueError, match="without conditions"):
            gen.sample(models[0], 1, condition=0.5)
    assert all(torch.isfinite(nngraph.from_graph(g, models[0])(INPUTS)).all() for g in samples)


# ------------------------------------------------------------------ equivariance
def denoiser_equivariance_error(denoiser, model, seed: int = 0) -> float:
    """Relabel the hidden neurons of ``model``'s graph (float64), check that the model's outputs do not change,
    then return the largest difference between the denoiser's output on the relabelled graph and its output on
    the graph, relabelled."""
    layout = nngraph.build_layout(model, (INPUTS.double(),))
    graph = layout.to_graph(model)
    perm = layout.random_node_permutation(torch.Generator().manual_seed(seed))
    assert not torch.equal(perm, torch.arange(perm.numel()))
    permuted = layout.permute_graph(graph, perm)
    # the check checks itself: the relabelled graph is the same function, and not the same weights
    torch.testing.assert_close(nngraph.from_graph(permuted, model)(INPUTS.double()), model(INPUTS.double()),
                               rtol=0, atol=1e-12)
    assert not torch.equal(permuted.edge_attr, graph.edge_attr)
    space = WeightSpace.of(model, INPUTS.double())
    t, cond = torch.tensor([0.3], dtype=torch.float64), torch.randn(1, denoiser.cond_dim, dtype=torch.float64)
    with torch.no_grad():
        out = denoiser(space.flatten([graph]), t, cond)  # (1, D)
        out_of_permuted = denoiser(space.flatten([permuted]), t, cond)
    out_graph = space.graphs(out)[0]
    expected = space.flatten([layout.permute_graph(out_graph, perm)])  # the output, relabelled
    assert float(out.abs().max()) > 1e-3  # an output that is not trivially zero
    return float((out_of_permuted - expected).abs().max())


@pytest.mark.parametrize("make", [mlp, cnn])
def test_graph_denoiser_is_permutation_equivariant(make):
    model = make(0, torch.float64)
    torch.manual_seed(0)
    denoiser = GraphDenoiser(WeightSpace.of(model, INPUTS.double()), cond_dim=4, hidden_dim=16, num_layers=2).double()
    for seed in range(3):
        assert denoiser_equivariance_error(denoiser, model, seed) < 1e-10


def test_the_flat_twin_is_not_equivariant():
    """The same check fails for the twin: it is able to fail."""
    model = mlp(0, torch.float64)
    torch.manual_seed(0)
    twin = FlatDenoiser(WeightSpace.of(model, INPUTS.double()), cond_dim=4, hidden_dim=16, num_layers=1).double()
    assert denoiser_equivariance_error(twin, model) > 1e-3


# ------------------------------------------------------------------ resume
DyingFlow = dying(FlowGenerator)


def test_a_killed_fit_resumes_to_the_same_result(tmp_path):
    models, graphs, acc = zoo(mlp, n=10)
    options = dict(template=models[0], epochs=4, batch_size=4, progress=False, seed=3)
    full = FlowGenerator("graph", **TINY)
    full.fit(graphs, acc, out_dir=str(tmp_path / "full"), **options)
    # 9 training models in batches of 4: 3 batches per epoch; die in the middle of epoch 3
    DyingFlow.calls, DyingFlow.die_at = 0, 2 * 3 + 2
    with pytest.raises(Killed):
        DyingFlow("graph", **TINY).fit(graphs, acc, out_dir=str(tmp_path / "cut"), **options)
    assert [r["epoch"] for r in read_metrics(str(tmp_path / "cut" / "metrics.jsonl"))] == [1, 2]
    assert not os.path.exists(tmp_path / "cut" / "generator.pt")
    DyingFlow.calls, DyingFlow.die_at = 0, None
    resumed = DyingFlow("graph", **TINY)
    result = resumed.fit(graphs, acc, out_dir=str(tmp_path / "cut"), **options)
    assert DyingFlow.calls == 2 * 3  # only epochs 3 and 4 were trained
    assert result.epochs_run == 4
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    a = full.sample(models[0], 2, condition=0.5, steps=3, seed=0)
    b = load_generator(str(tmp_path / "cut" / "generator.pt")).sample(models[0], 2, condition=0.5, steps=3, seed=0)
    torch.testing.assert_close(a[1].edge_attr, b[1].edge_attr, rtol=0, atol=1e-5)


def test_other_data_in_the_same_directory_is_refused(tmp_path):
    models, graphs, acc = zoo(mlp, n=10)
    FlowGenerator("graph", **TINY).fit(graphs, acc, template=models[0], out_dir=str(tmp_path), epochs=1,
                                        progress=False)
    with pytest.raises(ValueError, match="other settings"):
        FlowGenerator("graph", **TINY).fit(graphs, acc.flip(0), template=models[0], out_dir=str(tmp_path),
                                            epochs=1, progress=False)


# ------------------------------------------------------------------ template and files
def test_sampling_another_architecture_is_a_one_line_error(tmp_path):
    gen, models, _ = _fit(tmp_path, epochs=1)
    for other in (cnn(0), nngraph.to_graph(cnn(0), INPUTS)):
        with pytest.raises(nngraph.GraphMismatchError) as info:
            gen.sample(other, 2, condition=0.5)
        assert "\n" not in str(info.value) and "not the architecture this generator was fitted on" in str(info.value)


def test_fit_refuses_graphs_of_another_architecture(tmp_path):
    models, graphs, acc = zoo(mlp, n=4)
    graphs[2] = nngraph.to_graph(cnn(0), INPUTS)
    with pytest.raises(nngraph.GraphMismatchError, match=r"graphs\[2\]"):
        FlowGenerator("graph", **TINY).fit(graphs, acc, template=models[0], out_dir=str(tmp_path), epochs=1)


def test_loading_uses_weights_only(tmp_path, monkeypatch):
    gen, models, _ = _fit(tmp_path, epochs=1)
    path = str(tmp_path / "run" / "generator.pt")
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_generator(path)
    assert calls == [True]
    assert isinstance(loaded, FlowGenerator) and loaded.space.fingerprint == gen.space.fingerprint
    a = gen.sample(models[0], 2, condition=0.4, steps=3, seed=0)
    b = loaded.sample(models[0], 2, condition=0.4, steps=3, seed=0)
    assert torch.equal(a[0].edge_attr, b[0].edge_attr) and torch.equal(a[1].x, b[1].x)


class Payload:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (os.system, ("echo unpickled",))


@pytest.mark.parametrize("content", ["object", "garbage", "other dict"])
def test_unsafe_or_foreign_files_are_refused_in_one_line(tmp_path, content):
    path = str(tmp_path / "generator.pt")
    if content == "object":
        with open(path, "wb") as f:
            pickle.dump({"format": "nngraph-weight-generator", "payload": Payload()}, f, protocol=2)
    elif content == "garbage":
        with open(path, "wb") as f:
            f.write(b"not a torch file")
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert "\n" not in str(info.value) and path in str(info.value)
