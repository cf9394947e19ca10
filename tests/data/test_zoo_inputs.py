"""Bad zoo files name the file and the line; read-only zoos are read without a write; the tasks check
their zoo before doing anything."""
import json
import os
import shutil
import stat

import pytest

from nngraph.data import ZooDataset
from nngraph.io import zoo_cache_dir
from nngraph.zoo import Zoo, ZooError, build_classifier_zoo, build_inr_zoo, summarize
from tests.zoo.tiny import tiny_classifiers, tiny_inr


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("inr"))
    build_inr_zoo(root, tiny_inr(max_images=6, inrs_per_image=1, max_steps=5), progress=False)
    return root


@pytest.fixture(scope="module")
def clf_zoo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("clf"))
    build_classifier_zoo(root, tiny_classifiers(num_runs=3, max_epochs=1, checkpoints=1), progress=False)
    return root


@pytest.fixture
def zoo(inr_zoo, tmp_path):
    root = str(tmp_path / "zoo")
    shutil.copytree(inr_zoo, root)
    return root


def manifest(root):
    return os.path.join(root, "manifest.jsonl")


def rewrite_line(root, number, text):
    with open(manifest(root)) as f:
        lines = f.read().split("\n")
    lines[number - 1] = text
    with open(manifest(root), "w") as f:
        f.write("\n".join(lines))


def first_entry(root):
    with open(manifest(root)) as f:
        return json.loads(f.readline())


def test_a_misspelt_split_lists_the_choices(zoo):
    with pytest.raises(ValueError, match=r"Could not resolve split 'trian' among choices \['test', 'train', 'val', "
                                         r"'all'\]"):
        ZooDataset(zoo, "trian", progress=False)
    with pytest.raises(ValueError, match=r"families \['resnet'\] among the zoo's \['siren'\]"):
        ZooDataset(zoo, "train", families=["resnet"], progress=False)


def test_an_empty_manifest_is_an_error(zoo):
    open(manifest(zoo), "w").close()
    with pytest.raises(ZooError, match=f"{zoo} holds no models"):
        ZooDataset(zoo, "train", progress=False)


@pytest.mark.parametrize("field", ["id", "sha256", "file", "spec", "index", "split", "family", "label"])
def test_a_manifest_line_missing_a_field_names_the_file_and_line(zoo, field):
    entry = first_entry(zoo)
    del entry[field]
    rewrite_line(zoo, 1, json.dumps(entry, sort_keys=True))
    split = entry.get("split", "all")
    with pytest.raises(ZooError, match=rf"manifest.jsonl:1: .*{field}"):
        ZooDataset(zoo, split, progress=False)


@pytest.mark.parametrize("text, message", [
    ("null", "must be a JSON object, got NoneType"),
    ("[1, 2]", "must be a JSON object, got list"),
    ("{not json", "is not valid JSON"),
])
def test_manifest_lines_that_are_not_objects(zoo, text, message):
    rewrite_line(zoo, 2, text)
    with pytest.raises(ZooError, match=rf"manifest.jsonl:2.*{message}"):
        ZooDataset(zoo, "all", progress=False)


def test_invalid_utf8_in_the_manifest_names_the_line(zoo):
    with open(manifest(zoo), "rb") as f:
        lines = f.read().split(b"\n")
    lines[2] = lines[2].replace(b'"family"', b'"fam\xffily"')
    with open(manifest(zoo), "wb") as f:
        f.write(b"\n".join(lines))
    with pytest.raises(ZooError, match=r"manifest.jsonl:3 is not UTF-8"):
        Zoo(zoo)


@pytest.mark.parametrize("content", [b"{garbage", b"[1, 2]", b"\xff\xfe"])
def test_garbage_zoo_json_names_the_file(zoo, content):
    with open(os.path.join(zoo, "zoo.json"), "wb") as f:
        f.write(content)
    with pytest.raises(ZooError, match=r"zoo.json (is not valid JSON|holds no zoo settings)"):
        ZooDataset(zoo, "train", progress=False)


def test_truncated_images_name_the_file(zoo):
    path = os.path.join(zoo, "images.safetensors")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    ds = ZooDataset(zoo, "train", progress=False)
    with pytest.raises(ZooError, match=r"images.safetensors is unreadable"):
        ds.image(0)


def test_truncated_weights_name_the_file(zoo):
    entry = Zoo(zoo).entries[0]
    path = os.path.join(zoo, entry["file"])
    with open(path, "r+b") as f:
        f.truncate(10)
    with pytest.raises(ZooError, match=rf"{entry['file']} has sha256"):
        ZooDataset(zoo, "all", progress=False)


