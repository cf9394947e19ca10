"""The statistics baseline: per-tensor mean and std of its zoo, in every sample."""
from __future__ import annotations

import pytest
import torch

import nngraph
from nngraph.generate import GaussianGenerator, TensorStats

from .zoo import INPUTS, cnn, mlp, zoo


def _per_tensor(models) -> dict[str, tuple[float, float]]:
    """Mean and (population) std of every parameter tensor over all models, read from the modules."""
    out = {}
    for name, _ in models[0].named_parameters():
        values = torch.cat([dict(m.named_parameters())[name].detach().double().reshape(-1) for m in models])
        out[name] = (float(values.mean()), float(values.std(unbiased=False)))
    return out


@pytest.mark.parametrize("make", [mlp, cnn])
def test_statistics_are_the_zoos_per_tensor(make):
    models, graphs, acc = zoo(make, n=6)
    gen = GaussianGenerator().fit(graphs, acc, template=models[0], example_inputs=INPUTS)
    expected = _per_tensor(models)
    for g, name in enumerate(gen.space.names):
        if name in expected:
            assert float(gen.stats.mean[g]) == pytest.approx(expected[name][0], abs=1e-7)
            assert float(gen.stats.std[g]) == pytest.approx(expected[name][1], abs=1e-7)


def test_samples_match_the_zoos_statistics():
    models, graphs, acc = zoo(mlp, n=6)
    gen = GaussianGenerator().fit(graphs, acc, template=models[0])
    samples = gen.sample(models[0], 400, condition=0.5, seed=0)
    modules = [nngraph.from_graph(g, models[0]) for g in samples]
    assert all(torch.isfinite(m(INPUTS)).all() for m in modules[:5])
    got, expected = _per_tensor(modules), _per_tensor(models)
    for name, (mean, std) in expected.items():
        numel = dict(models[0].named_parameters())[name].numel()
        se = std / (400 * numel) ** 0.5  # standard error of the mean of 400 * numel draws
        assert got[name][0] == pytest.approx(mean, abs=6 * se), name
        assert got[name][1] == pytest.approx(std, rel=0.1), name


def test_tensor_stats_normalize_round_trip_and_floor():
    groups = torch.tensor([0, 0, 1, 1, 1])
    flat = torch.tensor([[1.0, 3.0, 5.0, 5.0, 5.0], [3.0, 1.0, 5.0, 5.0, 5.0]])
    stats = TensorStats.fit(flat, groups)
    assert stats.mean.tolist() == [2.0, 5.0] and stats.std[0] == 1.0 and stats.std[1] == 1e-8
    z = stats.normalize(flat)
    assert torch.equal(z[:, 2:], torch.zeros(2, 3))
    torch.testing.assert_close(stats.denormalize(z), flat)


def test_wrong_template_and_condition():
    models, graphs, acc = zoo(mlp, n=4)
    gen = GaussianGenerator().fit(graphs, acc, template=models[0])
    with pytest.raises(nngraph.GraphMismatchError) as info:
        gen.sample(cnn(0), 2)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="one condition or 3"):
        gen.sample(models[0], 3, condition=[0.1, 0.2])
    with pytest.raises(RuntimeError, match="not fitted"):
        GaussianGenerator().sample(models[0], 1)
