"""tasks.learned_optimizer at toy sizes: meta-training resumes where a killed run stopped, exactly, and the
evaluation writes its table, curves and networks and resumes from the runs it saved."""
from __future__ import annotations

import json
import math

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


def test_unroll_choices_mix_truncation_lengths(tmp_path):
    args = task.build_parser().parse_args(["--out", str(tmp_path), "--trajectories", "6", *TOY, "--truncations", "3",
                                           "--unroll", "2", "--unroll-choices", "2,3,6"])
    _, info = task.meta_train("mlp", args, task.digits())
    unrolls = [t["unroll"] for t in info["meta_losses"]]
    assert set(unrolls) <= {2, 3, 6} and len(set(unrolls)) > 1  # every trajectory draws one
    for t in info["meta_losses"]:  # one meta-update per truncation of the 6-step trajectory
        assert len(t["losses"]) == 6 // t["unroll"]
    again = [task.trajectory_unroll(args, k) for k in range(6)]
    assert again == unrolls  # a resumed run draws the same lengths
    with pytest.raises(SystemExit):  # 4 does not divide the trajectory's 6 steps
        task.main(["--out", str(tmp_path / "bad"), *TOY, "--truncations", "3", "--unroll", "2", "--unroll-choices", "4"])


def test_kind_unroll_truncates_each_kind_at_its_length(tmp_path, monkeypatch):
    monkeypatch.setattr(task, "FAMILIES", {"mlp-8": ("mlp", (8,)), "lstm-4": ("lstm", (4,))})
    args = task.build_parser().parse_args(["--out", str(tmp_path), "--trajectories", "6", *TOY, "--truncations", "3",
                                           "--unroll", "2", "--kind-unroll", "lstm:6"])
    _, info = task.meta_train("mlp", args, task.digits())
    drawn = {(t["problem"], t["unroll"], len(t["losses"])) for t in info["meta_losses"]}
    assert drawn == {("mlp-8", 2, 3), ("lstm-4", 6, 1)}  # both kinds drawn, each truncated at its own length
    with pytest.raises(SystemExit):  # a kind no family has
        task.main(["--out", str(tmp_path / "bad"), *TOY, "--kind-unroll", "rnn:6"])


def test_a_curriculum_stage_continues_a_stored_run(tmp_path, capsys):
    data = task.digits()
    flags = ["--out", str(tmp_path), *TOY, "--truncations", "3", "--unroll", "2"]  # 6-step trajectories
    task.meta_train("mlp", task.build_parser().parse_args([*flags, "--trajectories", "2"]), data)
    later = task.build_parser().parse_args([*flags, "--trajectories", "4", "--unroll-from", "2:6"])
    _, info = task.meta_train("mlp", later, data)  # the stage starts after the stored run: the run so far is the same
    assert "mlp: resumed after trajectory 2" in capsys.readouterr().out
    assert [t["unroll"] for t in info["meta_losses"]] == [2, 2, 6, 6]
    assert [len(t["losses"]) for t in info["meta_losses"]] == [3, 3, 1, 1]
    _, info = task.meta_train("mlp", task.build_parser().parse_args([*flags, "--trajectories", "5", "--unroll-from",
                                                                     "2:6"]), data)  # resumed inside the stage
    assert info["meta_losses"][-1]["unroll"] == 6
    earlier = task.build_parser().parse_args([*flags, "--trajectories", "6", "--unroll-from", "1:6"])
    with pytest.raises(SystemExit, match="other settings"):  # trajectory 1 was not truncated every 6 steps
        task.meta_train("mlp", earlier, data)


def test_a_run_stored_before_the_newer_flags_resumes(tmp_path, capsys, monkeypatch):
    data = task.digits()
    with monkeypatch.context() as m:  # a run stored before these flags existed
        m.setattr(task, "_ADDED_SETTINGS", {})
        task.meta_train("mlp", _args(tmp_path, 1), data)
    stored = json.loads((tmp_path / "runs" / "mlp" / "last.json").read_text())["settings"]
    assert not {"sample", "unroll_choices", "unroll_from", "kind_unroll"} & set(stored)
    _, info = task.meta_train("mlp", _args(tmp_path, 2), data)
    assert "mlp: resumed after trajectory 1" in capsys.readouterr().out and info["trajectory"] == 2
    args = _args(tmp_path, 3)
    args.sample = "kind"  # a newer flag set otherwise is another run
    with pytest.raises(SystemExit, match="other settings"):
        task.meta_train("mlp", args, data)


