import os
import shutil

import pytest

from nngraph.zoo import Zoo, ZooError, build_inr_zoo
from nngraph.zoo.jobs import parse_shard
from nngraph.zoo.storage import append_manifest, read_manifests
from tests.zoo.tiny import tiny_inr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("inr"))
    build_inr_zoo(root, tiny_inr(max_images=2), progress=False)
    return root


@pytest.fixture
def zoo(built, tmp_path):
    root = str(tmp_path / "copy")
    shutil.copytree(built, root)
    return Zoo(root)


def test_clean_zoo_verifies(zoo):
    for e in zoo.entries:
        zoo.verify(e)
    assert zoo.load_state_dict(zoo.entries[0])["0.weight"].shape == (8, 2)


def test_corrupted_weights_are_detected(zoo):
    e = zoo.entries[1]
    path = zoo.path(e)
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 0x01  # flip one bit of a weight
    open(path, "wb").write(bytes(data))
    with pytest.raises(ZooError, match=f"{e['id']} are corrupted"):
        zoo.verify(e)
    with pytest.raises(ZooError, match="corrupted"):
        zoo.load_model(e)
    zoo.verify(zoo.entries[0])  # the others are fine


def test_missing_weights_are_detected(zoo):
    e = zoo.entries[0]
    os.remove(zoo.path(e))
    with pytest.raises(ZooError, match="missing"):
        zoo.load_model(e)
    with pytest.raises(ZooError, match="missing"):
        zoo.load_model(e, verify=False)


def test_corrupted_manifest_and_missing_config(zoo):
    with open(os.path.join(zoo.root, "manifest.jsonl"), "a") as f:
        f.write("not json\n")
    with pytest.raises(ZooError, match=r"manifest.jsonl:5 is not valid JSON"):
        Zoo(zoo.root)
    os.remove(os.path.join(zoo.root, "zoo.json"))
    with pytest.raises(ZooError, match="not a zoo"):
        Zoo(zoo.root)


def test_conflicting_duplicate_entries(zoo):
    e = dict(zoo.entries[0], sha256="0" * 64)
    append_manifest(os.path.join(zoo.root, "manifest.shard-0-of-2.jsonl"), [e])
    with pytest.raises(ZooError, match="different checksums"):
        read_manifests(zoo.root)


def test_parse_shard():
    assert parse_shard("2/5") == (2, 5) and parse_shard(None) == (0, 1)
    for bad in ("5/5", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="i/n"):
            parse_shard(bad)


def _append_line(zoo, **changes) -> int:
    """Append a copy of the first entry with ``changes`` to ``manifest.jsonl``; returns its line number."""
    path = os.path.join(zoo.root, "manifest.jsonl")
    append_manifest(path, [{**zoo.entries[0], "index": 99, **changes}])
    with open(path) as f:
        return len(f.read().splitlines())


def _outside_copy(zoo, tmp_path) -> str:
    """A valid weights file outside the zoo (same bytes, so the manifest checksum matches)."""
    outside = str(tmp_path / "outside.safetensors")
    shutil.copy(zoo.path(zoo.entries[0]), outside)
    return outside


@pytest.mark.parametrize("bad_id", ["../../x", "/tmp/x", "a/b", "..", ".hidden", "", "x" * 200, "a\nb", 7])
def test_unsafe_ids_are_refused_with_the_line(zoo, bad_id):
    line = _append_line(zoo, id=bad_id)
    with pytest.raises(ZooError, match=rf"manifest.jsonl:{line}: .*id"):
        Zoo(zoo.root)


