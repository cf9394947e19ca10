"""accuracy_prediction --methods probegen: ProbeGen beside fixed-image probing, with the cost per prediction."""
from __future__ import annotations

import math

from nngraph.train import read_metrics
from tasks.accuracy_prediction import task as accuracy_prediction


def _run(clf_zoo, out, *more):
    args = ["--zoo", clf_zoo, "--out", out, "--holdout-family", "", "--methods", "probegen,probe_gbm",
            "--probegen-epochs", "2", "--probe-inputs", "4", "--gbm-iters", "5", "--no-progress", *more]
    return accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(args))


def test_probegen_runs_end_to_end_with_its_cost_and_is_opt_in(clf_zoo, tmp_path):
    out = str(tmp_path / "acc")
    rows = _run(clf_zoo, out)
    value = {(r["method"], r["metric"]): r["value"] for r in rows}
    assert math.isfinite(value["probegen", "kendall_tau[test]"])
    # 4 probe forward passes of the model: the same probing FLOPs as 4 fixed images, plus the reader's
    reader = value["probegen", "flops_per_prediction"] - value["probe_gbm", "flops_per_prediction"]
    assert value["probe_gbm", "flops_per_prediction"] > 0 and reader > 0
    assert value["probegen", "seconds_per_prediction"] > 0
    assert [r["epoch"] for r in read_metrics(f"{out}/runs/probegen/metrics.jsonl")] == [1, 2]
    again = _run(clf_zoo, out)  # a finished run is reloaded, not trained again
    assert [r["value"] for r in again if r["metric"] == "kendall_tau[test]"] == \
        [r["value"] for r in rows if r["metric"] == "kendall_tau[test]"]
    assert "probegen" not in accuracy_prediction.build_parser().parse_args(["--zoo", clf_zoo]).methods


def test_probegen_from_zero_probes_and_on_a_held_out_family(clf_zoo, tmp_path):
    families = {e["family"] for e in accuracy_prediction.load_split(clf_zoo, "train").entries}
    fam = sorted(families)[0]
    rows = _run(clf_zoo, str(tmp_path / "acc"), "--probegen-start", "zeros", "--holdout-family", fam)
    assert any(r["method"] == "probegen" and r["metric"] == f"kendall_tau[unseen {fam}]" for r in rows)
