"""tasks.generation end to end at toy sizes: the zoo, the generators and baselines, the rows and the picture."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tasks.generation import task as generation


def test_the_task_runs_and_reports_every_method(tmp_path, capsys):
    out = str(tmp_path / "gen")
    argv = ["--out", out, "--runs", "3", "--zoo-epochs", "3", "--epochs", "1", "--hidden-dim", "8",
            "--num-layers", "1", "--twin-dim", "16", "--steps", "2", "--targets", "2", "--per-target", "2",
            "--latent-epochs", "1", "--rank", "4", "--finetune-epochs", "1", "--no-progress"]
    assert generation.main(argv) == 0
    rows = json.load(open(os.path.join(out, "results.json")))
    methods = {r["method"] for r in rows}
    assert methods == {"zoo", "random_init", "zoo_subset", "zoo_best", "latent", "latent_twin", "latent_filtered",
                       "latent_probed", "flow", "twin", "gaussian", "interpolate"}
    taus = [r for r in rows if r["metric"] == "kendall_tau_target"]
    assert len(taus) == 8
    for method in ("latent_filtered", "latent_probed"):
        assert [r["metric"] for r in rows if r["method"] == method].count("predictor_heldout_tau") == 1
    tuned = {(r["method"], r["metric"]) for r in rows if r["metric"].startswith("finetune_")}
    for method in ("random_init", "zoo_best", "latent", "latent_twin", "latent_filtered", "latent_probed", "flow",
                   "twin", "gaussian", "interpolate"):
        for task in ("same", "new"):
            assert {(method, f"finetune_{task}_acc_epoch{e}") for e in (0, 1)} <= tuned
    assert all(0.0 <= r["value"] <= 1.0 for r in rows if r["metric"] == "median_acc")
    assert all(r.get("seed") == 0 for r in rows)  # summarize --paired pairs runs by it
    assert os.path.exists(os.path.join(out, "accuracy.png"))
    for method in ("latent", "latent_twin", "flow", "twin"):
        assert os.path.exists(os.path.join(out, "runs", method, "generator.pt"))
    zoo = torch.load(os.path.join(out, "zoo.pt"), weights_only=True)
    assert len(zoo["states"]) == len(zoo["test_acc"]) > 0
    assert generation.main(argv) == 0  # a second run reads the zoo and the fitted generators back
    argv[argv.index("--finetune-epochs") + 1] = "0"
    assert generation.main(argv + ["--methods", "latent_filtered,latent_probed", "--reject-copies"]) == 0
    notes = [r["note"] for r in json.load(open(os.path.join(out, "results.json")))
             if r["metric"] == "predictor_heldout_tau"]
    assert len(notes) == 2 and all("copies kept last" in n for n in notes)


def test_unknown_methods_are_one_line(tmp_path, capsys):
    assert generation.main(["--out", str(tmp_path), "--methods", "flow,vae"]) == 1
    assert "Could not resolve methods ['vae']" in capsys.readouterr().err


def test_novelty_catches_a_relabelled_copy():
    """A zoo model with its hidden neurons relabelled is at distance 0 after alignment (a copy); new weights are
    not; the relabelling itself is checked to keep the function and change the weights."""
    from torch import nn

    import nngraph

    inputs = torch.randn(2, 6)
    models = []
    for seed in range(6):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)))
    graphs = [nngraph.to_graph(m, inputs) for m in models]
    novel = generation.Novelty(graphs, np.array([0, 0, 1, 1, 2, 2]), models[0], inputs)
    assert novel.zoo.shape == (6,) and (novel.zoo > 0).all()
    layout = nngraph.build_layout(models[3], (inputs,))
    perm = layout.random_node_permutation(torch.Generator().manual_seed(0))
    copy = layout.permute_graph(graphs[3], perm)
    assert not torch.equal(copy.edge_attr, graphs[3].edge_attr)
    torch.testing.assert_close(nngraph.from_graph(copy, models[0])(inputs), models[3](inputs))
    torch.manual_seed(10)
    new = nngraph.to_graph(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), inputs)
    out = novel([copy, new])
    assert novel.nearest(copy) < 1e-6 < novel.nearest(new)
    assert out["frac_copies"] == 0.5


def test_interpolate_baseline_mixes_two_runs_near_the_target():
    """Every sample is a mix of two models of different runs: with two one-model runs of very different accuracy
    and a target at each, both samples lie on the segment between model 0 and model 1 aligned to it."""
    from torch import nn

    import nngraph
    from nngraph.generate import WeightSpace

    inputs = torch.randn(2, 6)
    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)))
    graphs = [nngraph.to_graph(m, inputs) for m in models]
    layout, space = nngraph.build_layout(models[0], (inputs,)), WeightSpace.of(models[0], inputs)
    out = generation.interpolate_baseline(graphs, np.array([0.2, 0.9]), np.array([0, 1]), np.array([0.2, 0.9]),
                                          layout, space, seed=0)
    a, b = space.flatten(graphs).double()  # (D,) each
    for g in out:
        w = space.flatten([g]).double()[0]
        # a mix, not a copy: away from both models, nearer to each than they are to each other
        d_ab = float((a - b).norm())
        assert 0 < float((w - a).norm()) < d_ab and 0 < float((w - b).norm()) < d_ab
        assert torch.isfinite(nngraph.from_graph(g, models[0])(inputs)).all()


def test_finetune_curve_trains_and_the_new_task_resets_the_readout():
    """A trained classifier starts high on its own task and at chance on the new one (labels moved, readout
    re-initialised); an epoch of fine-tuning raises the new task's accuracy."""
    from torch import nn

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 4, 4, generator=g)
    y = (x.view(400, -1)[:, :10].argmax(1))  # a learnable rule: the largest of the first 10 inputs
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    trained = generation.finetune_curve(model, x, y, x, y, epochs=8, lr=1e-2, seed=0, new_task=False)
    assert trained[0] < 0.3 < 0.6 < trained[-1]
    for _ in range(8):  # make ``model`` itself the trained one
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for idx in torch.randperm(400, generator=g).split(64):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    same = generation.finetune_curve(model, x, y, x, y, epochs=1, lr=1e-2, seed=0, new_task=False)
    new = generation.finetune_curve(model, x, y, x, y, epochs=1, lr=1e-2, seed=0, new_task=True)
    assert same[0] > 0.6 and new[0] < 0.3 < new[1]
