"""Each task runs end to end on a tiny zoo and reports finite metrics (and its files)."""
from __future__ import annotations

import json
import math
import os

import pytest
from safetensors.torch import load_file

from nngraph.cli import main as cli_main
from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.inr_classification import task as inr_classification
from tasks.inr_editing import task as inr_editing

FAST = ["--epochs", "1", "--baseline-epochs", "2", "--hidden-dim", "8", "--num-layers", "1", "--no-progress"]


def _finite(rows, metric_prefix):
    values = [r["value"] for r in rows if r["metric"].startswith(metric_prefix)]
    assert values and all(math.isfinite(v) for v in values), rows
    return values


def test_inr_classification(inr_zoo, tmp_path):
    out = str(tmp_path / "cls")
    rows = inr_classification.run(inr_classification.build_parser().parse_args(
        ["--zoo", inr_zoo, "--out", out, "--probes", "4", "--gbm-iters", "5", *FAST]))
    assert {r["method"] for r in rows} == set(inr_classification.METHODS)
    assert all(0 <= v <= 1 for v in _finite(rows, "test_acc"))
    assert os.path.exists(os.path.join(out, "curves.png")) and os.path.exists(os.path.join(out, "results.json"))
    assert os.path.exists(os.path.join(out, "runs", "encoder_probe_flip", "best.safetensors"))


def test_accuracy_prediction(clf_zoo, tmp_path):
    out = str(tmp_path / "acc")
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(
        ["--zoo", clf_zoo, "--out", out, "--gbm-iters", "5", "--methods", "encoder,stats_mlp", "--holdout-family",
         "mlp", "--max-train", "20", *FAST]))
    r2 = [r["value"] for r in rows if r["metric"] == "r2[test]"]
    assert len(r2) == 2 and all(math.isfinite(v) for v in r2)
    assert int(rows[0]["note"].split()[0]) <= 20, rows[0]["note"]  # --max-train: whole runs, at most 20
    assert any(r["metric"] == "r2[unseen mlp]" for r in rows)
    assert os.path.exists(os.path.join(out, "scatter.png"))


def test_accuracy_prediction_holdout_only(clf_zoo, tmp_path):
    parse = accuracy_prediction.build_parser().parse_args
    rows = accuracy_prediction.run(parse(["--zoo", clf_zoo, "--out", str(tmp_path / "held"), "--gbm-iters", "5",
                                          "--methods", "stats_gbm,probe_gbm", "--probe-inputs", "4",
                                          "--holdout-family", "mlp", "--holdout-only", "--no-progress"]))
    metrics = {(r["method"], r["metric"]) for r in rows}
    assert {m for _, m in metrics} == {"kendall_tau[unseen mlp]", "r2[unseen mlp]", "flops_per_prediction[unseen mlp]",
                                       "seconds_per_prediction[unseen mlp]"}
    assert ("probe_gbm", "flops_per_prediction[unseen mlp]") in metrics  # the held-out models' cost, for probing
    assert ("stats_gbm", "flops_per_prediction[unseen mlp]") not in metrics
    import json

    from tasks.common.metrics import r2

    unseen = json.load(open(tmp_path / "held" / "predictions.json"))["unseen"]  # for paired comparisons and blends
    assert unseen["family"] == "mlp" and len(unseen["ids"]) == len(unseen["true"]) == len(unseen["pred"]["stats_gbm"])
    assert len(unseen["ids"]) > 0 and all(math.isfinite(v) for v in unseen["pred"]["stats_gbm"])
    value = {r["metric"]: r["value"] for r in rows}  # (NaN on this tiny zoo: the held-out accuracies are alike)
    assert r2(unseen["true"], unseen["pred"]["stats_gbm"]) == pytest.approx(value["r2[unseen mlp]"], nan_ok=True)
    with pytest.raises(ValueError, match="--holdout-only needs"):
        accuracy_prediction.run(parse(["--zoo", clf_zoo, "--out", str(tmp_path / "none"), "--methods", "stats_gbm",
                                       "--holdout-family", "", "--holdout-only", "--no-progress"]))


def test_inr_editing_through_the_cli(inr_zoo, tmp_path, capsys):
    out = str(tmp_path / "edit")
    assert cli_main(["task", "inr_editing", "--zoo", inr_zoo, "--out", out, *FAST]) == 0
    assert "| inr_editing | encoder | test_mse |" in capsys.readouterr().out
    import json

    rows = json.load(open(os.path.join(out, "results.json")))
    mse = {r["method"]: r["value"] for r in rows}
    assert set(mse) == {"noop", "encoder", "flat_mlp"} and all(math.isfinite(v) and v > 0 for v in mse.values())
    # an editor whose head starts at scale 0.01 barely moves the weights after one epoch
    assert mse["encoder"] == pytest.approx(mse["noop"], rel=0.5)
    assert os.path.exists(os.path.join(out, "edits.png"))


