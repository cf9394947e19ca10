"""accuracy_prediction --methods probe_gbm_stacked*: gradient boosting reads the probe outputs and one more column,
the network's prediction, cross-fitted on the training models (five networks, each trained without the runs it
predicts) and from the network trained on every training model for the test models; rows with their cost."""
from __future__ import annotations

import math
import os

import numpy as np

from tasks.accuracy_prediction import probe_stacking
from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.common.graph_training import predict_graphs


def _run(clf_zoo, out, methods):
    args = ["--zoo", clf_zoo, "--out", out, "--holdout-family", "", "--methods", methods, "--epochs", "2",
            "--probe-inputs", "4", "--gbm-iters", "5", "--hidden-dim", "8", "--num-layers", "1", "--no-progress"]
    return accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(args))


def test_the_stacked_column_is_cross_fitted_by_run_and_the_test_column_comes_from_the_full_network(
        clf_zoo, tmp_path, monkeypatch):
    fits, boosts = [], []
    train_hybrid, boost = probe_stacking.train_hybrid, probe_stacking.gradient_boosting

    def spy_train(args, train_graphs, val_graphs, *rest):
        model, result = train_hybrid(args, train_graphs, val_graphs, *rest)
        fits.append((list(train_graphs), rest[-3], model))  # rest[-3]: the run directory
        return model, result

    def spy_boost(x_train, y_train, x_test, *rest):
        boosts.append((x_train, x_test))
        return boost(x_train, y_train, x_test, *rest)

    monkeypatch.setattr(probe_stacking, "train_hybrid", spy_train)
    monkeypatch.setattr(probe_stacking, "gradient_boosting", spy_boost)
    out = str(tmp_path / "acc")
    rows = _run(clf_zoo, out, "probe_gbm,probe_gbm_stacked")
    value = {(r["method"], r["metric"]): r["value"] for r in rows}
    assert math.isfinite(value["probe_gbm_stacked", "r2[test]"])
    assert value["probe_gbm_stacked", "flops_per_prediction"] > value["probe_gbm", "flops_per_prediction"]
    assert value["probe_gbm_stacked", "seconds_per_prediction"] > 0

    names = [os.path.basename(d) for _, d, _ in fits]
    assert names == [f"probe_gbm_stacked-fold{k}" for k in range(5)] + ["probe_gbm_stacked-full"]
    everything = fits[-1][0]
    assert all(len(f) < len(everything) for f, _, _ in fits[:5])
    assert sum(len(f) for f, _, _ in fits[:5]) == 4 * len(everything)  # every training model in 4 of the 5 folds
    (x_train, x_test), = boosts
    assert x_train.shape == (len(everything), 4 * 10 + 1)  # 4 probe images x 10 classes, and the network's column
    # each training model's column comes from the one fold network that did not train on it
    full_pred = predict_graphs(fits[-1][2], everything, "regression").numpy()
    for i, g in enumerate(everything):
        unseen = [m for f, _, m in fits[:5] if id(g) not in {id(h) for h in f}]
        assert len(unseen) == 1
        assert x_train[i, -1].item() == np.float32(predict_graphs(unseen[0], [g], "regression").item())
    assert not np.allclose(x_train[:, -1].numpy(), full_pred, atol=1e-4)  # not the in-sample prediction


def test_the_no_graph_control_reads_no_graph(clf_zoo, tmp_path, monkeypatch):
    kinds = []
    train_hybrid = probe_stacking.train_hybrid

    def spy_train(args, train_graphs, val_graphs, box, inputs, all_models, options, *rest):
        kinds.append(options.get("graph", True))
        return train_hybrid(args, train_graphs, val_graphs, box, inputs, all_models, options, *rest)

    monkeypatch.setattr(probe_stacking, "train_hybrid", spy_train)
    rows = _run(clf_zoo, str(tmp_path / "acc"), "probe_gbm_stacked_no_graph")
    assert kinds == [False] * 6
    assert any(r["metric"] == "kendall_tau[test]" for r in rows)