def test_sampling_by_kind_draws_every_kind_alike():
    def shares(by_kind):
        kinds = [task.FAMILIES[task.sample_problem(k, by_kind=by_kind).name][0] for k in range(200)]
        return {kind: kinds.count(kind) / len(kinds) for kind in set(kinds)}

    by_kind = shares(True)
    assert set(by_kind) == {"mlp", "cnn", "lstm", "transformer"}
    assert all(abs(v - 0.25) < 0.08 for v in by_kind.values()), by_kind
    assert shares(False)["mlp"] > 0.5  # by family the MLPs' seven widths dominate


@pytest.mark.parametrize("name", sorted({**task.FAMILIES, **task.IN_DISTRIBUTION, **task.UNSEEN}))
def test_every_problem_builds_and_places(name):
    family = {**task.FAMILIES, **task.IN_DISTRIBUTION, **task.UNSEEN}[name]
    problem = task.sample_problem(0, {name: family}, name)
    x = task.digits()[0][:4]
    assert problem.model(x).shape == (4, 10)
    LearnedOptimizer(problem.model, example_inputs=(x[:2],), total_steps=10)  # every problem has a neural graph
    assert not set(task.UNSEEN) & set(task.FAMILIES)  # unseen means no trajectory trains on it


def test_the_task_writes_results_curves_and_networks(tmp_path, monkeypatch):
    # two small problems keep the toy run short; the full lists are checked above
    monkeypatch.setattr(task, "FAMILIES", {"mlp-16": ("mlp", (16,)), "lstm-8": ("lstm", (8,))})
    monkeypatch.setattr(task, "IN_DISTRIBUTION", {"mlp-16": ("mlp", (16,))})
    monkeypatch.setattr(task, "UNSEEN", {"gru-8": ("gru", (8,))})
    out = tmp_path / "lo"
    flags = ["--out", str(out), "--trajectories", "1", *TOY, "--eval-steps", "10", "--long-steps", "20",
             "--eval-seeds", "0,1", "--twin-seeds", "0,1", "--adam-lrs", "1e-3,1e-2", "--weight-decays", "0.1"]
    assert task.main(flags) == 0
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    methods = {r["method"] for r in rows}
    baselines = {m for m in methods if m.startswith(("adam (lr ", "adamw (lr ", "adam, cosine decay (lr "))}
    assert len(baselines) == 3 and methods - baselines == {"per-parameter mlp", "graph", "graph, relabelled each step"}
    assert {(r["problem"], r["split"]) for r in rows} == {("mlp-16", "in distribution"), ("gru-8", "unseen")}
    assert {r["seed"] for r in rows} == {0, 1}
    by = {(r["problem"], r["method"], r["seed"]): r for r in rows}
    for problem in ("mlp-16", "gru-8"):  # the twin takes the same steps
        for seed in (0, 1):
            a, b = by[(problem, "graph", seed)], by[(problem, "graph, relabelled each step", seed)]
            assert a["loss_long"] == pytest.approx(b["loss_long"], rel=1e-4)
            assert math.isfinite(a["loss"]) and a["curve"][-1][0] == 20
    entry = next(e for e in results["table"] if (e["problem"], e["method"]) == ("mlp-16", "graph"))
    losses = [by[("mlp-16", "graph", s)]["loss"] for s in (0, 1)]
    assert entry["seeds"] == 2 and entry["loss"][0] == pytest.approx(sum(losses) / 2)
    assert "graph" in (out / "table.md").read_text() and results["checks"]
    assert (out / "curves.png").stat().st_size > 1000
    model = task.build_model("mlp", (8,))
    LearnedOptimizer(model, str(out / "graph.safetensors"), total_steps=20)  # the network loads as a checkpoint
    assert load_network(str(out / "mlp.safetensors")).kind == "mlp"
    # a resumed evaluation reads the saved runs instead of training again
    first = (out / "results.json").read_text()
    monkeypatch.setattr(task, "train_with", lambda *a, **k: pytest.fail("an evaluation run was repeated"))
    assert task.main(flags) == 0
    assert json.loads((out / "results.json").read_text())["rows"] == json.loads(first)["rows"]


