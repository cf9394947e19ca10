"""ProbeGen: its generator is affine, it only sees outputs (invariant to relabelled hidden neurons, float64),
it learns on a tiny zoo, a killed fit resumes to the same weights, its cost is counted."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import nngraph
from nngraph.probing import ProbeGen, ProbeGenerator, fit_probegen, forward_flops, model_outputs, probing_flops
from nngraph.symmetry import permute_model, random_permutation
from nngraph.train import read_metrics

IN, HIDDEN, CLASSES = 4, 8, 3


def _mlp(seed: int, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh(),
                         nn.Linear(HIDDEN, CLASSES)).to(dtype)


def _zoo(n: int = 24):
    """``(models, accuracies)``: noisy copies of one teacher, noise growing with the index, scored against the
    teacher's labels on 128 fixed inputs (accuracy falls with the noise, with scatter)."""
    teacher = _mlp(0)
    x = torch.randn(128, IN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        labels = teacher(x).argmax(-1)
    models, acc = [], []
    for i in range(n):
        g = torch.Generator().manual_seed(100 + i)
        m = _mlp(0)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 1.5 * i / n)
            acc.append(float((m(x).argmax(-1) == labels).float().mean()))
        models.append(m)
    return models, torch.tensor(acc)


def test_the_generator_is_an_affine_map_of_the_codes_and_starts_at_its_inputs():
    start = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.set_default_dtype(torch.float64)
        try:
            gen = ProbeGenerator(start, latent_dim=4, hidden_dim=6, depth=3)
        finally:
            torch.set_default_dtype(torch.float32)
        torch.testing.assert_close(gen(), start, rtol=0, atol=0)  # the last layer starts at zero
        assert repr(gen) == "ProbeGenerator(probes=5, in_shape=(2, 3), latent_dim=4, depth=3)"
        for p in gen.layers.parameters():
            p.normal_()
        assert all(isinstance(m, nn.Linear) for m in gen.layers)  # no activation between the layers
        z1, z2 = torch.randn(7, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
        zero = torch.zeros(7, 4, dtype=torch.float64)
        lin = lambda z: gen.decode(z) - gen.decode(zero)  # noqa: E731
        torch.testing.assert_close(lin(2.0 * z1 - 0.5 * z2), 2.0 * lin(z1) - 0.5 * lin(z2), rtol=1e-10, atol=1e-10)
        assert gen().shape == (5, 2, 3) and gen.decode(z1).shape == (7, 2, 3)


def test_the_generator_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match="depth"):
        ProbeGenerator(torch.zeros(3, 2), depth=0)
    with pytest.raises(ValueError, match=r"\(P, \*in_shape\)"):
        ProbeGenerator(torch.zeros(3))