# -- read-only zoos ---------------------------------------------------------------------------
def snapshot(root):
    """Every path under ``root`` with its size and modification time."""
    out = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def read_only(request, tmp_path):
    """A read-only copy of a zoo (chmod a-w; as root, where chmod does not stop writes, the tests
    still see every change through the snapshot)."""
    src = request.getfixturevalue(request.param)
    root = str(tmp_path / "ro")
    shutil.copytree(src, root)
    for base, dirs, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(base, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    for base, dirs, files in os.walk(root, topdown=False):
        os.chmod(base, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    before = snapshot(root)
    yield root
    assert snapshot(root) == before, "the zoo directory changed"
    for base, dirs, files in os.walk(root):
        os.chmod(base, stat.S_IRWXU)


@pytest.mark.parametrize("read_only", ["inr_zoo", "clf_zoo"], indirect=True)
def test_a_read_only_zoo_is_read_without_writing(read_only, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("NNGRAPH_CACHE", cache)
    ds = ZooDataset(read_only, "train", progress=False)
    assert len(ds) > 0 and ds[0].num_nodes > 0
    assert ds.cache_dir == zoo_cache_dir(read_only, "graphs") and ds.cache_dir.startswith(cache)
    assert any(name.endswith(".pt") for name in os.listdir(ds.cache_dir))
    text = summarize(read_only)
    if Zoo(read_only).config["kind"] == "classifier":
        png = os.path.join(zoo_cache_dir(read_only, "reports"), "accuracy_histogram.png")
        assert f"histogram plot: {png}" in text and os.path.exists(png)
    explicit = str(tmp_path / "mine")
    assert ZooDataset(read_only, "test", cache_dir=explicit, progress=False).cache_dir == explicit
    assert os.listdir(explicit)


def test_summary_command_writes_into_the_cache_dir_it_is_given(clf_zoo, tmp_path, capsys):
    from nngraph.zoo.__main__ import main

    before = snapshot(clf_zoo)
    assert main(["summary", clf_zoo, "--cache-dir", str(tmp_path / "c")]) == 0
    assert str(tmp_path / "c") in capsys.readouterr().out
    assert snapshot(clf_zoo) == before


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    from nngraph.io import user_cache_dir

    monkeypatch.delenv("NNGRAPH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == str(tmp_path / "xdg" / "nngraph")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "nngraph")
    monkeypatch.setenv("NNGRAPH_CACHE", str(tmp_path / "env"))
    assert user_cache_dir() == str(tmp_path / "env") and user_cache_dir("arg") == "arg"
    assert zoo_cache_dir("/a/zoo", "graphs") != zoo_cache_dir("/b/zoo", "graphs")


# -- the tasks check their zoo first ----------------------------------------------------------
def test_inr_task_on_a_classifier_zoo_fails_before_converting(clf_zoo, tmp_path, capsys, monkeypatch):
    import nngraph
    from tasks.inr_classification import task as inr_classification

    def refuse(*args, **kwargs):
        raise AssertionError("converted a model")

    monkeypatch.setattr(nngraph, "to_graph", refuse)
    monkeypatch.setattr(nngraph, "build_layout", refuse)
    out = str(tmp_path / "runs" / "x")
    assert inr_classification.main(["--zoo", clf_zoo, "--out", out], prog="nngraph task inr_classification") == 1
    err = capsys.readouterr().err
    assert err.startswith("nngraph task inr_classification: error:") and len(err.strip().splitlines()) == 1
    assert "is a classifier zoo; INR classification needs a inr zoo" in err
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("task", ["inr_classification", "accuracy_prediction", "inr_editing"])
def test_a_wrong_zoo_path_prints_one_line_and_creates_nothing(task, tmp_path, capsys, monkeypatch):
    import importlib

    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(f"tasks.{task}")
    assert module.main(["--zoo", str(tmp_path / "no-such-zoo")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"no-such-zoo is not a zoo: zoo.json is missing" in err
    assert os.listdir(tmp_path) == []  # no ./runs/...


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"\x00\x00\x00\x00\x00\x01\x00\x00{", b"\x80\x04K\x01."])
def test_unreadable_weights_name_the_file_even_unverified(zoo, content):
    entry = Zoo(zoo).entries[0]
    with open(os.path.join(zoo, entry["file"]), "wb") as f:
        f.write(content)
    with pytest.raises(ZooError, match=rf"{entry['id']} are unreadable: .*{entry['file']} is not a safetensors"):
        Zoo(zoo).load_state_dict(entry, verify=False)


@pytest.mark.parametrize("label, message", [("three", "label of model .* is 'three', not a finite number"),
                                            (None, "label of model .* is None, not a finite number"),
                                            (float("nan"), "label of model .* is nan, not a finite number"),
                                            (-1, "label of model .* is -1; an INR's label is a class"),
                                            (2.5, "label of model .* is 2.5; an INR's label is a class")])
def test_a_label_that_is_not_a_class_names_the_line(zoo, label, message):
    entry = first_entry(zoo)
    rewrite_line(zoo, 1, json.dumps({**entry, "label": label}, sort_keys=True))
    with pytest.raises(ZooError, match=rf"manifest.jsonl:1: {message}"):
        ZooDataset(zoo, "all", progress=False)


def test_images_that_do_not_fit_the_manifest_or_lead_outside_are_named(zoo, tmp_path):
    from safetensors.torch import load_file, save_file

    path = os.path.join(zoo, "images.safetensors")
    outside = str(tmp_path / "outside.safetensors")
    shutil.copy(path, outside)
    images = load_file(path)
    save_file({k: v[:1].contiguous() for k, v in images.items()}, path)
    ds = ZooDataset(zoo, "all", progress=False)
    ds.image(0)
    with pytest.raises(ZooError, match=r"manifest.jsonl:\d+: image_index of model .* is \d, but .*images.safetensors "
                                       r"holds 1 images"):
        ds.image(len(ds) - 1)
    os.remove(path)
    os.symlink(outside, path)
    with pytest.raises(ZooError, match=r"zoo file 'images.safetensors' resolves to .*outside.safetensors, outside"):
        ZooDataset(zoo, "all", progress=False).image(0)
