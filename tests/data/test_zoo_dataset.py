import os
import shutil

import pytest
import torch
from torch_geometric.loader import DataLoader

import nngraph.data.zoo_dataset as zd
from nngraph.data import ZooDataset
from nngraph.io import zoo_cache_dir
from nngraph.zoo import Zoo, ZooError, build_classifier_zoo, build_inr_zoo, coordinate_grid
from nngraph.zoo.classifiers import classifier_data, evaluate
from nngraph.zoo.siren import psnr
from tests.zoo.tiny import tiny_classifiers, tiny_inr


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("inr"))
    build_inr_zoo(root, tiny_inr(max_images=20, inrs_per_image=2, chunk_size=40), progress=False)
    return root


@pytest.fixture
def inr_copy(inr_zoo, tmp_path):
    root = str(tmp_path / "copy")
    shutil.copytree(inr_zoo, root)
    return root


def test_inr_round_trip_reproduces_the_image(inr_zoo):
    ds = ZooDataset(inr_zoo, split="train", progress=False)
    zoo = Zoo(inr_zoo)
    assert len(ds) == len(zoo.split("train")) > 0
    assert {e["split"] for e in ds.entries} == {"train"}
    coords = coordinate_grid(8, 8)  # (64, 2)
    for i in range(len(ds)):
        g = ds[i]
        e = ds.entry(i)
        assert g.y.dtype == torch.long and int(g.y) == e["label"] and g.family == "siren"
        assert g.model_id == e["id"]
        model = ds.model_from_graph(g, i)
        with torch.no_grad():
            image = model(coords).T.reshape(1, 8, 8)  # (64, 1) -> (1, 8, 8)
        assert abs(float(psnr((image - ds.image(i)).pow(2).mean())) - e["psnr"]) < 1e-2
        for (name, p), q in zip(model.named_parameters(), ds.load_model(i).parameters()):
            assert torch.equal(p, q), name


def test_splits_are_disjoint_by_image(inr_zoo):
    images = {s: {e["image_index"] for e in ZooDataset(inr_zoo, s, progress=False).entries}
              for s in ("train", "val", "test")}
    assert not (images["train"] & images["val"]) and not (images["train"] & images["test"])
    assert len(ZooDataset(inr_zoo, "all", progress=False)) == 40


