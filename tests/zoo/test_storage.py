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
