"""accuracy_prediction --methods hybrid,...: the hybrid and its ablations end to end, with the cost per prediction;
its cross-fitted prior is the probe_gbm model, so an untrained hybrid predicts what probe_gbm predicts."""
from __future__ import annotations

import math

import pytest

from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.accuracy_prediction.probe_hybrid import HYBRIDS


def _run(clf_zoo, out, methods, *more):
    args = ["--zoo", clf_zoo, "--out", out, "--holdout-family", "", "--methods", methods, "--epochs", "1",
            "--probe-inputs", "4", "--gbm-iters", "5", "--hidden-dim", "8", "--num-layers", "1", "--no-progress", *more]
    return accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(args))


def test_every_hybrid_row_runs_with_its_cost_and_is_opt_in(clf_zoo, tmp_path):
    out = str(tmp_path / "acc")
    rows = _run(clf_zoo, out, ",".join(["probe_gbm", *HYBRIDS]))
    value = {(r["method"], r["metric"]): r["value"] for r in rows}
    probing = value["probe_gbm", "flops_per_prediction"]
    for name in HYBRIDS:
        assert math.isfinite(value[name, "kendall_tau[test]"]), name
        assert value[name, "seconds_per_prediction"] > 0
    # the network's FLOPs on top of the probe passes: 4 fixed images for the prior, 4 learned probes more
    assert value["hybrid_fixed_probes", "flops_per_prediction"] > probing
    assert value["hybrid", "flops_per_prediction"] > 2 * probing
    assert value["hybrid_no_probes", "flops_per_prediction"] < value["hybrid_fixed_probes", "flops_per_prediction"]
    assert not set(HYBRIDS) & set(accuracy_prediction.build_parser().parse_args(["--zoo", clf_zoo]).methods)


def test_an_untrained_hybrid_predicts_what_its_prior_probe_gbm_predicts(clf_zoo, tmp_path, monkeypatch):
    import json

    from nngraph.probing import ProbeGraphHybrid

    read = ProbeGraphHybrid.read
    monkeypatch.setattr(ProbeGraphHybrid, "read", lambda self, batch, values: 0.0 * read(self, batch, values)
                        + batch.prior)  # the network adds nothing, whatever training does
    out = str(tmp_path / "acc")
    _run(clf_zoo, out, "probe_gbm,hybrid_no_graph")
    pred = json.load(open(f"{out}/predictions.json"))["pred"]
    assert pred["hybrid_no_graph"] == pytest.approx(pred["probe_gbm"], abs=1e-5)


def test_the_shrunk_hybrid_reuses_the_trained_hybrid_and_keeps_a_fraction_of_its_correction(clf_zoo, tmp_path,
                                                                                          monkeypatch):
    import json
    import os

    import numpy as np

    from nngraph.probing import correction_shrinkage
    from tasks.accuracy_prediction import probe_hybrid
    from tasks.common.splits import load_split

    calls = []

    def spy(prior, pred, y):  # the factor is fitted on the validation models; 0.3 makes the scaling visible
        calls.append((np.asarray(prior), np.asarray(pred), np.asarray(y)))
        assert 0.0 <= correction_shrinkage(prior, pred, y) <= 1.0
        return 0.3

    monkeypatch.setattr(probe_hybrid, "correction_shrinkage", spy)
    out = str(tmp_path / "acc")
    rows = _run(clf_zoo, out, "probe_gbm,hybrid,hybrid_shrunk", "--epochs", "3")
    assert os.path.isdir(f"{out}/runs/hybrid") and not os.path.exists(f"{out}/runs/hybrid_shrunk")  # not retrained
    (prior, val_pred, y), = calls
    assert len(prior) == len(val_pred) == len(y) == len(load_split(clf_zoo, "val").entries)
    assert np.abs(val_pred - prior).max() > 1e-4  # the trained network's correction on the validation models
    alpha = next(r["value"] for r in rows if r["method"] == "hybrid_shrunk" and r["metric"] == "correction_shrinkage")
    assert alpha == 0.3
    assert not any(r["metric"] == "correction_shrinkage" for r in rows if r["method"] == "hybrid")
    pred = {k: np.array(v) for k, v in json.load(open(f"{out}/predictions.json"))["pred"].items()}
    assert np.abs(pred["hybrid"] - pred["probe_gbm"]).max() > 1e-3  # trained: the correction is not zero
    np.testing.assert_allclose(pred["hybrid_shrunk"], pred["probe_gbm"] + 0.3 * (pred["hybrid"] - pred["probe_gbm"]),
                               atol=1e-5)
