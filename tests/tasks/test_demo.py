"""The demo end to end on tiny zoos: shipped checkpoints scored beside the rows trained in the demo, the
plots a person looks at, and one index.html that shows them."""
from __future__ import annotations

import json
import os
import re

import pytest

from nngraph.zoo import ClassifierZooConfig, INRZooConfig, Zoo
from tasks.demo import demo
from tasks.demo import page as demo_page
from tasks.pretrained import shipped as pretrained

FAST = ["--epochs", "1", "--baseline-epochs", "2", "--hidden-dim", "8", "--num-layers", "1", "--no-progress"]


@pytest.fixture
def tiny_demo(inr_zoo, clf_zoo, tmp_path, monkeypatch):
    """Checkpoints trained on the tiny zoos of conftest, and a demo profile building zoos of the same settings
    (so the demo's test splits are the checkpoints' own, unseen test splits)."""
    directory = str(tmp_path / "checkpoints")
    runs = {"inr_classification": (inr_zoo, ["--probes", "4"]), "accuracy_prediction": (clf_zoo, ["--holdout-family", "''"]),
            "inr_editing": (inr_zoo, ["--probes", "4"])}
    for task, methods in demo.SHIPPED.items():
        zoo, extra = runs[task]
        command = (f"python -m tasks.{task} --zoo {zoo} --out {tmp_path / task} --methods {','.join(methods)} "
                   + " ".join(FAST + extra))
        module, args = pretrained._task_args(command)
        __import__(f"tasks.{task}", fromlist=["run"]).run(args)
        for method in methods:
            pretrained.export(command, method, directory=directory)
    monkeypatch.setattr(pretrained, "CHECKPOINT_DIR", directory)
    config = lambda cls, root: cls(**{k: v for k, v in Zoo(root).config.items() if k in cls.__dataclass_fields__})  # noqa: E731
    profile = {"inr_zoo": config(INRZooConfig, inr_zoo), "clf_zoo": config(ClassifierZooConfig, clf_zoo),
               "inr_classification": FAST + ["--probes", "4", "--gbm-iters", "5"],
               "accuracy_prediction": FAST + ["--gbm-iters", "5", "--holdout-family", ""],
               "inr_editing": FAST,
               "generation": ["--runs", "3", "--zoo-epochs", "3", "--methods", "latent,gaussian", "--targets", "2",
                              "--per-target", "2", "--latent-epochs", "1", "--rank", "4", "--steps", "2",
                              "--finetune-epochs", "0"],
               "generation_inr": ["--images", "40", "--resolution", "8", "--hidden", "8", "--epochs", "1", "--rank",
                                  "4", "--steps", "2", "--per-class", "1", "--show", "1", "--methods", "latent"]}
    monkeypatch.setitem(demo.PROFILES, "small", profile)
    return directory


def test_demo_scores_the_shipped_checkpoints_beside_the_trained_rows(tiny_demo, tmp_path, capsys):
    workdir = str(tmp_path / "demo")
    assert demo.main(["--workdir", workdir]) == 0
    printed = capsys.readouterr().out
    rows = json.load(open(os.path.join(workdir, "results.json")))
    for task, methods in demo.SHIPPED.items():
        shipped = {r["method"] for r in rows if r["task"] == task and r["source"] == "shipped"}
        assert shipped == set(methods), (task, shipped)
        assert any(r["task"] == task and r["source"] == "trained in demo" for r in rows), task
    for task in ("generation", "generation_inr"):  # sampled weights: the latent generator's rows
        assert {"latent", "zoo"} <= {r["method"] for r in rows if r["task"] == task and r["source"] == "trained in demo"}
    for r in rows:
        if r["source"] == "shipped" and r["metric"] != "kendall_tau[all]":
            # the number is the checkpoint's, on the demo zoo's test split: evaluate gives it again
            zoo = os.path.join(workdir, "zoo-classifiers" if r["task"] == "accuracy_prediction" else "zoo-inr")
            again = pretrained.evaluate(f"{r['task']}.{r['method']}", zoo)
            assert again["value"] == pytest.approx(r["value"], abs=1e-9)
            assert "full run" in r["note"] and "python -m tasks." in r["note"]
    page = open(os.path.join(workdir, "index.html")).read()
    expected = ["confusion.png", "scatter_shipped.png", "edits_shipped.png"]
    expected += [f"{task}/{png}" for task, plots in demo.TASK_FIGURES.items() for png, _ in plots]
    for png in expected:  # every plot the demo means to show was written, and the page links it
        assert os.path.exists(os.path.join(workdir, png)), png
        assert f'src="{png}"' in page, png
    assert all(os.path.isfile(os.path.join(workdir, src)) for src in re.findall(r'<img src="([^"]+)"', page))
    assert "pictures not written" not in printed
    assert page.index('<p class="headline">') < page.index("<figure>") < page.index("<details>")
    assert page.count("<tr>") == len(rows) + 1 + 1 + len(demo_page.headline(rows))  # every row, the headline
    assert "| source |" in printed and "| shipped |" in printed
    assert demo_page.format_headline(rows) in printed


def test_demo_without_checkpoints_says_so_and_still_runs(tiny_demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "CHECKPOINT_DIR", str(tmp_path / "none"))
    workdir = str(tmp_path / "demo")
    assert demo.main(["--workdir", workdir, "--tasks", "inr_editing"]) == 0
    assert "inr_editing.encoder: not shipped" in capsys.readouterr().out
    rows = json.load(open(os.path.join(workdir, "results.json")))
    assert rows and all(r["source"] == "trained in demo" for r in rows)
