"""ProbeGraphHybrid: shapes of every ablation, invariance to relabelled hidden neurons (float64), it contains the
probing models (prior, MLP on the outputs) exactly, it reads the output neurons' values directly (checked
against the models' own logits), gradients reach the probes and never the probed models; cross_fit keeps
groups whole and predicts each fold with a fit that did not see it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nngraph
from nngraph.probing import ProbeGraphHybrid, cross_fit, output_neuron_values, output_statistics

CLASSES, PROBES = 4, 5
IN_SHAPE = (1, 6, 6)


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 7), nn.ReLU(), nn.Linear(7, 5), nn.Tanh(),
                         nn.Linear(5, CLASSES))


def _cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.GELU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES))


def _models(dtype=torch.float32) -> list[nn.Module]:
    return [m.to(dtype) for m in (_mlp(0), _cnn(1), _mlp(2))]


def _batch(models, dtype=torch.float32):
    example = torch.randn(2, *IN_SHAPE, dtype=dtype)
    return nngraph.batch_graphs([nngraph.to_graph(m, example) for m in models])


def _hybrid(**kwargs) -> ProbeGraphHybrid:
    torch.manual_seed(5)
    kwargs.setdefault("hidden_dim", 8)
    kwargs.setdefault("num_layers", 2)
    return ProbeGraphHybrid(torch.randn(PROBES, *IN_SHAPE), CLASSES, reader_hidden=(16,),
                            generator={"latent_dim": 4, "hidden_dim": 8}, **kwargs)


def _randomise(module: nn.Module) -> None:
    """Every parameter drawn anew (the zero-initialised last layers and the generator's too)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


def _reference_statistics(logits: torch.Tensor) -> torch.Tensor:
    """output_statistics, one probe at a time with Python's sort."""
    rows = []
    for b in range(logits.shape[0]):
        probs, stats = [], []
        for p in range(logits.shape[1]):
            z = logits[b, p]
            q = torch.softmax(z, -1) if torch.isfinite(z).all() else torch.full_like(z, 1.0 / len(z))
            s = sorted(q.tolist(), reverse=True)
            entropy = -sum(v * np.log(v) for v in q.tolist() if v > 0)
            probs.append(q)
            stats.append(torch.tensor([s[0], entropy, s[0] - s[1]], dtype=logits.dtype))
        rows.append(torch.cat([torch.cat(probs), torch.cat(stats)]))
    return torch.stack(rows)


def test_output_statistics_against_a_slow_reference():
    logits = torch.randn(3, PROBES, CLASSES, dtype=torch.float64) * 3
    logits[1, 2, 0] = float("nan")  # a diverged model's probe reads as uniform
    torch.testing.assert_close(output_statistics(logits), _reference_statistics(logits), rtol=1e-12, atol=1e-12)


def test_output_neuron_values_are_the_models_logits_in_class_order():
    models = _models()
    batch = _batch(models)
    probes = torch.randn(PROBES, *IN_SHAPE)
    values = torch.cat([nngraph.probe_features(m, probes) for m in models])  # (N, P)
    with torch.no_grad():
        expected = torch.stack([m.eval()(probes).t() for m in models])  # (B, C, P)
    torch.testing.assert_close(output_neuron_values(batch, values, CLASSES), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_outputs=3"):
        output_neuron_values(batch, values, 3)


@pytest.mark.parametrize("kwargs", [{}, {"graph": False}, {"node_probes": False}, {"readout_probes": False},
                                    {"learned": False}, {"node_probes": False, "readout_probes": False}])
def test_every_ablation_gives_one_prediction_per_model(kwargs):
    models = _models()
    hybrid = _hybrid(**kwargs)
    _randomise(hybrid)
    out = hybrid(_batch(models), models)
    assert out.shape == (3, 1) and torch.isfinite(out).all()
    assert hybrid.uses_probes == (kwargs.get("readout_probes", True) or kwargs.get("node_probes", True))


def test_it_refuses_a_model_that_reads_nothing_and_models_that_do_not_fit_the_batch():
    with pytest.raises(ValueError, match="would read nothing"):
        _hybrid(graph=False, readout_probes=False)
    models = _models()
    with pytest.raises(ValueError, match="2 models for a batch of 3"):
        _hybrid()(_batch(models), models[:2])
    with pytest.raises(ValueError, match="call hybrid\\(batch, models\\)"):
        _hybrid()(_batch(models))


@pytest.mark.parametrize("kwargs", [{}, {"learned": False}, {"graph": False}])
def test_predictions_are_invariant_to_relabelled_hidden_neurons_float64(kwargs):
    torch.set_default_dtype(torch.float64)
    try:
        models = _models(torch.float64)
        twins = []
        for i, m in enumerate(models):
            example = torch.randn(2, *IN_SHAPE)
            twin, perm = nngraph.random_hidden_permutation(m, torch.Generator().manual_seed(i), example)
            assert not torch.equal(perm, torch.arange(len(perm)))
            with torch.no_grad():
                probe = torch.randn(3, *IN_SHAPE)
                torch.testing.assert_close(twin(probe), m(probe), rtol=1e-12, atol=1e-12)  # the same function
            twins.append(twin)
        assert any(not torch.equal(a[1].weight if isinstance(a[1], nn.Linear) else a[0].weight,
                                   b[1].weight if isinstance(b[1], nn.Linear) else b[0].weight)
                   for a, b in zip(models, twins))  # ...under other weights
        hybrid = _hybrid(**kwargs)
        _randomise(hybrid)
        hybrid.eval()
        out, out_twin = hybrid(_batch(models, torch.float64), models), hybrid(_batch(twins, torch.float64), twins)
        assert out.std() > 1e-3  # the models are told apart: the check is not of a constant
        torch.testing.assert_close(out_twin, out, rtol=1e-10, atol=1e-10)
    finally:
        torch.set_default_dtype(torch.float32)


def test_untrained_it_is_the_prior_and_with_a_zero_joint_head_it_is_an_mlp_on_the_outputs():
    models = _models()
    batch = _batch(models)
    batch.prior = torch.tensor([[0.3], [-1.2], [0.7]])
    hybrid = _hybrid()
    with torch.no_grad():
        torch.testing.assert_close(hybrid(batch, models), batch.prior, rtol=0, atol=0)  # the prior, exactly
    _randomise(hybrid)
    with torch.no_grad():
        hybrid.joint[-1].weight.zero_()
        hybrid.joint[-1].bias.zero_()
        probes = hybrid.current_probes()  # (P, *in_shape)
        assert not torch.allclose(probes, hybrid.probe_generator.start)  # learned probes, moved from their start
        logits = torch.stack([m.eval()(probes) for m in models])  # (B, P, C): the models' own outputs
        probing = hybrid.reader_out(hybrid.reader_body(_reference_statistics(logits)))  # an MLP on them
        torch.testing.assert_close(hybrid(batch, models), batch.prior + probing, rtol=1e-5, atol=1e-6)
        # the graph's share is what the joint head adds: non-zero once it is
        hybrid.joint[-1].weight.normal_()
        assert (hybrid(batch, models) - batch.prior - probing).abs().max() > 1e-3


def test_gradients_reach_the_probes_and_every_branch_but_not_the_probed_models():
    models = _models()
    frozen = models[1][0].weight.requires_grad_(False)
    hybrid = _hybrid()
    _randomise(hybrid)
    hybrid(_batch(models), models).sum().backward()
    assert hybrid.probe_generator.latent.grad.abs().sum() > 0
    for part in (hybrid.encoder.node_encoder, hybrid.reader_body, hybrid.joint):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert all(p.grad is None for m in models for p in m.parameters())
    assert not frozen.requires_grad and models[0][1].weight.requires_grad  # flags restored as they were


def test_a_model_that_overflows_on_the_probes_gives_them_no_gradient_and_leaves_the_others_share():
    """A near-diverged model (weights of 1e30: its hidden values are inf on the probes, its tanh-bounded logits
    finite) reads finitely forward but its backward is 0 * inf = nan; the probes' gradient is then that of the
    other models alone (the wild zoo's hybrid stopped on such a batch: 'gradient norm nan')."""
    good = _models()[::2]
    bad = _mlp(1)
    with torch.no_grad():
        bad[1].weight.mul_(1e30)
        bad[3].weight.mul_(1e30)
    probes = _hybrid().current_probes().detach()
    assert not torch.isfinite(nngraph.probe_features(bad, probes)).all()  # the premise: it overflows
    grads = []
    for models in (good, [good[0], bad, good[1]]):
        hybrid = _hybrid()
        _randomise(hybrid)
        out = hybrid(_batch(models), models)  # (B, 1)
        out[[0, -1]].sum().backward()  # the good models' predictions
        grads.append(hybrid.probe_generator.latent.grad)
    assert torch.isfinite(grads[1]).all() and grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


def test_probe_features_are_differentiable_in_the_inputs_on_request():
    model = _cnn(0).requires_grad_(False)
    inputs = torch.randn(PROBES, *IN_SHAPE, requires_grad=True)
    values = nngraph.probe_features(model, inputs, grad=True)  # (N, P)
    values.pow(2).sum().backward()
    assert inputs.grad.abs().sum() > 0
    torch.testing.assert_close(values.detach(), nngraph.probe_features(model, inputs.detach()))


def test_cross_fit_predicts_each_fold_with_a_fit_that_did_not_see_its_group():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), 3)  # 12 runs of 3 checkpoints
    x = rng.normal(size=(36, 2))
    y = groups.astype(float)  # a run's checkpoints share a target: a fit on a sibling would know it
    others = [rng.normal(size=(4, 2))]
    seen = []

    def fit_predict(x_fit, y_fit, x_pred):  # predicts the mean target of the rows it was fit on
        seen.append(set(y_fit.tolist()))
        return np.full(len(x_pred), y_fit.mean())

    oof, (pred,) = cross_fit(fit_predict, x, y, groups, others, folds=4, seed=1)
    assert len(seen) == 5 and seen[-1] == set(range(12))  # 4 folds, then the fit on all rows
    for g in range(12):
        rows = groups == g
        assert len(set(oof[rows].tolist())) == 1  # a group's rows share a fold
        fit = next(s for s in seen[:4] if g not in s)
        assert oof[rows][0] == pytest.approx(np.mean([v for v in range(12) if v in fit]))
        assert sum(g not in s for s in seen[:4]) == 1  # held out by exactly one fit
    np.testing.assert_allclose(pred, np.full(4, y.mean()))
    with pytest.raises(ValueError, match="folds must be in"):
        cross_fit(fit_predict, x, y, groups, folds=13)