def test_files_outside_the_zoo_are_refused_and_not_read(zoo, tmp_path, monkeypatch):
    import nngraph.zoo.storage as storage

    outside = _outside_copy(zoo, tmp_path)
    rel = os.path.relpath(outside, zoo.root)
    assert rel.startswith("..")
    os.symlink(outside, os.path.join(zoo.root, "weights", "link.safetensors"))
    hashed = []
    monkeypatch.setattr(storage, "sha256_file", lambda p: hashed.append(p) or "0" * 64)
    for n, bad in enumerate([outside, rel, "weights/../../" + os.path.basename(outside), "weights/link.safetensors",
                             "weights\x00.safetensors", ""]):
        root = str(tmp_path / f"z{n}")
        shutil.copytree(zoo.root, root, symlinks=True)
        line = _append_line(Zoo(root), id=f"evil-{n}", file=bad)
        with pytest.raises(ZooError, match=rf"manifest.jsonl:{line}: .*file") as info:
            Zoo(root)
        assert "outside" in str(info.value) or "relative" in str(info.value) or "empty" in str(info.value)
    assert hashed == []  # nothing outside the zoo was ever read


def test_entry_built_by_hand_cannot_leave_the_zoo(zoo, tmp_path):
    outside = _outside_copy(zoo, tmp_path)
    entry = {**zoo.entries[0], "file": os.path.relpath(outside, zoo.root)}
    for call in (zoo.verify, zoo.load_state_dict, zoo.load_model):
        with pytest.raises(ZooError, match="outside") as info:
            call(entry)
        assert entry["sha256"][:12] not in str(info.value)


@pytest.mark.parametrize("line", ["null", "[1, 2]", '"text"', "{}"])
def test_lines_that_are_not_entries_are_refused_with_the_line(zoo, line):
    path = os.path.join(zoo.root, "manifest.jsonl")
    with open(path, "a") as f:
        f.write(line + "\n")
    with pytest.raises(ZooError, match=r"manifest.jsonl:5: "):
        Zoo(zoo.root)


def test_malformed_sha_is_refused_with_the_line(zoo):
    line = _append_line(zoo, id="bad-sha", sha256="abc")
    with pytest.raises(ZooError, match=rf"manifest.jsonl:{line}: .*sha256"):
        Zoo(zoo.root)


