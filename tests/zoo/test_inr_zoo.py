import json
import re
import os

import pytest
import torch
from safetensors.torch import load_file

from nngraph.zoo import Zoo, ZooError, build_inr_zoo, coordinate_grid
from nngraph.zoo.siren import psnr
from tests.zoo.tiny import checksums, tiny_inr


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("inr_full"))
    assert build_inr_zoo(root, tiny_inr(), progress=False) == 12
    return Zoo(root)


def test_full_zoo_contents(full):
    assert len(full) == 12 and len(set(checksums(full).values())) == 12
    e = full.entries[0]
    assert e["family"] == "siren" and e["spec"]["hidden"] == [8, 8]
    assert [x["image_index"] for x in full.entries] == [i // 2 for i in range(12)]
    assert [x["label"] for x in full.entries] == [i // 2 for i in range(12)]  # digits 0..5
    # the stored weights render the stored image at the stored PSNR
    images = load_file(os.path.join(full.root, "images.safetensors"))["images"]  # (6, 1, 8, 8)
    for e in full.entries:
        out = full.load_model(e)(coordinate_grid(8, 8)).detach()  # (64, 1)
        target = images[e["image_index"]].flatten(1).T  # (1, 8, 8) -> (64, 1)
        assert abs(float(psnr((out - target).pow(2).mean())) - e["psnr"]) < 1e-2
        assert e["psnr"] >= 25.0 or e["steps"] == 80


def test_deterministic_for_a_seed(full, tmp_path):
    build_inr_zoo(str(tmp_path / "again"), tiny_inr(), progress=False)
    assert checksums(Zoo(str(tmp_path / "again"))) == checksums(full)
    build_inr_zoo(str(tmp_path / "other"), tiny_inr(seed=4), progress=False)
    assert set(checksums(Zoo(str(tmp_path / "other"))).values()).isdisjoint(checksums(full).values())


def test_resume_after_interruption_redoes_nothing(full, tmp_path):
    root = str(tmp_path / "z")
    assert build_inr_zoo(root, tiny_inr(), max_models=5, progress=False) == 5  # "killed" inside chunk 2
    first = {e["id"]: os.stat(os.path.join(root, e["file"])).st_mtime_ns for e in Zoo(root).entries}
    assert len(first) == 5
    assert build_inr_zoo(root, tiny_inr(), progress=False) == 7
    zoo = Zoo(root)
    assert checksums(zoo) == checksums(full)
    for e in zoo.entries:  # models stored before the interruption were not rewritten
        if e["id"] in first:
            assert os.stat(os.path.join(root, e["file"])).st_mtime_ns == first[e["id"]]
    assert build_inr_zoo(root, tiny_inr(), progress=False) == 0  # complete: nothing to do
    assert not [f for f in os.listdir(os.path.join(root, "weights")) if f.startswith(".tmp")]


def test_crash_between_weights_and_manifest(full, tmp_path, monkeypatch):
    import nngraph.zoo.jobs as jobs

    root = str(tmp_path / "z")

    def crash(path, entries):
        raise KeyboardInterrupt("killed before the manifest line was written")

    monkeypatch.setattr(jobs, "append_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        build_inr_zoo(root, tiny_inr(), progress=False)
    monkeypatch.undo()
    assert len(os.listdir(os.path.join(root, "weights"))) == 4  # written, but not in the zoo
    assert len(Zoo(root)) == 0
    assert build_inr_zoo(root, tiny_inr(), progress=False) == 12
    assert checksums(Zoo(root)) == checksums(full)


def test_truncated_manifest_line_is_dropped_and_redone(full, tmp_path):
    root = str(tmp_path / "z")
    build_inr_zoo(root, tiny_inr(), max_models=4, progress=False)
    manifest = os.path.join(root, "manifest.jsonl")
    with open(manifest, "a") as f:
        f.write('{"id": "inr-0000004", "index": 4, "sha2')  # a kill in the middle of a write
    assert len(Zoo(root)) == 4
    build_inr_zoo(root, tiny_inr(), progress=False)
    assert checksums(Zoo(root)) == checksums(full)
    with open(manifest) as f:
        assert all(json.loads(line) for line in f)


def test_shards_union_equals_full_run(full, tmp_path):
    root = str(tmp_path / "z")
    for shard in ("1/3", "0/3", "2/3"):
        build_inr_zoo(root, tiny_inr(), shard=shard, progress=False)
    assert sorted(f for f in os.listdir(root) if f.startswith("manifest")) == [
        f"manifest.shard-{i}-of-3.jsonl" for i in range(3)]
    assert checksums(Zoo(root)) == checksums(full)
    assert build_inr_zoo(root, tiny_inr(), progress=False) == 0  # an unsharded rerun sees all shards


def test_other_settings_refuse_to_resume(tmp_path):
    root = str(tmp_path / "z")
    build_inr_zoo(root, tiny_inr(), max_models=1, progress=False)
    with pytest.raises(ZooError, match="target_psnr"):
        build_inr_zoo(root, tiny_inr(target_psnr=30.0), progress=False)


def test_splits_by_image_and_stratified(tmp_path):
    root = str(tmp_path / "z")
    build_inr_zoo(root, tiny_inr(max_images=60, inrs_per_image=2, max_steps=0, chunk_size=64), progress=False)
    zoo = Zoo(root)
    split_of_image = {}
    for e in zoo.entries:
        assert split_of_image.setdefault(e["image_index"], e["split"]) == e["split"]
    images = load_file(os.path.join(root, "images.safetensors"))
    labels = images["labels"]
    assert images["images"].shape == (60, 1, 8, 8)
    for c in range(10):
        names = [split_of_image[i] for i in (labels == c).nonzero().flatten().tolist()]
        n = len(names)
        for name, frac in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
            assert abs(names.count(name) - frac * n) < 1, (c, names)


def test_source_split_scope_keeps_the_full_zoos_splits(tmp_path):
    """split_scope="source": the first images keep the splits they have in the zoo of every image (so a
    model trained on the full zoo never saw a small zoo's test images); "zoo" draws them afresh."""
    from nngraph.zoo import stratified_split
    from nngraph.zoo.images import load_images

    settings = dict(max_images=60, inrs_per_image=1, max_steps=0, chunk_size=64)
    splits = {}
    for scope in ("source", "zoo"):
        root = str(tmp_path / scope)
        build_inr_zoo(root, tiny_inr(split_scope=scope, **settings), progress=False)
        zoo = Zoo(root)
        splits[scope] = [e["split"] for e in sorted(zoo.entries, key=lambda e: e["image_index"])]
        assert ("split_scope" in zoo.config) == (scope == "source")
    labels = load_images("digits", 8).labels  # every image of the source
    full = stratified_split(labels, [0.7, 0.1, 0.2], tiny_inr().seed)[:60]
    assert splits["source"] == full
    assert splits["zoo"] != full  # the test can fail: the two scopes differ on these 60 images
    with pytest.raises(ValueError, match="split_scope"):
        build_inr_zoo(str(tmp_path / "bad"), tiny_inr(split_scope="everything", **settings), progress=False)


def test_npz_source(tmp_path):
    g = torch.Generator().manual_seed(0)
    rgb = (torch.rand(4, 5, 5, 3, generator=g) * 255).to(torch.uint8).numpy()  # (N, H, W, C)
    import numpy as np

    np.savez(tmp_path / "imgs.npz", images=rgb, labels=np.array([1, 0, 1, 0]))
    root = str(tmp_path / "z")
    build_inr_zoo(root, tiny_inr(source=str(tmp_path / "imgs.npz"), max_images=None, resolution=6),
                  progress=False)
    zoo = Zoo(root)
    assert len(zoo) == 8 and zoo.entries[0]["spec"]["out_features"] == 3
    assert zoo.load_model(zoo.entries[0])(torch.zeros(1, 2)).shape == (1, 3)


def test_init_option_is_stored_only_when_not_the_default(full, tmp_path):
    assert "init" not in full.config  # zoo.json of the default scheme is as before the option existed
    root = str(tmp_path / "dws")
    build_inr_zoo(root, tiny_inr(init="dwsnets"), progress=False)
    zoo = Zoo(root)
    assert zoo.config["init"] == "dwsnets"
    assert set(checksums(zoo).values()).isdisjoint(checksums(full).values())
    first = load_file(os.path.join(root, zoo.entries[0]["file"]))["0.weight"]
    assert float(first.abs().max()) < 0.5 * float(load_file(os.path.join(full.root, full.entries[0]["file"]))["0.weight"].abs().max())
    with pytest.raises(ZooError, match="init"):  # resuming with the other scheme is refused
        build_inr_zoo(root, tiny_inr(), progress=False)
    with pytest.raises(ValueError, match="xavier"):
        build_inr_zoo(str(tmp_path / "bad"), tiny_inr(init="xavier"), progress=False)


# -- bad image sources (issue 33) ------------------------------------------------------------------
def _npz(tmp_path, images, labels, name="src.npz"):
    import numpy as np

    path = str(tmp_path / name)
    np.savez(path, images=np.asarray(images), labels=np.asarray(labels))
    return path


@pytest.mark.parametrize("case, message", [
    ("all nan", r"image 0 has NaN or infinite pixels \(4 of 4 images like this\)"),
    ("one inf", r"image 2 has NaN or infinite pixels \(1 of 4"),
    ("negative label", r"label 1 is -3; labels are classes, integers >= 0"),
    ("float label", r"label 2 is 2.5, not an integer class \(labels are torch.float64"),
    ("no images", r"holds no images \(shape \(0, 1, 6, 6\)\)"),
    ("string labels", r"must be numeric arrays"),
])
def test_a_bad_image_source_is_one_line_naming_what(tmp_path, case, message, capsys):
    import numpy as np

    from nngraph.zoo.__main__ import main

    images, labels = np.full((4, 6, 6), 0.5), np.array([0, 1, 2, 3])
    if case == "all nan":
        images[:] = np.nan
    elif case == "one inf":
        images[2, 1, 1] = np.inf
    elif case == "negative label":
        labels = np.array([0, -3, 2, 3])
    elif case == "float label":
        labels = np.array([0.0, 1.0, 2.5, 3.0])
    elif case == "no images":
        images, labels = images[:0], labels[:0]
    else:
        labels = np.array(["a", "b", "c", "d"])
    source, out = _npz(tmp_path, images, labels), str(tmp_path / "zoo")
    with pytest.raises(ValueError, match=message):
        build_inr_zoo(out, tiny_inr(source=source, max_images=None, resolution=6), progress=False)
    assert not os.path.exists(out)  # the directory the failed build created is gone
    assert main(["inr", "--out", str(tmp_path / "zoo2"), "--source", source, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and re.search(message, err)


def test_integral_float_labels_are_classes(tmp_path):
    import numpy as np

    source = _npz(tmp_path, np.full((2, 6, 6), 0.5), np.array([1.0, 0.0]))
    out = str(tmp_path / "zoo")
    build_inr_zoo(out, tiny_inr(source=source, max_images=None, resolution=6, inrs_per_image=1, max_steps=2),
                  progress=False)
    assert [e["label"] for e in Zoo(out).entries] == [1, 0]


def test_a_truncated_images_file_does_not_survive_a_resumed_build(tmp_path):
    root = str(tmp_path / "zoo")
    config = tiny_inr(max_images=2, inrs_per_image=1, max_steps=2)
    build_inr_zoo(root, config, progress=False, max_models=1)
    path = os.path.join(root, "images.safetensors")
    good = open(path, "rb").read()
    with open(path, "r+b") as f:
        f.truncate(40)
    with pytest.warns(UserWarning, match="images.safetensors was damaged"):
        build_inr_zoo(root, config, progress=False)
    assert open(path, "rb").read() == good
    build_inr_zoo(root, config, progress=False)  # an intact file is left alone