def test_cli_rejects_unknown_task(capsys):
    assert cli_main(["task", "nope"]) == 2
    assert "among choices" in capsys.readouterr().err


def test_accuracy_prediction_probing_and_permuted_twin(clf_zoo, tmp_path):
    out = str(tmp_path / "acc")
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(
        ["--zoo", clf_zoo, "--out", out, "--gbm-iters", "5", "--probe-inputs", "8", "--holdout-family", "",
         "--methods", "encoder_broken_perm,probe_gbm,probe_mlp", *FAST]))
    tau = {r["method"]: r["value"] for r in rows if r["metric"] == "kendall_tau[test]"}
    assert set(tau) == {"encoder_broken_perm", "probe_gbm", "probe_mlp"}, rows
    assert all(math.isfinite(v) for v in tau.values())


def test_probe_features_are_each_models_softmax_on_the_same_images(clf_zoo, inr_zoo):
    import torch

    from nngraph.zoo import Zoo
    from tasks.accuracy_prediction.probing import output_features, probe_images

    images = probe_images(clf_zoo, 6, seed=1)
    assert images.shape[0] == 6 and torch.equal(images, probe_images(clf_zoo, 6, seed=1))
    assert not torch.equal(images, probe_images(clf_zoo, 6, seed=2))
    zoo = Zoo(clf_zoo)
    models = [zoo.load_model(e) for e in zoo.entries[:3]]
    feats = output_features(models, images)  # (3, 6 * 10)
    assert feats.shape == (3, 60)
    for m, f in zip(models, feats):
        m.eval()
        with torch.no_grad():
            torch.testing.assert_close(f, torch.softmax(m(images), -1).reshape(-1))
    with pytest.raises(ValueError, match="images the zoo's classifiers trained on"):
        probe_images(inr_zoo, 2)


def test_encoder_probe_reads_each_neurons_value_on_the_probe_images(clf_zoo, tmp_path):
    import torch

    import nngraph
    from tasks.accuracy_prediction.probing import probe_images
    from tasks.common.splits import load_split

    split = load_split(clf_zoo, "val")
    inputs = probe_images(clf_zoo, 4, seed=0)  # (4, C, H, W)
    graphs = accuracy_prediction.with_probe_features(split, inputs)
    for g, model, plain in zip(graphs, split.models, split.graphs):
        assert g.probe.shape == (g.num_nodes, 4) and not hasattr(plain, "probe")
        expected = torch.asinh(nngraph.probe_features(model, inputs).float())
        torch.testing.assert_close(g.probe, torch.nan_to_num(expected, nan=0.0, posinf=0.0, neginf=0.0))
    assert any(g.probe.abs().sum() > 0 for g in graphs)
    out = str(tmp_path / "acc")
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(
        ["--zoo", clf_zoo, "--out", out, "--probe-inputs", "4", "--holdout-family", "", "--methods", "encoder_probe",
         *FAST]))
    tau = [r["value"] for r in rows if r["metric"] == "kendall_tau[test]"]
    assert len(tau) == 1 and math.isfinite(tau[0])
    assert "encoder_probe" not in accuracy_prediction.build_parser().parse_args(["--zoo", clf_zoo]).methods


def test_vector_mlp_predictions_stay_within_the_training_accuracies(clf_zoo, tmp_path, monkeypatch):
    """An MLP baseline extrapolating wildly on one test model (R² in the thousands below zero) is clipped to the
    range of accuracies it was trained on."""
    import torch

    monkeypatch.setattr(accuracy_prediction, "predict_vectors",
                        lambda model, x: torch.linspace(-50.0, 50.0, len(x)).unsqueeze(-1))  # (M, 1)
    args = accuracy_prediction.build_parser().parse_args(
        ["--zoo", clf_zoo, "--out", str(tmp_path / "acc"), "--holdout-family", "", "--methods", "stats_mlp", *FAST])
    rows = accuracy_prediction.run(args)
    r2 = [r["value"] for r in rows if r["metric"] == "r2[test]"]
    assert len(r2) == 1 and r2[0] > -100, rows  # unclipped, predictions of +-50 give R² near -10^5


