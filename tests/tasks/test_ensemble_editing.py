"""Output-ensemble INR editing (``--ensemble K``): k deltas per parameter, the mean render of the k edited
SIRENs in training and in evaluation, the matched parameter budget, and k = 1 as before."""
from __future__ import annotations

import json
import os

import pytest
import torch
from torch_geometric.data import Batch

import nngraph
from nngraph import schema
from nngraph.gnn import KernelDecoder, NodeEdgeHead
from tasks.inr_editing import task as inr_editing
from tasks.pretrained import shipped as pretrained
from tasks.inr_editing.budget import kernel_boxes, match_head_dim, parameter_counts
from tasks.common.models import GraphEditor, apply_deltas
from tasks.inr_editing.render import INRRenderer, render_ensemble, render_module
from tasks.common.scaling import GraphScaler

from .test_render import small_sirens

FAST = ["--epochs", "1", "--hidden-dim", "8", "--num-layers", "1", "--no-progress", "--probes", "4",
        "--methods", "noop,encoder"]


def _editor(k: int, graphs, init_scale: float = 1.0, **kw) -> GraphEditor:
    torch.manual_seed(0)
    return GraphEditor(GraphScaler().fit(graphs), hidden_dim=8, num_layers=1, init_scale=init_scale,
                       num_outputs=k, **kw)


def test_apply_deltas_stacks_the_members():
    x, edge_attr = torch.randn(4, 5), torch.randn(6, 1)
    dx, de = torch.randn(4, 3 * 5), torch.randn(6, 3)
    xs, edge_attrs = apply_deltas(x, edge_attr, dx, de)
    assert xs.shape == (3, 4, 5) and edge_attrs.shape == (3, 6, 1)
    for j in range(3):
        assert torch.equal(xs[j], x + dx[:, 5 * j:5 * (j + 1)])  # delta-major columns
        assert torch.equal(edge_attrs[j], edge_attr + de[:, j:j + 1])
    with pytest.raises(ValueError, match=r"\(N, k \* F\)"):
        apply_deltas(x, edge_attr, torch.randn(4, 10), de)


def test_training_render_equals_the_evaluation_render_of_real_modules_k2():
    """The differentiable mean render (stacked features, functional_call) is the mean of the renders of the
    k modules from_graph builds, to 1e-5, on real SIRENs."""
    models = small_sirens(3)
    graphs = [nngraph.to_graph(m) for m in models]
    batch = Batch.from_data_list(graphs)
    model = _editor(2, graphs)
    renderer = INRRenderer(models[0], 12)
    xs, edge_attrs = model.edit(batch)  # (2, N, 5), (2, W, 1)
    train_images = renderer.ensemble(xs, edge_attrs, 3)  # (3, 1, 12, 12)
    eval_images, modules = inr_editing.render_edits(model, graphs, models[0], 12)
    assert train_images.shape == eval_images.shape == (3, 1, 12, 12) and [len(ms) for ms in modules] == [2, 2, 2]
    torch.testing.assert_close(train_images.detach(), eval_images, rtol=0, atol=1e-5)
    for i, members in enumerate(modules):
        first, second = (render_module(m, 12) for m in members)
        assert not torch.allclose(first, second, atol=1e-3)  # two different SIRENs ...
        torch.testing.assert_close(eval_images[i], (first + second) / 2, rtol=0, atol=1e-6)  # ... averaged
        assert not torch.allclose(eval_images[i], render_module(models[i], 12), atol=1e-3)  # the edit mattered
    train_images.sum().backward()
    grad = model.head.edge_out.weight.grad.view(147, 2, -1)  # (positions, k, head_dim)
    assert grad[:, 0].abs().sum() > 0 and grad[:, 1].abs().sum() > 0  # both members learn


def test_every_member_is_masked_to_parameters():
    models = small_sirens(2)
    graphs = [nngraph.to_graph(m) for m in models]
    batch = Batch.from_data_list(graphs)
    dx, de = _editor(3, graphs)(batch)
    assert dx.shape == (batch.num_nodes, 15) and de.shape == (batch.edge_attr.size(0), 3)
    members = dx.view(batch.num_nodes, 3, 5)  # (N, k, 5)
    others = [c for c in range(5) if c != schema.BIAS]
    assert torch.all(members[:, :, others] == 0)
    assert torch.all(members[batch.node_type == int(schema.NodeType.INPUT)] == 0)
    hidden = batch.node_type != int(schema.NodeType.INPUT)
    assert torch.all(members[hidden][:, :, schema.BIAS] != 0) and torch.all(de != 0)