def test_graphs_are_converted_once_then_cached(inr_copy, monkeypatch):
    ZooDataset(inr_copy, split="test", progress=False)
    assert len(os.listdir(zoo_cache_dir(inr_copy, "graphs"))) > 0
    import nngraph

    def refuse(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(nngraph, "to_graph", refuse)
    ds = ZooDataset(inr_copy, split="test", fields=("psnr",), in_memory=True, progress=False)
    assert ds[0].psnr.shape == (1,)
    with pytest.raises(AssertionError, match="converted again"):
        ZooDataset(inr_copy, split="test", force_reload=True, progress=False)


def test_batches_with_a_plain_loader(inr_zoo):
    ds = ZooDataset(inr_zoo, split="train", progress=False)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch.num_graphs == 4 and batch.y.shape == (4,)
    assert batch.edge_attr.shape[1] == 1 and len(batch.family) == 4


def test_corrupted_or_missing_weights_fail_clearly(inr_copy):
    zoo = Zoo(inr_copy)
    e = zoo.split("test")[0]
    with open(zoo.path(e), "r+b") as f:
        f.seek(-2, os.SEEK_END)
        f.write(b"\x00\x01")
    with pytest.raises(ZooError, match=f"{e['id']} are corrupted"):
        ZooDataset(inr_copy, split="test", progress=False)
    with pytest.raises(ZooError, match=f"{e['id']} are corrupted"):
        ZooDataset(inr_copy, split="train", progress=False)  # the whole zoo is checked
    os.remove(zoo.path(e))
    with pytest.raises(ZooError, match="missing"):
        ZooDataset(inr_copy, split="test", progress=False)


def test_corrupted_cache_fails_clearly_and_stale_cache_is_rebuilt(inr_copy):
    ds = ZooDataset(inr_copy, split="test", progress=False)
    path = os.path.join(zoo_cache_dir(inr_copy, "graphs"), f"{ds.entry(0)['id']}.pt")
    with open(path, "wb") as f:
        f.write(b"garbage")
    ds = ZooDataset(inr_copy, split="test", progress=False)
    with pytest.raises(ZooError, match="unreadable"):
        ds[0]
    with pytest.raises(ZooError, match="unreadable"):
        ZooDataset(inr_copy, split="test", in_memory=True, progress=False)
    ds = ZooDataset(inr_copy, split="test", force_reload=True, progress=False)
    assert ds[0].num_nodes == 2 + 8 + 8 + 1
    # a kernel box is no longer a thing: asked for one, the dataset warns and pads nothing
    with pytest.warns(DeprecationWarning, match="kernel_box"):
        ds3 = ZooDataset(inr_copy, split="test", kernel_box=(1, 3, 3), progress=False)
    assert ds3[0].edge_attr.shape == (ds3[0].num_edges, 1) and ds3[0].kernel_shape.eq(1).all()


def test_classifier_dataset_round_trip_reproduces_accuracy(tmp_path):
    root = str(tmp_path / "clf")
    config = tiny_classifiers(num_runs=8)
    build_classifier_zoo(root, config, progress=False)
    with pytest.warns(UserWarning, match="left out") if _some_unsupported(root) else _nothing():
        ds = ZooDataset(root, split="all", skip_unsupported=True, progress=False)
    assert len(ds) > 0, "no classifier of the tiny zoo could be converted"
    images, train = classifier_data(config)
    x_te, y_te = images.images[~train], images.labels[~train]
    for i in range(len(ds)):
        g = ds[i]
        assert g.y.dtype == torch.float and float(g.y) == pytest.approx(ds.entry(i)["test_acc"], abs=1e-6)
        acc, _ = evaluate(ds.model_from_graph(g, i), x_te, y_te)
        assert acc == ds.entry(i)["test_acc"]


def _some_unsupported(root) -> bool:
    from nngraph import UnsupportedError, to_graph

    zoo = Zoo(root)
    for e in zoo.entries:
        try:
            to_graph(zoo.load_model(e), zd.example_inputs_for_spec(e["spec"]))
        except UnsupportedError:
            return True
    return False


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_batched_metadata_is_not_offset(inr_zoo):
    from torch_geometric.data import Batch

    ds = ZooDataset(inr_zoo, split="train", progress=False)
    batch = Batch.from_data_list([ds[0], ds[1]])
    assert batch.model_idx.tolist() == [ds.entry(0)["index"], ds.entry(1)["index"]]
    assert batch.model_id == [ds.entry(0)["id"], ds.entry(1)["id"]]


def test_structure_is_stored_once_per_architecture_and_checked(inr_copy):
    ds = ZooDataset(inr_copy, split="all", progress=False)
    cache = zoo_cache_dir(inr_copy, "graphs")
    structures = [f for f in os.listdir(cache) if f.startswith("structure-")]
    assert len(structures) == 1  # every INR of the zoo shares one architecture
    model_file = torch.load(os.path.join(cache, f"{ds.entry(0)['id']}.pt"), weights_only=True)
    assert set(model_file["graph"]) == {"x", "edge_attr"}
    a, b = ds[0], ds[1]
    a.edge_index.add_(1)  # items own their tensors: editing one leaves the next untouched
    assert torch.equal(ds[1].edge_index, b.edge_index)
    with open(os.path.join(cache, structures[0]), "wb") as f:
        f.write(b"garbage")
    with pytest.raises(ZooError, match="structure .* unreadable"):
        ZooDataset(inr_copy, split="test", progress=False)[0]
    assert ZooDataset(inr_copy, split="test", force_reload=True, progress=False)[0].num_nodes == 2 + 8 + 8 + 1


@pytest.mark.parametrize("bad_id", ["../../evil", "ABSOLUTE"])
def test_manifest_ids_cannot_write_outside_the_cache(inr_copy, tmp_path, bad_id):
    import json

    target = str(tmp_path / "victim")
    bad_id = target if bad_id == "ABSOLUTE" else bad_id
    zoo = Zoo(inr_copy)
    with open(os.path.join(inr_copy, "manifest.jsonl"), "a") as f:
        f.write(json.dumps({**zoo.entries[0], "id": bad_id, "index": 999}) + "\n")
    with pytest.raises(ZooError, match=r"manifest.jsonl:\d+: .*id"):
        ZooDataset(inr_copy, split="all", progress=False)
    cache = zoo_cache_dir(inr_copy, "graphs")
    assert not os.path.exists(os.path.normpath(os.path.join(cache, f"{bad_id}.pt")))
    assert not os.path.exists(target + ".pt")


def test_cache_path_stays_inside_the_cache_dir(inr_copy):
    ds = ZooDataset(inr_copy, split="test", progress=False)
    with pytest.raises(ZooError, match="outside"):
        ds._cache_path({**ds.entry(0), "id": "../../evil"})


def test_stale_temporary_files_in_the_cache_are_removed(inr_copy):
    import subprocess
    import sys

    from nngraph.io import _host

    ZooDataset(inr_copy, split="test", progress=False)
    cache = zoo_cache_dir(inr_copy, "graphs")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live = os.path.join(cache, f".tmp-{dead.pid}@{_host()}-x"), os.path.join(cache, ".tmp-recent")
    for path in (stale, live):
        open(path, "wb").write(b"partial")
    ZooDataset(inr_copy, split="test", progress=False)
    assert not os.path.exists(stale) and os.path.exists(live)


def test_a_change_of_the_converter_code_reconverts_the_cache(inr_copy, monkeypatch):
    ds = ZooDataset(inr_copy, split="test", progress=False)
    g = ds[0]
    path = os.path.join(zoo_cache_dir(inr_copy, "graphs"), f"{ds.entry(0)['id']}.pt")
    before = os.stat(path).st_mtime_ns
    # the same code: the cache is read, not rewritten
    ZooDataset(inr_copy, split="test", progress=False)[0]
    assert os.stat(path).st_mtime_ns == before
    # other converter code, same version and CACHE_FORMAT: every graph is converted again
    monkeypatch.setattr(zd, "graph_code_fingerprint", lambda: "0" * 16)
    again = ZooDataset(inr_copy, split="test", progress=False)[0]
    assert os.stat(path).st_mtime_ns != before
    assert torch.equal(again.x, g.x) and torch.equal(again.edge_index, g.edge_index)


def test_the_fingerprint_covers_the_converter_sources():
    files = zd._GRAPH_CODE
    assert "convert" in files and "schema.py" in files
    fp = zd.graph_code_fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