def test_rank_target_encodes_monotonically_and_decodes_back():
    import numpy as np

    train = np.array([0.1, 0.1, 0.1, 0.1, 0.5, 0.9, 0.95, 0.95])
    rank = accuracy_prediction.RankTarget(train)
    scores = rank.encode(train)
    assert np.all(np.diff(scores) >= 0) and abs(scores.mean()) < 0.5  # spread around 0, ties equal
    assert scores[0] == scores[3] and scores[4] < scores[5]
    np.testing.assert_allclose(rank.decode(scores), train, atol=1e-12)
    grid = np.linspace(-3, 3, 25)
    assert np.all(np.diff(rank.decode(grid)) >= 0)  # predictions keep their order
    assert train.min() <= rank.decode(grid).min() and rank.decode(grid).max() <= train.max()


def test_accuracy_prediction_with_the_rank_target(clf_zoo, tmp_path):
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(
        ["--zoo", clf_zoo, "--out", str(tmp_path / "acc"), "--methods", "encoder", "--holdout-family", "",
         "--target", "rank", *FAST]))
    values = {r["metric"]: r["value"] for r in rows}
    assert math.isfinite(values["kendall_tau[test]"]) and math.isfinite(values["r2[test]"])


def test_inr_classification_sign_flips_without_probes_on_request(inr_zoo, tmp_path):
    rows = inr_classification.run(inr_classification.build_parser().parse_args(
        ["--zoo", inr_zoo, "--out", str(tmp_path / "cls"), "--methods", "encoder_flip", *FAST]))
    assert [r["method"] for r in rows] == ["encoder_flip"] and 0 <= rows[0]["value"] <= 1
    assert "encoder_flip" not in inr_classification.build_parser().parse_args(["--zoo", inr_zoo]).methods


def test_inr_classification_alignment_and_mixup_on_request(inr_zoo, tmp_path):
    out = tmp_path / "cls"
    rows = inr_classification.run(inr_classification.build_parser().parse_args(
        ["--zoo", inr_zoo, "--out", str(out), "--methods", "encoder_align,encoder_mixup", *FAST]))
    assert [r["method"] for r in rows] == ["encoder_align", "encoder_mixup"]
    assert all(0 <= r["value"] <= 1 for r in rows)
    settings = json.loads((out / "runs" / "encoder_mixup" / "best.json").read_text())["settings"]
    assert settings["aligned"] and settings["mixup_alpha"] == 0.2


def test_inr_classification_learned_probes_on_request(inr_zoo, tmp_path):
    out = tmp_path / "cls"
    rows = inr_classification.run(inr_classification.build_parser().parse_args(
        ["--zoo", inr_zoo, "--out", str(out), "--methods", "encoder_learned_probe", "--probes", "4", *FAST]))
    assert [r["method"] for r in rows] == ["encoder_learned_probe"] and 0 <= rows[0]["value"] <= 1
    settings = json.loads((out / "runs" / "encoder_learned_probe" / "best.json").read_text())["settings"]
    assert settings["learned_probes"] == 4 and settings["probe_dim"] == 4


def test_inr_classification_generated_probes_on_request(inr_zoo, tmp_path):
    out = tmp_path / "cls"
    rows = inr_classification.run(inr_classification.build_parser().parse_args(
        ["--zoo", inr_zoo, "--out", str(out), "--methods", "encoder_learned_probe", "--probes", "4",
         "--probe-generator", *FAST]))
    assert "made by a generator" in rows[0]["note"]
    settings = json.loads((out / "runs" / "encoder_learned_probe" / "best.json").read_text())["settings"]
    assert settings["probe_generator"] is True
    state = load_file(str(out / "runs" / "encoder_learned_probe" / "best.safetensors"))
    assert any(k.startswith("model/probe_generator.") for k in state) and "model/probe_inputs" not in state


def test_accuracy_prediction_with_symmetry_augmentation(clf_zoo, tmp_path, monkeypatch):
    """``--augment symmetries`` reaches the encoder's training batches (and only the encoder's), and is recorded."""
    from nngraph import symmetry as augment

    calls = []
    real = augment.symmetry_augment

    def counting(batch, *a, **k):
        calls.append(batch.num_graphs)
        return real(batch, *a, **k)

    monkeypatch.setitem(accuracy_prediction.AUGMENTS, "symmetries", counting)
    out = tmp_path / "acc"
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(
        ["--zoo", clf_zoo, "--out", str(out), "--holdout-family", "", "--methods", "encoder,encoder_broken_perm",
         "--augment", "symmetries", *FAST]))
    notes = {r["method"]: r["note"] for r in rows if r["metric"] == "kendall_tau[test]"}
    assert "augmented: symmetries" in notes["encoder"] and "augmented" not in notes["encoder_broken_perm"]
    settings = json.loads((out / "runs" / "encoder" / "best.json").read_text())["settings"]
    assert settings["augment"] == "symmetries"
    assert calls  # the encoder's training batches went through it
    twin = json.loads((out / "runs" / "encoder_broken_perm" / "best.json").read_text())["settings"]
    assert twin.get("augment") is None
