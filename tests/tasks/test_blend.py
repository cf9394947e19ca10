"""The rank blend of two accuracy predictors, and the predictions an accuracy-prediction run writes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.diagnostics.blend import blend_report, load_predictions, main, rank_blend, seed_ensemble
from tasks.common.metrics import kendall_tau


def test_rank_blend_is_the_mean_of_scaled_ranks():
    a, b = [0.1, 0.5, 0.3, 0.9], [4.0, 1.0, 2.0, 3.0]
    expected = [0.5 * (ra / 3) + 0.5 * (rb / 3) for ra, rb in zip([0, 2, 1, 3], [3, 0, 1, 2])]
    np.testing.assert_allclose(rank_blend(a, b), expected)
    np.testing.assert_allclose(rank_blend(a, b, weight=1.0), np.array([0, 2, 1, 3]) / 3)
    with pytest.raises(ValueError, match="length"):
        rank_blend([1, 2], [1, 2, 3])


def test_two_predictors_with_independent_errors_blend_above_both():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 1, 500)
    pred = {"true": true.tolist(), "pred": {"a": (true + rng.normal(0, 0.3, 500)).tolist(),
                                            "b": (true + rng.normal(0, 0.3, 500)).tolist(),
                                            "copy": None}}
    pred["pred"]["copy"] = pred["pred"]["a"]
    r = blend_report(pred, "a", "b", boot=50)
    assert r["tau_blend"] > max(r["tau_a"], r["tau_b"]) + 0.03 and r["gain_low"] > 0
    same = blend_report(pred, "a", "copy", boot=50)  # a predictor blended with itself gains nothing
    assert same["tau_blend"] == pytest.approx(same["tau_a"]) and same["gain_high"] == pytest.approx(0, abs=1e-12)
    with pytest.raises(KeyError, match="nope"):
        blend_report(pred, "a", "nope")


def test_an_accuracy_prediction_run_writes_its_predictions(clf_zoo, tmp_path, capsys):
    out = tmp_path / "acc"
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(
        ["--zoo", str(clf_zoo), "--out", str(out), "--gbm-iters", "5", "--methods", "stats_gbm,probe_gbm",
         "--probe-inputs", "4", "--holdout-family", "", "--no-progress"]))
    pred = load_predictions(str(out))
    assert set(pred["pred"]) == {"stats_gbm", "probe_gbm"} and len(pred["ids"]) == len(pred["true"])
    tau = {r["method"]: r["value"] for r in rows if r["metric"] == "kendall_tau[test]"}
    for method, values in pred["pred"].items():  # the rows' τ is the τ of the stored predictions
        assert kendall_tau(pred["true"], values) == pytest.approx(tau[method])
    assert main([str(out), str(out), "--methods", "stats_gbm,probe_gbm", "--boot", "5", "--seed-ensemble"]) == 0
    printed = capsys.readouterr().out
    assert "τ blend" in printed and "over 2 runs" in printed
    with pytest.raises(FileNotFoundError, match="predictions"):
        load_predictions(str(tmp_path))
    json.loads((out / "predictions.json").read_text())  # valid JSON, written whole


def test_a_seed_ensemble_averages_scaled_ranks_of_the_same_models():
    runs = [{"ids": ["a", "b", "c"], "true": [0.1, 0.2, 0.3], "pred": {"m": p}}
            for p in ([0.3, 0.1, 0.2], [0.1, 0.2, 0.3])]
    np.testing.assert_allclose(seed_ensemble(runs, "m"), [(1.0 + 0.0) / 2, (0.0 + 0.5) / 2, (0.5 + 1.0) / 2])
    runs[1]["ids"] = ["a", "c", "b"]
    with pytest.raises(ValueError, match="same"):
        seed_ensemble(runs, "m")