def test_huge_spec_is_refused_before_anything_is_allocated(zoo, monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("a layer was allocated")

    monkeypatch.setattr(torch.nn.Linear, "__init__", refuse)
    spec = {**zoo.entries[0]["spec"], "hidden": [60000, 60000]}
    line = _append_line(zoo, id="huge", spec=spec)
    with pytest.raises(ZooError, match=rf"manifest.jsonl:{line}: .*parameters"):
        Zoo(zoo.root)


def test_spec_limits_are_configurable(zoo):
    from nngraph.zoo.specs import SpecLimits

    with pytest.raises(ZooError, match=r"manifest.jsonl:1: .*width 8 .*max_width 4"):
        Zoo(zoo.root, limits=SpecLimits(max_width=4))
    assert len(Zoo(zoo.root, limits=SpecLimits(max_width=8))) == len(zoo)


def test_a_duplicate_with_the_same_weights_and_another_split_names_both_lines(zoo):
    path = os.path.join(zoo.root, "manifest.jsonl")
    e = zoo.entries[0]
    moved = "test" if e["split"] != "test" else "train"
    append_manifest(path, [{**e, "split": moved}])  # same sha256: a training model would move to test
    with open(path) as f:
        last = len(f.read().splitlines())
    first = next(n for n, line in enumerate(open(path), 1) if f'"id": "{e["id"]}"' in line)
    with pytest.raises(ZooError, match=rf"manifest.jsonl:{last}: model {e['id']} appears twice with conflicting "
                                       rf"\['split'\] \(also at .*manifest.jsonl:{first}: split '{e['split']}' there, "
                                       rf"'{moved}' here\)"):
        Zoo(zoo.root)


def test_an_identical_duplicate_is_one_model(zoo):
    append_manifest(os.path.join(zoo.root, "manifest.shard-0-of-2.jsonl"), [zoo.entries[0]])  # a shard rerun
    assert len(Zoo(zoo.root)) == len(zoo.entries)


@pytest.mark.parametrize("split", ["trian", "Train", "", None, 3])
def test_a_split_outside_train_val_test_names_the_line_and_value(zoo, split):
    line = _append_line(zoo, id="extra", split=split)
    with pytest.raises(ZooError, match=rf"manifest.jsonl:{line}: split of model extra is {split!r}, not one of "
                                       r"\['train', 'val', 'test'\]"):
        Zoo(zoo.root)


def test_weights_of_another_architecture_name_the_model(zoo):
    from safetensors.torch import save_file
    import torch

    e = zoo.entries[0]
    save_file({"0.weight": torch.zeros(3, 2)}, zoo.path(e))
    with pytest.raises(ZooError, match=rf"weights of model {e['id']} \(.*\) do not fit the siren architecture of its "
                                       r"spec: missing keys \[.*\], wrong shapes: 0.weight: \(3, 2\) \(expected \(8, 2\)\)"):
        zoo.load_model(e, verify=False)
    other = {**e["spec"], "hidden": [5, 5]}  # a spec of another architecture for the same weights
    with pytest.raises(ZooError, match=rf"weights of model {zoo.entries[1]['id']} .* wrong shapes"):
        zoo.load_model({**zoo.entries[1], "spec": other})


# -- what a stranger's zoo may hold (issue 33) -----------------------------------------------------
def test_a_named_pipe_or_folder_as_weights_is_refused_without_blocking(zoo):
    import signal

    os.mkfifo(os.path.join(zoo.root, "weights", "pipe.safetensors"))
    line = _append_line(zoo, id="pipe", file="weights/pipe.safetensors")
    entry = next(e for e in Zoo(zoo.root).entries if e["id"] == "pipe")
    old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("blocked on the pipe"))
    signal.alarm(10)
    try:
        with pytest.raises(ZooError, match=r"weights of model pipe .*pipe.safetensors is a named pipe; refusing"):
            Zoo(zoo.root).verify(entry)
        with pytest.raises(ZooError, match="is a named pipe"):
            Zoo(zoo.root).load_state_dict(entry, verify=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    with pytest.raises(ZooError, match=r"weights of model dir .*weights is a folder"):
        Zoo(zoo.root).verify({**entry, "id": "dir", "file": "weights"})
    assert line > 1


@pytest.mark.parametrize("name", ["zoo.json", "manifest.jsonl"])
def test_the_zoos_own_files_may_not_lead_outside(zoo, tmp_path, name):
    outside = str(tmp_path / f"outside-{name}")
    shutil.copy(os.path.join(zoo.root, name), outside)
    os.remove(os.path.join(zoo.root, name))
    os.symlink(outside, os.path.join(zoo.root, name))
    with pytest.raises(ZooError, match=rf"zoo file '{name}' resolves to .*outside-{name}, outside .*; refusing"):
        Zoo(zoo.root)


@pytest.mark.parametrize("index", [-1, 2 ** 63, 10 ** 30, 1.5])
def test_an_index_outside_int64_names_the_line(zoo, index):
    line = _append_line(zoo, id="odd", index=index)
    with pytest.raises(ZooError, match=rf"manifest.jsonl:{line}: index of model odd is not an integer in \[0, 2\*\*63\)"):
        Zoo(zoo.root)


@pytest.mark.parametrize("change, message", [({"kind": "transformer"}, r"kind 'transformer' is not one of"),
                                             ({"inr": {"coord_order": "yx"}}, r"Could not resolve coord_order 'yx'"),
                                             ({"inr": [1, 2]}, r"the 'inr' record of zoo.json must be a JSON object")])
def test_zoo_json_fields_are_checked(zoo, change, message):
    import json

    path = os.path.join(zoo.root, "zoo.json")
    config = json.load(open(path))
    json.dump({**config, **change}, open(path, "w"))
    with pytest.raises(ZooError, match=rf"zoo.json: {message}"):
        Zoo(zoo.root)
