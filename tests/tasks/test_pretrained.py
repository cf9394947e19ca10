"""Shipped checkpoints: export from a finished run, load, evaluate as the task does, refuse leaky zoos."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
from torch_geometric.data import Batch

import nngraph
from nngraph.zoo import ClassifierZooConfig, INRZooConfig, Zoo, build_model
from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.inr_classification import task as inr_classification
from tasks.inr_editing import task as inr_editing
from tasks.pretrained import shipped as pretrained

FAST = ["--epochs", "1", "--baseline-epochs", "2", "--hidden-dim", "8", "--num-layers", "1", "--no-progress"]

CASES = [  # task module, zoo fixture, method, extra flags
    (inr_classification, "inr_zoo", "encoder_probe_flip", ["--probes", "4"]),
    (inr_classification, "inr_zoo", "encoder_broken", ["--probes", "4"]),
    (accuracy_prediction, "clf_zoo", "encoder", ["--holdout-family", ""]),
    (inr_editing, "inr_zoo", "encoder", ["--probes", "4"]),
    (inr_editing, "inr_zoo", "flat_mlp", []),
]


@pytest.mark.parametrize("module,zoo_fixture,method,extra", CASES, ids=[f"{c[0].TASK}.{c[2]}" for c in CASES])
def test_evaluate_reproduces_the_tasks_own_number(module, zoo_fixture, method, extra, request, tmp_path):
    zoo = request.getfixturevalue(zoo_fixture)
    out = str(tmp_path / "run")
    command = (f"python -m tasks.{module.TASK} --zoo {zoo} --out {out} --methods {method} "
               + " ".join(f"'{a}'" if a == "" else a for a in FAST + extra))
    _, args = pretrained._task_args(command)
    rows = module.run(args)
    expected = next(r["value"] for r in rows if r["metric"] == pretrained.METRICS[module.TASK])
    name = pretrained.export(command, method, directory=str(tmp_path / "ckpt"))
    assert name == f"{module.TASK}.{method}"
    assert pretrained.available(str(tmp_path / "ckpt")) == [name]
    result = pretrained.evaluate(name, zoo, directory=str(tmp_path / "ckpt"))
    assert result["value"] == pytest.approx(expected, rel=1e-5, abs=1e-6), (result["value"], expected)
    assert result["meta"]["metrics"][result["metric"]] == expected
    assert result["unseen"].startswith("the test split of the checkpoint's own zoo")


def test_a_damaged_checkpoint_is_refused(inr_zoo, tmp_path):
    out = str(tmp_path / "run")
    command = f"python -m tasks.inr_editing --zoo {inr_zoo} --out {out} --methods encoder " + " ".join(FAST)
    inr_editing.run(pretrained._task_args(command)[1])
    directory = str(tmp_path / "ckpt")
    name = pretrained.export(command, "encoder", directory=directory)
    path = os.path.join(directory, name + ".safetensors")
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 1
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        pretrained.load(name, directory)
    with pytest.raises(FileNotFoundError, match="there are"):
        pretrained.load("inr_editing.nope", directory)
    with pytest.raises(ValueError, match="not a path"):
        pretrained.load("../x", directory)


def _config(cls, **kw) -> dict:
    """zoo.json of a zoo with these settings, without building it."""
    import dataclasses

    config = {"kind": "inr" if cls is INRZooConfig else "classifier", **dataclasses.asdict(cls(**kw))}
    if config.get("split_scope") == "zoo":
        del config["split_scope"]
    return json.loads(json.dumps(config))


def test_zoos_whose_test_models_may_have_been_seen_are_refused():
    full = _config(INRZooConfig)
    assert "own test split" in pretrained.check_unseen(full, _config(INRZooConfig, max_images=200,
                                                                    split_scope="source"))
    with pytest.raises(ValueError, match="may be training images"):  # split drawn over the 200 images only
        pretrained.check_unseen(full, _config(INRZooConfig, max_images=200))
    with pytest.raises(ValueError, match="seed"):
        pretrained.check_unseen(full, _config(INRZooConfig, seed=1))
    clf = _config(ClassifierZooConfig)
    assert "seed 1" in pretrained.check_unseen(clf, _config(ClassifierZooConfig, seed=1, num_runs=40))
    with pytest.raises(ValueError, match="overlap"):  # run r has the same architecture, its split differs
        pretrained.check_unseen(clf, _config(ClassifierZooConfig, num_runs=40))
    with pytest.raises(ValueError, match="classifier zoo"):
        pretrained.check_unseen(clf, full)


# ---- the checkpoints shipped in tasks/pretrained/checkpoints ----------------------------------------------------

SHIPPED = pretrained.available()
#: What the demo relies on (issue 15): one checkpoint per task, and the twin of the probe encoder.
REQUIRED = {"inr_classification.encoder_probe_flip", "inr_classification.encoder_broken",
            "accuracy_prediction.encoder", "inr_editing.encoder", "inr_editing.flat_mlp"}


def test_every_checkpoint_the_demo_needs_is_shipped():
    assert REQUIRED <= set(SHIPPED), sorted(REQUIRED - set(SHIPPED))


def _siren_graph(probes: int, positional: int = 0):
    torch.manual_seed(0)
    spec = {"family": "siren", "in_features": 2, "hidden": [32, 32], "out_features": 1, "w0": 30.0}
    model = build_model(spec)
    g = nngraph.to_graph(model)
    if probes:
        from tasks.common.features import probe_inputs_for

        g.probe = nngraph.probe_features(model, probe_inputs_for(spec, probes)).float()
    if positional:
        from tasks.common.features import add_positional_features

        g = add_positional_features([g], positional, 0)[0]
    return g


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_loads_matches_its_record_and_runs(name):
    model, meta = pretrained.load(name)  # checks the sha256
    task, method = meta["task"], meta["method"]
    assert name == f"{task}.{method}"
    _, args = pretrained._task_args(meta["command"])
    settings = meta["settings"]
    if settings["model"] == "flat_editor":  # the baseline: its own epochs, a fixed lr
        assert settings["train"]["epochs"] == args.baseline_epochs
    else:
        assert settings["hidden_dim"] == args.hidden_dim and settings["num_layers"] == args.num_layers
        assert settings["train"]["epochs"] == args.epochs and settings["train"]["lr"] == args.lr
    assert meta["trained_on"]["kind"] == ("classifier" if task == "accuracy_prediction" else "inr")
    assert meta["trained_on"].get("max_images") is None  # trained on a full zoo, whose test split stays unseen
    value = meta["metrics"][pretrained.METRICS[task]]
    assert math.isfinite(value) and meta["seconds"] > 0
    for key, current in (("num_node_kinds", nngraph.schema.NUM_NODE_KINDS),
                         ("num_edge_types", nngraph.schema.NUM_EDGE_TYPES),
                         ("num_activations", nngraph.schema.NUM_ACTIVATIONS)):
        assert meta["format"][key] <= current  # enums only grow
    with torch.no_grad():
        if task == "accuracy_prediction":
            clf = build_model({"family": "mlp", "in_shape": [1, 8, 8], "num_classes": 10, "act": "relu",
                               "dropout": 0.0, "hidden": [16], "norm": "none"})
            out = model(Batch.from_data_list([nngraph.to_graph(clf, torch.zeros(1, 1, 8, 8))] * 2))
            assert out.shape == (2, 1)
        elif method == "flat_mlp":
            flat = torch.nn.utils.parameters_to_vector(build_model(
                {"family": "siren", "in_features": 2, "hidden": [32, 32], "out_features": 1, "w0": 30.0}).parameters())
            out = model(flat.unsqueeze(0))  # (1, P): the flat delta
            assert out.shape == flat.unsqueeze(0).shape
        else:
            probes = settings["probe_dim"] - (args.positional_dim if method == "encoder_broken" else 0)
            g = _siren_graph(probes, args.positional_dim if method == "encoder_broken" else 0)
            out = model(Batch.from_data_list([g, g]))
            if task == "inr_classification":
                assert out.shape == (2, 10)
            else:
                dx, de = out
                assert dx.shape == (2 * g.num_nodes, g.x.shape[1]) and de.shape == (2 * g.edge_attr.shape[0], 1)
        assert all(torch.isfinite(t).all() for t in (out if isinstance(out, tuple) else (out,)))


@pytest.mark.parametrize("name", SHIPPED)
def test_task_defaults_are_the_settings_of_the_shipped_full_runs(name):
    """A task run with its defaults trains what the README reports (the shipped checkpoints' commands)."""
    meta = pretrained.read_meta(name)
    task, args = pretrained._task_args(meta["command"])
    defaults = __import__(f"tasks.{task}", fromlist=["build_parser"]).build_parser().parse_args(["--zoo", "z"])
    ignore = {"zoo", "out", "methods", "holdout_family", "no_progress", "device"}
    differ = {k: (v, getattr(defaults, k)) for k, v in vars(args).items() if k not in ignore and getattr(defaults, k) != v}
    assert not differ, differ
