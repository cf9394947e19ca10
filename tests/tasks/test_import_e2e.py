"""Imported zoos run the task CLIs unchanged, and their recorded coordinates reach probes and renders."""
from __future__ import annotations

import math
import os

import torch
from safetensors.torch import save_file

import nngraph
from nngraph.cli import main as cli_main
from nngraph.zoo import INRMetadata, build_model, import_zoo, siren_spec
from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.inr_classification import task as inr_classification
from tasks.common.features import probe_inputs_for
from tasks.common.splits import load_split
from tasks.inr_editing.render import INRRenderer, render_module

from ..zoo.layouts import write_cnn_zoo, write_dwsnets

FAST = ["--epochs", "1", "--baseline-epochs", "2", "--hidden-dim", "8", "--num-layers", "1", "--no-progress"]


def test_inr_classification_on_an_imported_dwsnets_zoo(tmp_path):
    src, zoo, out = str(tmp_path / "mnist-inrs"), str(tmp_path / "zoo"), str(tmp_path / "run")
    write_dwsnets(src, {"training": 24, "testing": 6})
    assert cli_main(["zoo", "import", src, "--out", zoo, "--image-size", "8,8", "--no-progress"]) == 0
    rows = inr_classification.run(inr_classification.build_parser().parse_args(
        ["--zoo", zoo, "--out", out, "--probes", "4", "--gbm-iters", "5", *FAST]))
    assert {r["method"] for r in rows} == set(inr_classification.METHODS)
    accs = [r["value"] for r in rows if r["metric"] == "test_acc"]
    assert len(accs) == len(inr_classification.METHODS) and all(0 <= a <= 1 for a in accs)
    assert "6 test INRs" in rows[0]["note"]  # DWSNets' testing folders are the test split
    assert os.path.exists(os.path.join(out, "results.json"))


def test_accuracy_prediction_on_an_imported_cnn_zoo(tmp_path):
    src, zoo, out = str(tmp_path / "cnn"), str(tmp_path / "zoo"), str(tmp_path / "run")
    write_cnn_zoo(src, runs=16, steps=(20, 86), channels=(3, 3, 3))
    assert cli_main(["zoo", "import", src, "--out", zoo, "--no-progress"]) == 0
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(
        ["--zoo", zoo, "--out", out, "--gbm-iters", "5", "--methods", "encoder,stats_mlp", *FAST]))
    r2 = [r["value"] for r in rows if r["metric"] == "r2[test]"]
    assert len(r2) == 2 and all(math.isfinite(v) for v in r2)


def _siren_folder(root: str, n: int = 4) -> dict:
    spec = siren_spec(2, [6], 1, 30.0)
    os.makedirs(root)
    for i in range(n):
        torch.manual_seed(i)
        save_file(build_model(spec).state_dict(), os.path.join(root, f"inr{i}.safetensors"))
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write("file,label,split\n" + "".join(f"inr{i},{i % 2},{'train' if i < 2 else 'test'}\n" for i in range(n)))
    return spec


def test_probes_use_the_recorded_coordinates(tmp_path):
    src, zoo = str(tmp_path / "src"), str(tmp_path / "zoo")
    spec = _siren_folder(src)
    meta = INRMetadata((0.0, 1.0), "rowcol", 30.0, (4, 4))
    import_zoo(src, zoo, spec=spec, table=os.path.join(src, "labels.csv"), inr=meta, progress=False)
    split = load_split(zoo, "train", num_probes=9)
    for g, model in zip(split.graphs, split.models):
        assert torch.equal(g.probe, nngraph.probe_features(model, meta.grid(3, 3)).float())
        assert not torch.equal(g.probe, nngraph.probe_features(model, INRMetadata().grid(3, 3)).float())
    # without a record: today's grid, [-1, 1]^2 in (x, y)
    old = probe_inputs_for(spec, 9)
    ys = torch.linspace(-1.0, 1.0, 3)
    gy, gx = torch.meshgrid(ys, ys, indexing="ij")
    assert torch.equal(old, torch.stack([gx, gy], dim=-1).reshape(9, 2))
    random = probe_inputs_for(spec, 5, placement="random", inr=meta)
    assert random.min() >= 0 and random.max() <= 1


def test_renderer_uses_the_recorded_coordinates():
    torch.manual_seed(0)
    model = build_model(siren_spec(2, [6], 1, 30.0)).eval()
    meta = INRMetadata((0.0, 1.0), "rowcol")
    image = render_module(model, 4, meta)  # (1, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(image[0, 1, 2], model(torch.tensor([[1 / 3, 2 / 3]]))[0, 0], rtol=0, atol=1e-6)
    renderer = INRRenderer(model, 4, meta)
    params = {n: p.detach().unsqueeze(0) for n, p in model.named_parameters()}
    torch.testing.assert_close(renderer.render_params(params)[0], image, rtol=0, atol=1e-6)
    assert not torch.allclose(render_module(model, 4), image)


def test_inr_editing_renders_on_the_recorded_coordinates(tmp_path):
    from tasks.inr_editing import task as inr_editing
    from tasks.inr_editing.render import dilate

    src, zoo, out = str(tmp_path / "src"), str(tmp_path / "zoo"), str(tmp_path / "run")
    spec = _siren_folder(src, n=6)
    with open(os.path.join(src, "labels.csv"), "w") as f:  # 1 train, 1 val, 4 test
        f.write("file,label,split\n" + "".join(f"inr{i},{i % 2},{['train', 'val'][i] if i < 2 else 'test'}\n"
                                                for i in range(6)))
    meta = INRMetadata((0.0, 1.0), "rowcol", 30.0, (4, 4))
    import_zoo(src, zoo, spec=spec, table=os.path.join(src, "labels.csv"), inr=meta, progress=False)
    rows = inr_editing.run(inr_editing.build_parser().parse_args(
        ["--zoo", zoo, "--out", out, "--methods", "noop", "--probes", "0", "--no-progress"]))
    test = load_split(zoo, "test")
    assert len(test) == 4
    target = torch.cat([dilate(test.dataset.image(i).unsqueeze(0), 3) for i in range(len(test))])  # (M, 1, 4, 4)
    on_grid = lambda inr: torch.stack([render_module(m, 4, inr) for m in test.models])  # noqa: E731
    expected = float(torch.nn.functional.mse_loss(on_grid(meta), target))
    assert [r["value"] for r in rows if r["method"] == "noop"] == [expected]
    assert expected != float(torch.nn.functional.mse_loss(on_grid(INRMetadata()), target))


def test_inr_editing_names_an_empty_split(tmp_path):
    from tasks.inr_editing import task as inr_editing

    src, zoo = str(tmp_path / "src"), str(tmp_path / "zoo")
    spec = _siren_folder(src)  # train and test only
    import_zoo(src, zoo, spec=spec, table=os.path.join(src, "labels.csv"), progress=False)
    import pytest

    with pytest.raises(ValueError, match=r"none in \['val'\]"):
        inr_editing.run(inr_editing.build_parser().parse_args(
            ["--zoo", zoo, "--out", str(tmp_path / "run"), "--methods", "noop", "--probes", "0", "--no-progress"]))
