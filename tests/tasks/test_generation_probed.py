"""The filter of ``latent_probed``: what it reads of a model's outputs (against a loop), that its predictor recovers
an accuracy it can see, and that its choice reads no label and no test image."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tasks.generation.probed import (FunctionAccuracyPredictor, choose_by_function, function_features, model_logits,
                                     probe_inputs)


def _features_by_loop(logits: torch.Tensor, consensus: torch.Tensor) -> list[list[float]]:
    """The obvious way, one model and one probe at a time, in plain Python floats."""
    rows = []
    for model in logits.tolist():
        probs_all, stats, agree, on_consensus = [], [], [], []
        for k, z in enumerate(model):
            if not all(math.isfinite(v) for v in z):
                z = [0.0] * len(z)
            exp = [math.exp(v - max(z)) for v in z]
            probs = [e / sum(exp) for e in exp]
            ranked = sorted(probs, reverse=True)
            top = max(range(len(probs)), key=lambda c: (probs[c], -c))  # the first largest, as argmax
            probs_all += probs
            stats += [ranked[0], -sum(q * math.log(max(q, 1e-12)) for q in probs), ranked[0] - ranked[1]]
            agree.append(float(top == int(consensus[k])))
            on_consensus.append(probs[int(consensus[k])])
        p = len(model)
        rows.append(probs_all + stats + agree + [sum(agree) / p, sum(s for s in stats[::3]) / p, sum(on_consensus) / p])
    return rows


def test_function_features_against_a_loop():
    logits = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3  # (M, P, C)
    logits[2, 1, 0] = float("nan")  # a diverged output reads as uniform
    consensus = torch.tensor([0, 2, 1, 1, 0])
    got = function_features(logits, consensus)
    assert got.shape == (4, 5 * (3 + 4) + 3)
    torch.testing.assert_close(got, torch.tensor(_features_by_loop(logits, consensus), dtype=torch.float64),
                               rtol=1e-10, atol=1e-10)


def _zoo(n: int, seed: int) -> list[nn.Module]:
    models = []
    for i in range(n):
        torch.manual_seed(seed + i)
        models.append(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4)))
    return models


def test_the_predictor_recovers_an_accuracy_it_can_read():
    """When a model's 'accuracy' is its agreement with the zoo's consensus on the probes (one of the features),
    held-out runs are ranked almost perfectly and new models are predicted; a shuffled accuracy is not learned."""
    inputs = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    zoo, new = _zoo(40, 0), _zoo(10, 100)
    logits = model_logits(zoo, inputs)  # (M, P, C)
    consensus = torch.softmax(logits, -1).mean(0).argmax(-1)  # (P,): the zoo's favoured class per probe

    def agreement(models):
        return (model_logits(models, inputs).argmax(-1) == consensus).double().mean(1).numpy()  # (M,)

    acc, runs = agreement(zoo), np.arange(40) // 2
    predictor = FunctionAccuracyPredictor(inputs).fit(zoo, acc, runs)
    assert torch.equal(predictor.consensus, consensus)
    assert predictor.heldout_tau > 0.9
    np.testing.assert_allclose(predictor.predict(new), agreement(new), atol=0.05)
    shuffled = np.random.default_rng(0).permutation(acc)
    assert FunctionAccuracyPredictor(inputs).fit(zoo, shuffled, runs).heldout_tau < 0.5
    # the task passes 64-bit derived seeds; scikit-learn takes 32-bit ones
    assert FunctionAccuracyPredictor(inputs, kind="gbm", seed=2**63 - 1).fit(zoo, acc, runs).heldout_tau > 0.7
    with pytest.raises(ValueError, match="among choices"):
        FunctionAccuracyPredictor(inputs, kind="lasso")
    with pytest.raises(ValueError, match="cannot draw 65 probe images from 64"):
        probe_inputs(torch.zeros(64, 6), 65)


def test_the_choice_reads_no_label_and_no_test_image():
    """Shuffled training and test labels and test images replaced by noise leave the kept samples unchanged;
    other training images or other zoo accuracies change them (so the check can fail)."""
    g = torch.Generator().manual_seed(2)
    x_tr, x_te = torch.randn(200, 6, generator=g), torch.randn(100, 6, generator=g)
    y_tr, y_te = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (100,), generator=g)
    zoo, pool = _zoo(20, 0), _zoo(24, 50)
    zoo_acc = np.random.default_rng(0).random(20)
    runs, pool_target = np.arange(20) // 2, np.repeat([0.3, 0.7], 12)

    def choose(data, acc=zoo_acc):
        return choose_by_function(pool, pool_target, zoo, acc, runs, data, per_target=3, probes=32, seed=0)[0]

    kept = choose((x_tr, y_tr, x_te, y_te, 4))
    assert len(kept) == 6 and set(pool_target[kept[:3]]) == {0.3} and set(pool_target[kept[3:]]) == {0.7}
    blind = (x_tr, y_tr[torch.randperm(200, generator=g)], torch.randn(100, 6, generator=g),
             y_te[torch.randperm(100, generator=g)], 4)
    assert choose(blind).tolist() == kept.tolist()
    assert choose((torch.randn(200, 6, generator=g), y_tr, x_te, y_te, 4)).tolist() != kept.tolist()
    assert choose((x_tr, y_tr, x_te, y_te, 4), 1 - zoo_acc).tolist() != kept.tolist()


def test_the_at_least_rule_keeps_samples_predicted_above_the_target_plus_the_heldout_margin():
    """``rule="at_least"``: every kept sample's predicted accuracy is at least its target plus the margin when
    enough qualify; ``margin="heldout"`` is the predictor's median absolute residual on held-out runs (against its
    definition); unknown rules and margins are one-line errors."""
    from sklearn.linear_model import RidgeCV

    from tasks.generation.filtering import heldout_predictions

    g = torch.Generator().manual_seed(3)
    data = (torch.randn(100, 6, generator=g), None, None, None, 4)
    zoo, pool = _zoo(30, 0), _zoo(40, 200)
    runs = np.arange(30) // 2
    inputs = probe_inputs(data[0], 32, 0)
    consensus = torch.softmax(model_logits(zoo, inputs), -1).mean(0).argmax(-1)  # (P,)
    zoo_acc = (model_logits(zoo, inputs).argmax(-1) == consensus).double().mean(1).numpy()  # (M,) readable
    pool_target = np.repeat(np.quantile(zoo_acc, [0.3, 0.6]), 20)  # (40,)

    def choose(rule, margin):
        return choose_by_function(pool, pool_target, zoo, zoo_acc, runs, data, per_target=3, probes=32, seed=0,
                                  rule=rule, margin=margin)

    kept, predictor, margin = choose("at_least", "heldout")
    x = predictor.features(zoo)  # (M, F)
    heldout = heldout_predictions(lambda: RidgeCV(alphas=predictor.ALPHAS), x, zoo_acc, runs)  # (M,)
    assert margin == predictor.heldout_residual == pytest.approx(np.median(np.abs(zoo_acc - heldout)))
    assert 0 < margin < 0.5
    predicted = predictor.predict(pool)  # (40,)
    for t in np.unique(pool_target):
        assert (predicted[pool_target == t] >= t + margin).sum() >= 3  # the premise: enough qualify
    assert (predicted[kept] >= pool_target[kept] + margin).all()
    nearest, _, zero = choose("nearest", "heldout")
    assert zero == 0.0 and not (predicted[nearest] >= pool_target[nearest] + margin).all()
    assert choose("at_least", 0.0)[0].tolist() != kept.tolist()
    with pytest.raises(ValueError, match="Could not resolve rule 'above'"):
        choose("above", 0.0)
    with pytest.raises(ValueError, match="margin must be a number or 'heldout'"):
        choose("at_least", "spread")
