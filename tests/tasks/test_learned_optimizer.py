"""tasks.learned_optimizer at toy sizes: meta-training resumes where a killed run stopped, exactly, and the
evaluation writes its table, curves and networks."""
from __future__ import annotations

import json

import pytest
import torch

from nngraph.optim import LearnedOptimizer, load_network
from tasks.learned_optimizer import task

TOY = ["--truncations", "2", "--unroll", "3", "--hidden-dim", "8", "--num-layers", "1", "--context-dim", "2",
       "--output-dim", "8", "--no-progress"]


def _args(out, trajectories: int):
    return task.build_parser().parse_args(["--out", str(out), "--trajectories", str(trajectories), *TOY])


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, capsys):
    data = task.digits()
    straight, _ = task.meta_train("graph", _args(tmp_path / "a", 3), data)
    task.meta_train("graph", _args(tmp_path / "b", 1), data)  # killed after one trajectory
    resumed, info = task.meta_train("graph", _args(tmp_path / "b", 3), data)
    assert "graph: resumed after trajectory 1" in capsys.readouterr().out
    assert info["trajectory"] == 3 and len(info["meta_losses"]) == 3
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    fresh = task.make_network("graph", _args(tmp_path, 1))
    changed = any(not torch.equal(p, q) for p, q in zip(fresh.state_dict().values(), resumed.state_dict().values()))
    assert changed  # meta-training moved the network


def test_other_settings_are_refused(tmp_path):
    data = task.digits()
    task.meta_train("mlp", _args(tmp_path, 1), data)
    args = _args(tmp_path, 2)
    args.unroll = 4
    with pytest.raises(SystemExit, match="other settings"):
        task.meta_train("mlp", args, data)


def test_the_task_writes_results_curves_and_networks(tmp_path):
    out = tmp_path / "lo"
    assert task.main(["--out", str(out), "--trajectories", "1", *TOY, "--eval-steps", "10", "--tune-problems", "1",
                      "--adam-lrs", "1e-3,1e-2"]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    methods = {r["method"] for r in rows}
    adam = {m for m in methods if m.startswith("adam (lr ")}
    assert len(adam) == 1 and methods - adam == {"per-parameter mlp", "graph", "graph, relabelled each step"}
    by = {(r["problem"], r["method"]): r for r in rows}
    for problem in task.EVAL_FAMILIES:  # the twin takes the same steps
        assert by[(problem, "graph")]["final_loss"] == pytest.approx(by[(problem, "graph, relabelled each step")]
                                                                     ["final_loss"], rel=1e-4)
    assert (out / "curves.png").stat().st_size > 1000
    model = task.build_model("mlp", (8,))
    LearnedOptimizer(model, str(out / "graph.pt"))  # the meta-trained network loads as a checkpoint
    assert load_network(str(out / "mlp.pt")).kind == "mlp"
