"""Accuracy prediction reads the recurrent zoo as it reads the classifier zoo (end to end, tiny)."""
from __future__ import annotations

import math
import os

import pytest

from nngraph.zoo import RecurrentZooConfig, build_recurrent_zoo
from tasks.accuracy_prediction import task as accuracy_prediction

FAST = ["--epochs", "1", "--baseline-epochs", "2", "--hidden-dim", "8", "--num-layers", "1", "--no-progress"]


@pytest.fixture(scope="module")
def rnn_zoo(tmp_path_factory) -> str:
    """10 recurrent runs of 1-2 epochs, one checkpoint each."""
    root = str(tmp_path_factory.mktemp("zoo-rnn"))
    build_recurrent_zoo(root, RecurrentZooConfig(num_runs=10, max_epochs=2, checkpoints=1, max_params=3000, seed=1,
                                                 split=[0.5, 0.2, 0.3]), progress=False)
    return root


def test_accuracy_prediction_on_the_recurrent_zoo(rnn_zoo, tmp_path):
    out = str(tmp_path / "acc")
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(
        ["--zoo", rnn_zoo, "--out", out, "--gbm-iters", "5", "--methods", "encoder,stats_gbm", "--holdout-family",
         "lstm", *FAST]))
    for method in ("encoder", "stats_gbm"):
        r2 = [r["value"] for r in rows if r["method"] == method and r["metric"] == "r2[test]"]
        assert len(r2) == 1 and math.isfinite(r2[0]), rows
    assert any(r["metric"] == "r2[unseen lstm]" for r in rows)  # entries' families are their cells
    assert os.path.exists(os.path.join(out, "scatter.png"))
