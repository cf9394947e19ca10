"""INR editing options: the finer training grid, per-depth delta gains, sign-flip augmentation."""
from __future__ import annotations

import json
import os

import pytest
import torch
from torch_geometric.data import Batch

import nngraph
from tasks.inr_editing import task as inr_editing
from nngraph.symmetry import sign_flip
from tasks.common.scaling import GraphScaler
from tasks.inr_editing.task import rendering_loss, upsample_target
from tasks.common.models import GraphEditor
from tasks.inr_editing.render import INRRenderer

from .test_render import small_sirens


def _batch(n=3):
    models = small_sirens(n)
    return models, Batch.from_data_list([nngraph.to_graph(m) for m in models])


def test_fine_grid_of_2h_minus_1_holds_every_pixel():
    models, batch = _batch()
    coarse = INRRenderer(models[0], 12)(batch.x, batch.edge_attr, 3)  # (3, 1, 12, 12)
    fine = INRRenderer(models[0], 23)(batch.x, batch.edge_attr, 3)  # (3, 1, 23, 23)
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, rtol=0, atol=1e-5)
    target = torch.rand(3, 1, 12, 12)
    up = upsample_target(target, 23)
    torch.testing.assert_close(up[..., ::2, ::2], target, rtol=0, atol=1e-6)
    torch.testing.assert_close(up[..., 1, ::2], (target[..., 0, :] + target[..., 1, :]) / 2)  # between two rows
    assert upsample_target(target, 12) is target


def test_fine_loss_sees_what_happens_between_pixels():
    models, batch = _batch()
    coarse_r, fine_r = INRRenderer(models[0], 12), INRRenderer(models[0], 23)
    image = coarse_r(batch.x, batch.edge_attr, 3).detach()  # the SIRENs themselves as the target
    coarse = rendering_loss(coarse_r)(batch.x, batch.edge_attr, 3, image)
    fine = rendering_loss(coarse_r, fine_r)(batch.x, batch.edge_attr, 3, image)
    assert float(coarse) < 1e-10  # exact on the pixels ...
    assert float(fine) > 1e-4  # ... but a SIREN at w0 = 30 is not the bilinear image between them


def test_depth_gain_scales_and_freezes_the_first_layer():
    _, batch = _batch()
    scaler = GraphScaler().fit(batch.to_data_list())
    first_edge = batch.layer[batch.edge_index[1]] == 1  # (E,)
    first_node = batch.layer == 1  # (N,)

    def deltas(gain):
        torch.manual_seed(0)
        model = GraphEditor(scaler, hidden_dim=8, num_layers=1, init_scale=1.0, depth_gain=gain)
        return model(batch)

    dx1, de1 = deltas(None)
    dx_half, de_half = deltas([0.5])
    dx0, de0 = deltas([0.0])
    assert de1[first_edge].abs().sum() > 0 and dx1[first_node].abs().sum() > 0
    torch.testing.assert_close(de_half[first_edge], 0.5 * de1[first_edge])
    torch.testing.assert_close(dx_half[first_node], 0.5 * dx1[first_node])
    assert torch.all(de0[first_edge] == 0) and torch.all(dx0[first_node] == 0)
    torch.testing.assert_close(de0[~first_edge], de1[~first_edge])  # later layers untouched
    torch.testing.assert_close(dx0[~first_node], dx1[~first_node])


def test_sign_flips_keep_the_rendered_image_and_the_target():
    models, batch = _batch()
    batch.target = torch.rand(3, 1, 12, 12)
    flipped = sign_flip(batch, p=1.0)
    assert not torch.equal(flipped.edge_attr, batch.edge_attr)
    renderer = INRRenderer(models[0], 12)
    torch.testing.assert_close(renderer(flipped.x, flipped.edge_attr, 3), renderer(batch.x, batch.edge_attr, 3),
                               rtol=0, atol=1e-5)
    assert flipped.target is batch.target


def test_editing_options_reach_training(inr_zoo, tmp_path):
    out = str(tmp_path / "edit")
    rows = inr_editing.run(inr_editing.build_parser().parse_args(
        ["--zoo", inr_zoo, "--out", out, "--epochs", "1", "--baseline-epochs", "1", "--hidden-dim", "8",
         "--num-layers", "1", "--no-progress", "--render-res", "31", "--first-layer-gain", "0.1", "--flip",
         "--head-scale", "0.05"]))
    assert {r["method"] for r in rows} == set(inr_editing.METHODS)
    settings = json.load(open(os.path.join(out, "runs", "encoder", "best.json")))["settings"]
    assert settings["train_resolution"] == 31 and settings["depth_gain"] == [0.1]
    assert settings["augment"] == "sign_flip" and settings["init_scale"] == 0.05
    assert os.path.exists(os.path.join(out, "edits_fine.png"))


def test_edit_quality_separates_background_speckle_from_stroke_error():
    target = torch.zeros(2, 1, 4, 4)
    target[:, :, 1:3, 1:3] = 1.0  # a 2x2 stroke on 12 background pixels per image
    images = target.clone()
    images[0, 0, 0, 0] = 0.5  # one speckle dot
    images[1, 0, 1, 1] = 0.0  # one stroke pixel missed
    q = inr_editing.edit_quality(images, target)
    assert q == pytest.approx({"speckle": 1 / 24, "mse_background": 0.25 / 24, "mse_stroke": 1.0 / 8})