def test_predictions_are_invariant_to_relabelled_hidden_neurons_float64():
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        probegen = ProbeGen(torch.randn(6, IN), CLASSES, hidden=(16,))
        for p in probegen.generator.layers.parameters():
            nn.init.normal_(p)  # probes away from their start
        model = _mlp(3, torch.float64)
        layout = nngraph.build_layout(model, (torch.randn(2, IN),))
        perm = random_permutation(layout, torch.Generator().manual_seed(0))  # (N,)
        assert not torch.equal(perm, torch.arange(len(perm)))
        twin = permute_model(model, perm, layout=layout)
        assert not torch.equal(twin[0].weight, model[0].weight)  # the weights moved...
        probes = probegen.generator().detach()
        torch.testing.assert_close(twin(probes), model(probes), rtol=1e-12, atol=1e-12)  # ...the function did not
        torch.testing.assert_close(probegen([twin]), probegen([model]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(probegen.predict([twin, model]), probegen.predict([model, model]), rtol=1e-12,
                                   atol=1e-12)
    finally:
        torch.set_default_dtype(torch.float32)


def test_gradients_reach_the_generator_and_reader_but_not_the_probed_model():
    models, acc = _zoo(4)
    probegen = ProbeGen(torch.randn(5, IN), CLASSES, hidden=(8,))
    probegen(models).sum().backward()
    assert probegen.generator.layers[-1].weight.grad.abs().sum() > 0
    assert probegen.reader[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for m in models for p in m.parameters())
    assert all(m.training for m in models)  # run in eval mode, their train mode restored


def test_outputs_of_a_diverged_model_read_as_uniform_and_send_no_nan_gradient():
    model = _mlp(0)
    with torch.no_grad():
        model[-1].weight.fill_(float("nan"))
    probes = torch.randn(3, IN, requires_grad=True)
    out = model_outputs(model, probes)
    torch.testing.assert_close(out, torch.full((3, CLASSES), 1.0 / CLASSES))
    assert torch.isfinite(model_outputs(_mlp(1), probes, "raw")).all()
    with pytest.raises(ValueError, match="among choices"):
        model_outputs(model, probes, "logits")


def test_it_learns_on_a_tiny_zoo_and_beats_the_mean(tmp_path):
    models, acc = _zoo(36)
    train, val = list(range(0, 36, 3)) + list(range(1, 36, 3)), list(range(2, 36, 3))
    torch.manual_seed(0)
    probegen = ProbeGen(torch.randn(8, IN), CLASSES, hidden=(32,))
    result = fit_probegen(probegen, [models[i] for i in train], acc[train], [models[i] for i in val], acc[val],
                          str(tmp_path / "run"), epochs=40, batch_size=8, lr=3e-3, patience=None)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]
    pred = probegen.predict([models[i] for i in val]).squeeze(-1)  # (12,)
    mean_mse = float((acc[val] - acc[train].mean()).pow(2).mean())
    assert float((pred - acc[val]).pow(2).mean()) < 0.5 * mean_mse


class _Killed(Exception):
    pass


class DyingProbeGen(ProbeGen):
    """Dies at its ``die_at``-th training forward."""

    die_at, calls = None, 0

    def forward(self, models):
        if self.training:
            DyingProbeGen.calls += 1
            if DyingProbeGen.calls == DyingProbeGen.die_at:
                raise _Killed
        return super().forward(models)


def _fit(cls, tmp_path, name):
    models, acc = _zoo(12)
    torch.manual_seed(0)
    probegen = cls(torch.randn(4, IN), CLASSES, hidden=(8,))
    result = fit_probegen(probegen, models[:8], acc[:8], models[8:], acc[8:], str(tmp_path / name), epochs=4,
                          batch_size=4, patience=None, seed=2)
    return probegen, result


def test_a_killed_fit_resumes_to_the_same_weights(tmp_path):
    full, _ = _fit(ProbeGen, tmp_path, "full")
    DyingProbeGen.calls, DyingProbeGen.die_at = 0, 2 * 2 + 1  # 8 models in batches of 4: dies in epoch 3
    with pytest.raises(_Killed):
        _fit(DyingProbeGen, tmp_path, "cut")
    assert [r["epoch"] for r in read_metrics(str(tmp_path / "cut" / "metrics.jsonl"))] == [1, 2]
    assert not [f for f in os.listdir(tmp_path / "cut") if f.startswith(".tmp-")]  # atomic writes only
    DyingProbeGen.calls, DyingProbeGen.die_at = 0, None
    resumed, result = _fit(DyingProbeGen, tmp_path, "cut")
    assert DyingProbeGen.calls == 2 * 2 and result.epochs_run == 4  # only epochs 3 and 4 were trained
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="other settings"):  # another zoo size is another run
        models, acc = _zoo(12)
        fit_probegen(ProbeGen(torch.randn(4, IN), CLASSES, hidden=(8,)), models[:6], acc[:6], models[8:], acc[8:],
                     str(tmp_path / "cut"), epochs=4, batch_size=4, patience=None, seed=2)


def test_fit_refuses_targets_that_do_not_match_the_models(tmp_path):
    models, acc = _zoo(6)
    with pytest.raises(ValueError, match="4 train models but targets of shape"):
        fit_probegen(ProbeGen(torch.randn(4, IN), CLASSES), models[:4], acc[:3], models[4:], acc[4:], str(tmp_path))


def test_cost_counts_the_probe_forward_passes():
    model = _mlp(0)
    per_input = 2 * (IN * HIDDEN + HIDDEN * HIDDEN + HIDDEN * CLASSES)  # multiply-adds of the three layers
    assert forward_flops(model, torch.randn(1, IN)) == per_input
    assert probing_flops([model, _mlp(1)], torch.randn(10, IN)) == 10 * per_input
    probegen = ProbeGen(torch.randn(10, IN), CLASSES, hidden=(16,))
    assert forward_flops(probegen.reader, torch.randn(1, 10 * CLASSES)) == 2 * (10 * CLASSES * 16 + 16)
    assert model.training  # the mode is restored