@pytest.mark.parametrize("name", sorted({**task.IN_DISTRIBUTION, **task.UNSEEN}))
def test_validation_problems_are_the_evaluation_families_from_other_starts(name):
    family = {**task.IN_DISTRIBUTION, **task.UNSEEN}[name]
    test, val = task.evaluation_problem(name, family, 0), task.evaluation_problem(name, family, 0, "validation")
    again = task.evaluation_problem(name, family, 0, "validation")
    a, b, c = (dict(p.model.named_parameters()) for p in (test, val, again))
    assert [t.shape for t in a.values()] == [t.shape for t in b.values()]  # the same architecture
    assert all(torch.equal(b[n], c[n]) for n in b)  # a fixed start
    assert not torch.equal(a[next(iter(a))], b[next(iter(b))])  # another initialisation
    assert not torch.equal(torch.randint(10**6, (8,), generator=test.generator),
                           torch.randint(10**6, (8,), generator=val.generator))  # another data order
    with pytest.raises(ValueError, match="Could not resolve split"):
        task.evaluation_problem(name, family, 0, "test")


def test_paired_difference_pairs_runs_by_seed():
    rows = [{"problem": "p", "method": m, "seed": s, "loss": v}
            for m, s, v in [("graph", 2, 1.0), ("graph", 0, 3.0), ("mlp", 0, 4.0), ("mlp", 2, 1.5), ("mlp", 1, 9.0)]]
    diffs, mean, std = task.paired_difference(rows, "p", "graph", "mlp", "loss")
    assert diffs == [-1.0, -0.5] and mean == -0.75 and std == pytest.approx(2 ** -0.5 * 0.5)


def test_validation_runs_on_its_own_seeds_and_scores_against_adam(tmp_path, monkeypatch):
    monkeypatch.setattr(task, "FAMILIES", {"mlp-16": ("mlp", (16,))})
    monkeypatch.setattr(task, "IN_DISTRIBUTION", {"mlp-16": ("mlp", (16,))})
    monkeypatch.setattr(task, "UNSEEN", {"gru-8": ("gru", (8,))})
    out = tmp_path / "lo"
    flags = ["--out", str(out), "--trajectories", "1", *TOY, "--eval-steps", "10", "--long-steps", "20",
             "--val-seeds", "0,1", "--adam-lrs", "1e-2", "--weight-decays", "0.1", "--validation-only"]
    assert task.main(flags) == 0
    assert not (out / "results.json").exists() and not (out / "eval").exists()  # the evaluation problems unseen
    validation = json.loads((out / "validation.json").read_text())
    rows = validation["rows"]
    assert {r["method"] for r in rows} == {"adam (lr 0.01)", "per-parameter mlp", "graph"}  # no AdamW, cosine, twin
    assert {(r["problem"], r["seed"]) for r in rows} == {(p, s) for p in ("mlp-16", "gru-8") for s in (0, 1)}
    data = task.digits()
    for r in rows:
        if r["method"].startswith("adam"):  # Adam's run starts from the validation split's problem
            make = lambda m: torch.optim.Adam(m.parameters(), lr=1e-2)  # noqa: E731
            family = {"mlp-16": ("mlp", (16,)), "gru-8": ("gru", (8,))}[r["problem"]]
            run = task.train_with(make, task.evaluation_problem(r["problem"], family, r["seed"], "validation"), data,
                                  10, 64)
            assert r["loss"] == task.loss_at(run["curve"], 10)
            test = task.train_with(make, task.evaluation_problem(r["problem"], family, r["seed"]), data, 10, 64)
            assert r["loss"] != task.loss_at(test["curve"], 10)
    mean = lambda p, m: sum(r["loss"] for r in rows if (r["problem"], r["method"]) == (p, m)) / 2  # noqa: E731
    ratios = [mean(p, "graph") / mean(p, "adam (lr 0.01)") for p in ("mlp-16", "gru-8")]
    assert validation["score"]["graph"] == pytest.approx(math.sqrt(ratios[0] * ratios[1]), rel=1e-12)
    assert validation["score"]["adam (lr 0.01)"] == pytest.approx(1.0)
    assert validation["met"]["graph"] == (ratios[0] <= 0.8) + (ratios[1] <= 1.0)
    assert "geometric mean of loss / adam" in (out / "validation.md").read_text()
    monkeypatch.setattr(task, "train_with", lambda *a, **k: pytest.fail("a validation run was repeated"))
    assert task.main(flags) == 0  # a resumed run reads the saved runs


