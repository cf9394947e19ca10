"""The noise ceiling of accuracy prediction: split-half and bootstrap τ on known correctness matrices, and the
matrix of a real zoo reproducing its manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.common.metrics import kendall_tau
from tasks.diagnostics.noise_ceiling import (bootstrap_tau, ceiling_from_split_half, correctness_matrix, main, noise_ceiling,
                                 split_half_tau)


def _models(accuracies, images: int, seed: int = 0) -> np.ndarray:
    """``(M, images)``: model ``m`` right on each image independently with probability ``accuracies[m]``."""
    rng = np.random.default_rng(seed)
    return rng.random((len(accuracies), images)) < np.asarray(accuracies)[:, None]


def test_well_separated_models_rank_perfectly():
    correct = _models(np.linspace(0.05, 0.95, 10), images=4000)
    assert split_half_tau(correct, repeats=5).min() == pytest.approx(1.0)
    assert bootstrap_tau(correct, repeats=5).min() == pytest.approx(1.0)


def test_models_of_one_accuracy_rank_by_chance_and_the_bootstrap_leans_high():
    """Disjoint halves rank equal models by chance; two bootstrap resamples share the full set's noise, so
    they agree far more than chance: the bias the module's docstring names, and why the split-half estimate of
    the ceiling is reported beside the bootstrap's."""
    correct = _models(np.full(60, 0.5), images=200)
    assert abs(split_half_tau(correct, repeats=10).mean()) < 0.1
    assert bootstrap_tau(correct, against="resample", repeats=10).mean() > 0.2


def test_split_half_uses_disjoint_halves():
    """A matrix whose first half of images says one ranking and second half the reverse: disjoint halves drawn
    by a loop over an explicit permutation reproduce the function's value."""
    correct = _models(np.linspace(0.1, 0.9, 30), images=300, seed=1)
    rng = np.random.default_rng(7)
    expected = []
    for _ in range(4):
        order = rng.permutation(300)
        a = [correct[m, order[:150]].sum() / 150 for m in range(30)]
        b = [correct[m, order[150:]].sum() / 150 for m in range(30)]
        expected.append(kendall_tau(a, b))
    np.testing.assert_allclose(split_half_tau(correct, repeats=4, seed=7), expected)


def test_fewer_images_lower_the_ceiling():
    acc = np.random.default_rng(3).uniform(0.3, 0.7, 200)
    few = bootstrap_tau(_models(acc, 100), repeats=10).mean()
    many = bootstrap_tau(_models(acc, 2000), repeats=10).mean()
    assert few < many - 0.1


def test_ceiling_from_split_half_on_a_simulated_zoo():
    """Models with known expected accuracies: the ceiling estimated from the measured split-half is close to
    the τ of the true accuracies against a measurement on all images."""
    acc = np.random.default_rng(4).uniform(0.2, 0.9, 400)
    correct = _models(acc, 600, seed=5)
    truth = kendall_tau(acc, correct.mean(1))
    estimate = ceiling_from_split_half(split_half_tau(correct, repeats=10).mean())
    assert abs(estimate - truth) < 0.02
    assert ceiling_from_split_half(1.0) == pytest.approx(1.0)
    assert ceiling_from_split_half(0.5) > 0.5  # a full measurement halves the noise of a half


def test_rows_per_family():
    correct = _models(np.linspace(0.1, 0.9, 20), images=400)
    rows = noise_ceiling(correct, ["a"] * 10 + ["b"] * 10, repeats=3)
    assert [r["scope"] for r in rows] == ["all", "a", "b"]
    assert [r["models"] for r in rows] == [20, 10, 10]
    assert all(0.0 < r["ceiling_tau"] <= 1.0 for r in rows)


def test_bad_against_is_refused():
    with pytest.raises(ValueError, match="against"):
        bootstrap_tau(np.ones((3, 4), bool), against="other")


def test_a_real_zoo_reproduces_its_manifest(clf_zoo, inr_zoo, tmp_path, capsys):
    correct, recorded, families = correctness_matrix(clf_zoo, progress=False)
    assert correct.dtype == bool and correct.shape[0] == len(recorded) == len(families)
    np.testing.assert_allclose(correct.mean(1), recorded, atol=1e-6)
    out = tmp_path / "ceiling.json"
    assert main(["--zoo", clf_zoo, "--repeats", "3", "--out", str(out), "--no-progress"]) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["scope"] == "all" and rows[0]["models"] == len(recorded)
    assert "ceiling τ" in capsys.readouterr().out
    with pytest.raises(ValueError, match="the noise ceiling needs"):
        correctness_matrix(inr_zoo, progress=False)