def test_one_member_renders_and_trains_as_the_single_edit():
    """k = 1 through the ensemble path is bit for bit the single edited INR, values and gradients."""
    models = small_sirens(3)
    graphs = [nngraph.to_graph(m) for m in models]
    batch = Batch.from_data_list(graphs)
    renderer = INRRenderer(models[0], 12)
    results = []
    for ensemble in (False, True):
        model = _editor(1, graphs)
        if ensemble:
            image = renderer.ensemble(*model.edit(batch), 3)
        else:
            dx, de = model(batch)  # (N, 5), (W, 1)
            image = renderer(batch.x + dx, batch.edge_attr + de, 3)
        image.pow(2).sum().backward()
        results.append((image.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = results
    assert torch.equal(a, b) and ga.keys() == gb.keys() and all(torch.equal(ga[n], gb[n]) for n in ga)
    with pytest.raises(ValueError, match="edit_ensembles"):
        inr_editing.edit_graphs(_editor(2, graphs), graphs)
    assert torch.equal(render_ensemble([models[0]], 12), render_module(models[0], 12))


def test_parameter_counts_leave_out_unreached_kernel_positions():
    dec = KernelDecoder(4, out_channels=3)  # a (3, 7, 7) box: 147 positions
    assert parameter_counts(dec, [(1, 1, 1)]) == {"total": 147 * 12 + 147 * 3, "used": 12 + 3}
    assert parameter_counts(dec, [(1, 3, 3), (1, 1, 1)])["used"] == 9 * 12 + 9 * 3  # the 1x1 centre is inside
    graphs = [nngraph.to_graph(m) for m in small_sirens(2)]
    assert kernel_boxes(graphs) == [(1, 1, 1)]
    editor = _editor(1, graphs)
    editor.encoder.readout.requires_grad_(True)
    with_readout = parameter_counts(editor, [(1, 1, 1)])
    editor.encoder.readout.requires_grad_(False)  # frozen parameters are not counted
    assert parameter_counts(editor, [(1, 1, 1)])["total"] < with_readout["total"]


def test_matched_head_width_keeps_the_budget_and_refuses_when_it_cannot():
    graphs = [nngraph.to_graph(m) for m in small_sirens(2)]
    reference = _editor(1, graphs)
    target = parameter_counts(reference, [(1, 1, 1)])["used"]
    for k in (2, 4, 8):
        width, counts = match_head_dim(reference, reference.head, k, [(1, 1, 1)])
        assert width < 8 and abs(counts["used"] - target) <= 0.05 * target
        assert counts == parameter_counts(_editor(k, graphs, head_dim=width), [(1, 1, 1)])
    head = NodeEdgeHead(8)  # the head alone: no width of 8 outputs comes within 5% of it
    with pytest.raises(ValueError, match="no head width"):
        match_head_dim(head, head, 8, [(1, 1, 1)])


def test_ensemble_run_rows_budget_grid_and_checkpoint(inr_zoo, tmp_path):
    out = str(tmp_path / "k2")
    command = f"python -m tasks.inr_editing --zoo {inr_zoo} --out {out} --ensemble 2 " + " ".join(FAST)
    _, args = pretrained._task_args(command)
    rows = inr_editing.run(args)
    assert [r["method"] for r in rows] == ["noop", "encoder_k2"]
    enc = rows[1]
    assert enc["k"] == 2 and enc["head_dim"] < 8
    assert abs(enc["params_used"] - enc["params_used_k1"]) <= 0.05 * enc["params_used_k1"]
    assert enc["params_total"] > enc["params_used"] and enc["params_total_k1"] > enc["params_used_k1"]
    assert json.load(open(os.path.join(out, "results.json")))[1] == enc
    settings = json.load(open(os.path.join(out, "runs", "encoder_k2", "best.json")))["settings"]
    assert settings["num_outputs"] == 2 and settings["head_dim"] == enc["head_dim"]
    assert os.path.exists(os.path.join(out, "edits.png")) and os.path.exists(os.path.join(out, "edits_fine.png"))
    # the checkpoint rebuilds (k outputs, matched width) and scores as the run did
    name = pretrained.export(command, "encoder_k2", directory=str(tmp_path / "ckpt"))
    result = pretrained.evaluate(name, inr_zoo, directory=str(tmp_path / "ckpt"))
    assert result["value"] == pytest.approx(enc["value"], rel=1e-5, abs=1e-6)


def test_ensemble_of_one_is_todays_run_and_unmatched_keeps_the_width(inr_zoo, tmp_path):
    def run(*extra):
        return inr_editing.run(inr_editing.build_parser().parse_args(
            ["--zoo", inr_zoo, "--out", str(tmp_path / "_".join(extra or ("default",)))] + FAST + list(extra)))

    default, explicit = run(), run("--ensemble", "1")
    assert [r["method"] for r in default] == ["noop", "encoder"] and default[1]["k"] == 1
    assert default[1]["value"] == explicit[1]["value"]  # the same seed: the same MSE, to the bit
    assert default[1]["params_used"] == default[1]["params_used_k1"] and default[1]["head_dim"] == 8
    unmatched = run("--ensemble", "2", "--no-ensemble-match-params")[1]
    assert unmatched["head_dim"] == 8 and unmatched["params_used"] > unmatched["params_used_k1"]
    with pytest.raises(ValueError, match="--ensemble"):
        run("--ensemble", "0")


def test_sweep_runs_each_k_and_seed_once_and_summarises(inr_zoo, tmp_path):
    from tasks.inr_editing import sweep as edit_sweep

    out = str(tmp_path / "sweep")
    flags = ["--epochs", "1", "--baseline-epochs", "1", "--hidden-dim", "8", "--num-layers", "1", "--no-progress",
             "--probes", "4"]
    argv = ["--zoo", inr_zoo, "--out", out, "--ks", "1,2", "--seeds", "0"] + flags
    assert edit_sweep.main(argv) == 0
    rows = json.load(open(os.path.join(out, "summary.json")))
    assert [r["method"] for r in rows] == ["noop", "encoder", "encoder_k2", "flat_mlp"]
    assert all(r["n"] == 1 for r in rows) and rows[1]["vs_k1"] == 0.0 and rows[0]["vs_k1"] is None
    k2 = json.load(open(os.path.join(out, "k2_seed0", "results.json")))[0]
    assert rows[2]["value"] == k2["value"] and rows[2]["vs_k1"] == pytest.approx(k2["value"] / rows[1]["value"] - 1)
    stamp = os.path.getmtime(os.path.join(out, "k2_seed0", "results.json"))
    assert edit_sweep.main(argv) == 0  # done runs are not repeated
    assert os.path.getmtime(os.path.join(out, "k2_seed0", "results.json")) == stamp
    assert "encoder_k2" in open(os.path.join(out, "summary.md")).read()


def test_sweep_summary_averages_over_seeds(tmp_path):
    from tasks.inr_editing import sweep as edit_sweep

    for seed, (a, b) in enumerate([(0.02, 0.010), (0.04, 0.014)]):
        os.makedirs(tmp_path / f"k8_seed{seed}")
        os.makedirs(tmp_path / f"k1_seed{seed}")
        rows = [{"method": "encoder", "k": 1, "value": a}]
        json.dump(rows, open(tmp_path / f"k1_seed{seed}" / "results.json", "w"))
        json.dump([{"method": "encoder_k8", "k": 8, "value": b, "speckle": 0.1}],
                  open(tmp_path / f"k8_seed{seed}" / "results.json", "w"))
    enc, k8 = edit_sweep.summarise(str(tmp_path))
    assert (enc["n"], enc["value"], enc["value_std"]) == (2, pytest.approx(0.03), pytest.approx(0.0141421, rel=1e-5))
    assert k8["value"] == pytest.approx(0.012) and k8["vs_k1"] == pytest.approx(0.012 / 0.03 - 1)
    assert k8["mse_background"] is None and "-60.0%" in edit_sweep.format_summary([enc, k8])
    with pytest.raises(ValueError, match="at least 1"):
        edit_sweep.run_commands("z", "o", [0], [0])


def test_ensemble_diagnostics_reproduce_the_runs_score_and_compare_the_mean_delta(inr_zoo, tmp_path):
    from tasks.diagnostics.edit_ensemble import ensemble_diagnostics

    out = str(tmp_path / "k2")
    rows = inr_editing.run(inr_editing.build_parser().parse_args(
        ["--zoo", inr_zoo, "--out", out, "--ensemble", "2", "--head-scale", "1.0"] + FAST))
    d = ensemble_diagnostics(out, inr_zoo)
    assert d["k"] == 2 and d["method"] == "encoder_k2"
    assert d["mse_ensemble"] == pytest.approx(rows[1]["value"], rel=1e-5, abs=1e-7)  # the task's own score
    # the mean of two renders is not the render of the mean delta (the SIREN is not linear in its weights)
    assert d["mse_mean_delta"] != pytest.approx(d["mse_ensemble"], rel=1e-6)
    assert d["mse_member_best"] <= d["mse_member_mean"]
    assert d["relative_spread_rms"] > 0 and d["relative_delta_rms"] > 0