def test_family_weights_draw_a_family_more_often(tmp_path):
    families = {"mlp-8": ("mlp", (8,)), "lstm-4": ("lstm", (4,))}
    share = lambda weights: sum(task.sample_problem(k, families, weights=weights).name == "lstm-4"  # noqa: E731
                                for k in range(400)) / 400
    assert abs(share({"lstm-4": 3}) - 0.75) < 0.06 and abs(share({}) - 0.5) < 0.07
    assert share({"mlp-8": 1e-9}) == 1.0
    for bad in (["--family-weights", "rnn-4:2"], ["--family-weights", "mlp-16:0"],
                ["--family-weights", "mlp-16:2", "--sample", "kind"]):
        with pytest.raises(SystemExit):
            task.main(["--out", str(tmp_path / "bad"), *TOY, *bad])


def test_role_offsets_are_meta_trained_in_the_graph_network_only(tmp_path):
    """``--role-offsets``: the graph network gets a step size per role, started at 0 and moved by meta-training;
    the per-parameter MLP (no graph, so no roles) is the network it always was; the flag is a setting of the run."""
    data = task.digits()
    args = task.build_parser().parse_args(["--out", str(tmp_path), "--trajectories", "2", "--role-offsets", *TOY])
    assert not hasattr(task.make_network("mlp", args).output, "role_offset")
    fresh = task.make_network("graph", args)
    assert fresh.output.role_offsets and not fresh.output.role_offset.any()
    network, info = task.meta_train("graph", args, data)
    assert info["settings"]["role_offsets"] is True
    assert network.output.role_offset.abs().max() > 0  # meta-training moved the offsets of the roles it saw
    assert load_network(str(tmp_path / "graph.safetensors")).output.role_offsets
    plain = _args(tmp_path, 3)  # the same run without the flag is another run
    with pytest.raises(SystemExit, match="other settings"):
        task.meta_train("graph", plain, data)


def test_role_offset_lr_scale_sets_the_offsets_meta_learning_rate(tmp_path):
    """``--role-offset-lr-scale s``: the role offsets learn at ``s x --meta-lr`` (default 10, the common step size's
    rate, which the stored runs have). Adam's first steps move a parameter by at most its rate each, so one
    trajectory of 2 truncations moves an offset by at most ``2 s x meta-lr``; the common step size keeps 10x."""
    data = task.digits()
    moved = {}
    for scale in ("1", "10"):
        out = tmp_path / scale
        args = task.build_parser().parse_args(["--out", str(out), "--trajectories", "1", "--role-offsets",
                                               "--role-offset-lr-scale", scale, *TOY])
        network, info = task.meta_train("graph", args, data)
        assert info["settings"]["role_offset_lr_scale"] == float(scale)
        moved[scale] = float(network.output.role_offset.detach().abs().max())
    meta_lr = task.build_parser().parse_args(["--out", "x"]).meta_lr
    assert 0 < moved["1"] <= 2 * meta_lr * 1.001
    assert moved["10"] > 2 * meta_lr  # the default: the step size's rate, 10x the network's
    assert task.build_parser().parse_args(["--out", "x"]).role_offset_lr_scale == 10.0
    again = task.build_parser().parse_args(["--out", str(tmp_path / "1"), "--trajectories", "2", "--role-offsets",
                                            *TOY])
    with pytest.raises(SystemExit, match="other settings"):  # another rate is another run
        task.meta_train("graph", again, data)
