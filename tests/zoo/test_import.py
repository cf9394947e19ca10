"""Importing models trained elsewhere: the published layouts, folders of state dicts, and the checks."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nngraph.errors import SpecError, ZooError
from nngraph.zoo import INRMetadata, Zoo, import_zoo
from nngraph.zoo import architectures
from nngraph.zoo.__main__ import main
from nngraph.zoo.layouts import detect_layout, folder_fields, read_state_file

from .layouts import DWSNetsINR, cnn_zoo_variables, make_coordinates, write_cnn_zoo, write_dwsnets


def make_mlp(width: int = 6) -> nn.Module:
    """A factory for the tests (``tests.zoo.test_import:make_mlp``)."""
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))


MLP_SPEC = {"family": "mlp", "in_shape": [1, 1, 3], "hidden": [6], "num_classes": 2, "act": "relu", "norm": "none"}


def _mlp_folder(root, n=4, seed=0):
    """``n`` state dicts of the mlp spec's module under ``train/`` and ``test/``, with a table."""
    from nngraph.zoo import build_model

    rows = []
    for i in range(n):
        torch.manual_seed(seed + i)
        split = "train" if i % 2 == 0 else "test"
        os.makedirs(os.path.join(root, split), exist_ok=True)
        save_file(build_model(MLP_SPEC).state_dict(), os.path.join(root, split, f"m{i}.safetensors"))
        rows.append(f"m{i}.safetensors,{0.1 * (i + 1):.2f}\n")
    table = os.path.join(root, "metrics.csv")
    with open(table, "w") as f:
        f.write("file,test_acc\n" + "".join(rows))
    return table


def test_dwsnets_layout_imports_with_splits_labels_and_the_same_function(tmp_path):
    src, out = str(tmp_path / "mnist-inrs"), str(tmp_path / "zoo")
    files = write_dwsnets(src, {"training": 10, "testing": 4})
    assert detect_layout(src) == "dwsnets"
    assert import_zoo(src, out, progress=False) == 14
    zoo = Zoo(out)
    assert zoo.config["kind"] == "inr" and zoo.config["imported"]["layout"] == "dwsnets"
    assert zoo.config["inr"] == {"coord_range": [-1.0, 1.0], "coord_order": "xy", "w0": 30.0, "image_size": [28, 28]}
    by_source = {e["source"]: e for e in zoo.entries}
    for path, label in files:
        e = by_source[path]
        assert e["label"] == label and e["split"] == ("test" if "testing" in path else e["split"])
        assert ("testing" in path) == (e["split"] == "test")
    assert len(zoo.split("val")) == 1 and len(zoo.split("train")) == 9  # 10% of training goes to val
    # the imported SIREN computes DWSNets' INR (the + 0.5 folded into the last bias) on DWSNets' grid
    coords = make_coordinates((28, 28))
    torch.testing.assert_close(coords, INRMetadata.of_zoo(zoo.config).grid(28, 28), rtol=0, atol=1e-6)
    for path, _ in files[:3]:
        ref = DWSNetsINR(8)
        ref.load_state_dict(torch.load(path, weights_only=True))
        mine = zoo.load_model(by_source[path])
        torch.testing.assert_close(mine(coords), ref(coords), rtol=0, atol=1e-6)
    images = load_file(os.path.join(out, "images.safetensors"))
    assert images["images"].shape == (14, 1, 28, 28)
    assert images["labels"].tolist() == [e["label"] for e in zoo.entries]


def test_import_is_resumable_and_checks_the_settings(tmp_path):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    write_dwsnets(src, {"training": 4, "testing": 2})
    assert import_zoo(src, out, progress=False, max_models=3) == 3
    assert import_zoo(src, out, progress=False) == 3  # only the rest
    assert import_zoo(src, out, progress=False) == 0
    zoo = Zoo(out)
    for e in zoo.entries:
        zoo.verify(e)  # sha256 in the manifest
    with pytest.raises(ZooError, match="other settings"):
        import_zoo(src, out, progress=False, seed=1)


def test_cnn_zoo_layout_maps_tensorflow_variables(tmp_path):
    src, out = str(tmp_path / "cnn"), str(tmp_path / "zoo")
    weights = write_cnn_zoo(src, runs=3, steps=(0, 86))
    assert detect_layout(src) == "cnn_zoo"
    assert import_zoo(src, out, progress=False) == 6
    zoo = Zoo(out)
    assert zoo.config["kind"] == "classifier"
    variables = cnn_zoo_variables()
    starts = np.cumsum([0] + [int(np.prod(s)) for _, s in variables])
    for e in zoo.entries:
        row = int(e["id"].split("-")[1])
        model = zoo.load_model(e)
        tf = {name: weights[row, starts[j]:starts[j + 1]].reshape(shape) for j, (name, shape) in enumerate(variables)}
        conv1 = tf["sequential/conv2d/kernel:0"]  # (kh, kw, in, out)
        assert np.array_equal(model[0].weight.detach().numpy()[2, 0, 1, 0], conv1[1, 0, 0, 2])
        assert np.array_equal(model[0].weight.detach().numpy(), conv1.transpose(3, 2, 0, 1))
        assert np.array_equal(model[4].bias.detach().numpy(), tf["sequential/conv2d_2/bias:0"])
        assert np.array_equal(model[-1].weight.detach().numpy(), tf["sequential/dense/kernel:0"].T)
        assert e["spec"]["act"] == ("relu" if e["hparams"]["activation"] == "relu" else "tanh")
        assert e["spec"]["in_shape"] == [1, 28, 28] and 0 < e["test_acc"] < 1
    # checkpoints of one run share a split
    runs = {}
    for e in zoo.entries:
        runs.setdefault(e["run"], set()).add(e["split"])
    assert all(len(s) == 1 for s in runs.values())
    final = str(tmp_path / "final")
    assert import_zoo(src, final, progress=False, step=86) == 3


def test_cnn_zoo_refuses_pickled_arrays(tmp_path):
    src = str(tmp_path / "cnn")
    write_cnn_zoo(src, runs=1, steps=(86,))
    np.save(os.path.join(src, "weights.npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ZooError, match="weights.npy"):
        import_zoo(src, str(tmp_path / "zoo"), progress=False)


def test_every_model_that_does_not_fit_is_named_and_the_rest_imported(tmp_path):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    table = _mlp_folder(src, n=6)
    good = load_file(os.path.join(src, "train", "m0.safetensors"))
    save_file({k: v for k, v in good.items() if k != "3.bias"}, os.path.join(src, "train", "m2.safetensors"))
    save_file({**good, "5.weight": torch.zeros(6, 4)}, os.path.join(src, "test", "m3.safetensors"))
    with pytest.raises(ZooError) as info:
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    message = str(info.value)
    assert "2 of 6 models" in message
    assert "m2.safetensors" in message and "missing keys ['3.bias']" in message
    assert "m3.safetensors" in message and "unexpected keys ['5.weight']" in message
    assert "\n" not in message  # one line, however many files
    with pytest.raises(ZooError, match=r"is an unfinished import \(4 of 6 models stored, no zoo.json\): rerun"):
        Zoo(out)  # no reader takes the half zoo for a zoo
    assert len(Zoo(out, unfinished=True)) == 4
    save_file(good, os.path.join(src, "train", "m2.safetensors"))
    save_file(good, os.path.join(src, "test", "m3.safetensors"))
    assert import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False) == 2
    zoo = Zoo(out)
    assert [e["split"] for e in zoo.entries] == ["test", "test", "test", "train", "train", "train"]
    assert sorted(e["test_acc"] for e in zoo.entries) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert not os.path.exists(os.path.join(out, ".import.json"))


def test_removing_the_files_an_import_names_finishes_it(tmp_path):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    table = _mlp_folder(src, n=6)
    bad = os.path.join(src, "test", "m3.safetensors")
    save_file({"0.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(ZooError, match=r"1 of 6 models do not match .* fix or remove them and rerun"):
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    stored = {e["id"]: e["split"] for e in Zoo(out, unfinished=True).entries}
    os.remove(bad)  # as the error advises: not refused as "other settings (num_models)"
    assert import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False) == 0
    zoo = Zoo(out)
    assert len(zoo) == 5 and zoo.config["num_models"] == 5
    assert {e["id"]: e["split"] for e in zoo.entries} == stored


def test_wrong_shape_is_named(tmp_path):
    src = str(tmp_path / "src")
    table = _mlp_folder(src, n=2)
    state = load_file(os.path.join(src, "test", "m1.safetensors"))  # the first file: checked before the rest
    save_file({**state, "1.weight": torch.zeros(6, 5)}, os.path.join(src, "test", "m1.safetensors"))
    with pytest.raises(ZooError, match=r"m1.safetensors does not match the architecture: wrong shapes: 1.weight: "
                                       r"\(6, 5\) \(expected \(6, 3\)\)"):
        import_zoo(src, str(tmp_path / "zoo"), spec=MLP_SPEC, table=table, progress=False)
    assert not os.path.exists(os.path.join(str(tmp_path / "zoo"), "weights"))  # checked before anything is stored


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pt_files_are_read_with_weights_only(tmp_path):
    path, marker = str(tmp_path / "evil.pt"), str(tmp_path / "marker")
    torch.save({"0.weight": torch.zeros(2), "x": _Marker(marker)}, path)
    with pytest.raises(ZooError, match=r"evil.pt holds Python objects, not only tensors \(.*\); .* never unpickles") \
            as info:
        read_state_file(path)
    assert not os.path.exists(marker)
    assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)  # not torch's advice
    ok = str(tmp_path / "ok.pt")
    torch.save({"0.weight": torch.ones(2)}, ok)
    assert torch.equal(read_state_file(ok)["0.weight"], torch.ones(2))


def test_folder_names_give_splits_and_labels():
    assert folder_fields("training/label_3/a.pt") == {"split": "train", "label": 3}
    assert folder_fields("val/7/a.pt") == {"split": "val", "label": 7}
    assert folder_fields("testing/x.safetensors") == {"split": "test"}


def test_factory_architecture_and_its_trust(tmp_path, monkeypatch):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    os.makedirs(os.path.join(src, "train"))
    os.makedirs(os.path.join(src, "test"))
    for i in range(3):
        torch.manual_seed(i)
        torch.save(make_mlp(5).state_dict(), os.path.join(src, "train" if i else "test", f"run{i}.pt"))
    with open(os.path.join(src, "t.json"), "w") as f:
        json.dump({f"run{i}.pt": {"test_acc": 0.5 + i / 10} for i in range(3)}, f)
    factory = "tests.zoo.test_import:make_mlp"
    monkeypatch.setattr(architectures, "_TRUSTED", set())
    monkeypatch.delenv(architectures.TRUST_ENV, raising=False)
    assert import_zoo(src, out, factory=factory, factory_kwargs={"width": 5}, input_shape=[3],
                      table=os.path.join(src, "t.json"), progress=False) == 3
    zoo = Zoo(out)
    e = zoo.entries[0]
    assert e["spec"] == {"family": "factory", "factory": factory, "kwargs": {"width": 5},
                         "inputs": [{"shape": [2, 3], "dtype": "float32"}]}
    torch.manual_seed(int(e["id"][-1]))
    ref = make_mlp(5).eval()
    x = torch.randn(4, 3)
    assert torch.equal(zoo.load_model(e)(x), ref(x))  # this process named the factory
    architectures._TRUSTED.clear()  # a new process reading a stranger's zoo
    with pytest.raises(SpecError, match=f"{architectures.TRUST_ENV}={factory}"):
        Zoo(out).load_model(e)
    monkeypatch.setenv(architectures.TRUST_ENV, factory)
    Zoo(out).load_model(e)
    with pytest.raises(ZooError, match="input shape"):
        import_zoo(src, str(tmp_path / "z2"), factory=factory, progress=False)


def test_transformers_config_architecture(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=12, type_vocab_size=2)
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    os.makedirs(src)
    cfg.save_pretrained(src)
    for i in range(2):
        torch.manual_seed(i)
        save_file(transformers.BertModel(cfg).state_dict(), os.path.join(src, f"ft{i}.safetensors"))
    with open(os.path.join(src, "labels.csv"), "w") as f:
        f.write("file,test_acc,split\nft0,0.7,train\nft1,0.8,test\n")
    assert import_zoo(src, out, hf_config=src, hf_class="BertModel", table=os.path.join(src, "labels.csv"),
                      progress=False) == 2
    zoo = Zoo(out)
    e = zoo.entries[0]
    assert e["family"] == "transformers" and e["spec"]["inputs"][0]["dtype"] == "int64"
    model = zoo.load_model(e)
    ref = transformers.BertModel(cfg).eval()
    ref.load_state_dict(load_file(os.path.join(src, "ft0.safetensors")))
    ids = torch.randint(0, 30, (1, 5))
    assert torch.equal(model(ids).last_hidden_state, ref(ids).last_hidden_state)
    with pytest.raises(SpecError, match="not a model class"):
        architectures.build_zoo_model({**e["spec"], "class": "AutoConfig"})


class ConvNormLinear(nn.Module):
    """A conv, a norm and a linear layer: what torch.fx and torch.export both follow."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.norm = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.norm(self.conv(x))).flatten(1))


def _seeded(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = ConvNormLinear()
    with torch.no_grad():  # trained-looking statistics, so that the buffers matter too
        model.norm.running_mean.normal_()
        model.norm.running_var.uniform_(0.5, 2.0)
        model.norm.num_batches_tracked.fill_(seed + 1)
    return model.eval()


def _program_source(tmp_path):
    """``(src, table, program)``: 4 state dicts of differently seeded ``ConvNormLinear``s with splits and
    accuracies, and the model exported (with other weights) as a ``.pt2``."""
    src, program = str(tmp_path / "src"), str(tmp_path / "model.pt2")
    os.makedirs(src)
    for i in range(4):
        save_file(_seeded(i).state_dict(), os.path.join(src, f"m{i}.safetensors"))
    table = os.path.join(src, "table.csv")
    with open(table, "w") as f:
        f.write("file,test_acc,split\nm0,0.5,train\nm1,0.6,train\nm2,0.7,val\nm3,0.8,test\n")
    torch.export.save(torch.export.export(_seeded(99), (torch.zeros(2, 1, 6, 6),)), program)
    return src, table, program


def _sha256(path: str) -> str:
    from nngraph.zoo.storage import sha256_file

    return sha256_file(path)


@pytest.fixture
def fresh_trust(monkeypatch):
    """No code trusted but what the test trusts (by importing, or in the environment)."""
    monkeypatch.setattr(architectures, "_TRUSTED", set())
    monkeypatch.delenv(architectures.TRUST_ENV, raising=False)


def test_torch_export_program_architecture(tmp_path, fresh_trust):
    from nngraph import from_graph, to_graph
    from nngraph.data import ZooDataset

    src, table, program = _program_source(tmp_path)
    out = str(tmp_path / "zoo")
    assert import_zoo(src, out, program=program, table=table, progress=False) == 4
    zoo, digest = Zoo(out), _sha256(program)
    spec = zoo.entries[0]["spec"]
    assert spec == {"family": "program", "file": f"architecture/{digest}.pt2", "sha256": digest,
                    "inputs": [{"shape": [2, 1, 6, 6], "dtype": "float32"}]}  # the program's example inputs
    with open(os.path.join(out, spec["file"]), "rb") as f, open(program, "rb") as g:
        assert f.read() == g.read()
    assert [e["split"] for e in zoo.entries] == ["train", "train", "val", "test"]

    x = torch.randn(5, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    for i, e in enumerate(zoo.entries):
        model = zoo.load_model(e)
        assert isinstance(model, torch.fx.GraphModule) and e["family"] == "program"
        with torch.no_grad():
            assert torch.equal(model(x), _seeded(i)(x))
    ds = ZooDataset(out, split="train", progress=False)
    assert len(ds) == 2 and [ds.entry(i)["id"] for i in range(2)] == ["m0", "m1"]
    for i in range(2):
        graph, weights = ds[i], load_file(os.path.join(src, f"m{i}.safetensors"))
        assert graph.y.tolist() == pytest.approx([0.5 + i / 10])
        by_model = to_graph(_seeded(i), x)  # the module that was exported gives the same graph
        for key in ("x", "edge_index", "edge_attr", "edge_type", "node_kind", "node_type", "act", "layer"):
            assert torch.equal(graph[key], by_model[key]), key
        # the weights (not the integer num_batches_tracked, which graphs do not hold) come back bit for bit
        floats = {k: v for k, v in weights.items() if v.is_floating_point()}
        assert sorted(floats) == ["conv.bias", "conv.weight", "fc.bias", "fc.weight", "norm.bias",
                                  "norm.running_mean", "norm.running_var", "norm.weight"]
        back = ds.model_from_graph(graph, i).state_dict()
        assert sorted(back) == sorted(weights)
        assert all(torch.equal(back[k], v) for k, v in floats.items()), "the graph changed the weights"
        scrambled = zoo.build(spec)  # other values everywhere: everything must come from the graph
        scrambled.load_state_dict({k: v + 7 for k, v in weights.items()})
        restored = from_graph(graph, scrambled, torch.zeros(2, 1, 6, 6)).state_dict()
        assert all(torch.equal(restored[k], v) for k, v in floats.items())


def test_a_new_process_loads_a_program_only_if_trusted(tmp_path, fresh_trust, monkeypatch):
    src, table, program = _program_source(tmp_path)
    out = str(tmp_path / "zoo")
    import_zoo(src, out, program=program, table=table, progress=False)
    digest, e = _sha256(program), Zoo(out).entries[0]
    architectures._TRUSTED.clear()  # a new process reading a stranger's zoo
    loads = []
    real_load = torch.export.load
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    with pytest.raises(SpecError, match=f"{architectures.TRUST_ENV}=sha256:{digest}"):
        Zoo(out).load_model(e)
    monkeypatch.setenv(architectures.TRUST_ENV, "sha256:" + "0" * 64)  # another program
    with pytest.raises(SpecError, match=f"{architectures.TRUST_ENV}=sha256:{digest}"):
        Zoo(out).load_model(e)
    assert loads == []  # refused before anything was unpickled
    monkeypatch.setenv(architectures.TRUST_ENV, f"mypkg.models:make,sha256:{digest}")
    x = torch.randn(3, 1, 6, 6)
    with torch.no_grad():
        assert torch.equal(Zoo(out).load_model(e)(x), _seeded(0)(x))
    assert len(loads) == 1


def test_a_swapped_program_is_refused_even_when_any_code_is_trusted(tmp_path, fresh_trust, monkeypatch):
    src, table, program = _program_source(tmp_path)
    out = str(tmp_path / "zoo")
    import_zoo(src, out, program=program, table=table, progress=False)
    e = Zoo(out).entries[0]
    other = str(tmp_path / "other.pt2")
    torch.export.save(torch.export.export(make_mlp(4), (torch.zeros(2, 3),)), other)
    stored = os.path.join(out, e["spec"]["file"])
    os.replace(other, stored)
    architectures._TRUSTED.clear()
    monkeypatch.setenv(architectures.TRUST_ENV, "*")
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: pytest.fail("a swapped program was loaded"))
    with pytest.raises(SpecError, match=f"has sha256 {_sha256(stored)}, the manifest says {e['spec']['sha256']}"):
        Zoo(out).load_model(e)
    os.remove(stored)
    with pytest.raises(SpecError, match="unreadable.*re-import"):
        Zoo(out).load_model(e)


def test_a_program_spec_must_name_a_file_inside_the_zoo(tmp_path, fresh_trust):
    good = {"family": "program", "file": "architecture/" + "a" * 64 + ".pt2", "sha256": "a" * 64,
            "inputs": [{"shape": [2, 3], "dtype": "float32"}]}
    architectures.check_zoo_spec(good)
    for bad in ("../x.pt2", "/tmp/x.pt2", "architecture/../../x.pt2", "architecture\\..\\x.pt2", "C:/x.pt2",
                "architecture//x.pt2", "architecture/x.pkl", "", 7):
        with pytest.raises(SpecError, match="'file' must be a relative path inside the zoo"):
            architectures.check_zoo_spec({**good, "file": bad})
    with pytest.raises(SpecError, match="'sha256' must be 64"):
        architectures.check_zoo_spec({**good, "sha256": "A" * 64})
    with pytest.raises(SpecError, match="needs 'inputs'"):
        architectures.check_zoo_spec({k: v for k, v in good.items() if k != "inputs"})
    # a manifest line with such a spec is refused when the zoo is read
    root = str(tmp_path / "zoo")
    os.makedirs(root)
    with open(os.path.join(root, "zoo.json"), "w") as f:
        json.dump({"kind": "classifier"}, f)
    with open(os.path.join(root, "manifest.jsonl"), "w") as f:
        f.write(json.dumps({"id": "m0", "index": 0, "file": "weights/m0.safetensors", "sha256": "b" * 64,
                            "split": "train", "family": "program", "spec": {**good, "file": "../x.pt2"}}) + "\n")
    with pytest.raises(ZooError, match="manifest.jsonl:1: spec of model m0: program spec: 'file'"):
        Zoo(root)
    # a symlink out of the zoo passes the check of the text, not the one of the path
    outside = str(tmp_path / "elsewhere.pt2")
    open(outside, "wb").close()
    os.makedirs(os.path.join(root, "architecture"))
    os.symlink(outside, os.path.join(root, "architecture", "link.pt2"))
    linked = {**good, "file": "architecture/link.pt2"}
    architectures.check_zoo_spec(linked)
    architectures.trust(f"sha256:{'a' * 64}")
    with pytest.raises(SpecError, match="resolves to .*, outside"):
        architectures.build_zoo_model(linked, root)


def test_program_example_inputs_must_be_positional(tmp_path, fresh_trust):
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, *, x):
            return self.fc(x)

    src, program = str(tmp_path / "src"), str(tmp_path / "kw.pt2")
    os.makedirs(src)
    save_file(Keyword().state_dict(), os.path.join(src, "m0.safetensors"))
    torch.export.save(torch.export.export(Keyword(), (), {"x": torch.zeros(2, 3)}), program)
    with pytest.raises(ZooError, match=r"kw.pt2 was exported with keyword example inputs \['x'\].*positional"):
        import_zoo(src, str(tmp_path / "zoo"), program=program, progress=False)
    garbage = str(tmp_path / "garbage.pt2")
    with open(garbage, "wb") as f:
        f.write(b"PK\x03\x04 not a zip")
    with pytest.raises(ZooError, match="garbage.pt2 is not a torch.export program"):
        import_zoo(src, str(tmp_path / "zoo2"), program=garbage, progress=False)
    assert not os.path.exists(str(tmp_path / "zoo2"))


def test_cli_imports_a_program(tmp_path, capsys, fresh_trust):
    src, table, program = _program_source(tmp_path)
    out = str(tmp_path / "zoo")
    assert main(["import", src, "--out", out, "--program", program, "--table", table, "--no-progress"]) == 0
    assert "imported 4 new models" in capsys.readouterr().out
    zoo = Zoo(out)
    assert len(zoo) == 4 and {e["family"] for e in zoo.entries} == {"program"}
    assert main(["import", src, "--out", out, "--program", program, "--table", table, "--no-progress"]) == 0
    assert "imported 0 new models" in capsys.readouterr().out  # a rerun resumes, the stored program kept


def _table(root, accuracies):
    path = os.path.join(root, "table.csv")
    with open(path, "w") as f:
        f.write("file,test_acc\n" + "".join(f"{k},{v}\n" for k, v in accuracies.items()))
    return path


def test_cli_import_and_summary(tmp_path, capsys):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    write_dwsnets(src, {"training": 3, "testing": 1})
    assert main(["import", src, "--out", out, "--image-size", "16,16", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "imported 4 new models" in printed and "imported (dwsnets)" in printed
    assert Zoo(out).config["inr"]["image_size"] == [16, 16]
    from nngraph.cli import main as nngraph_main

    assert nngraph_main(["zoo", "import", src, "--out", out, "--image-size", "16,16", "--no-progress"]) == 0
    assert "imported 0 new models" in capsys.readouterr().out


def test_inr_metadata_grid_orders_and_ranges():
    default = INRMetadata()
    from nngraph.zoo import coordinate_grid

    assert torch.equal(default.grid(3, 4), coordinate_grid(3, 4))
    rc = INRMetadata((0.0, 1.0), "rowcol").grid(2, 3)  # (row, col) in [0, 1]
    assert rc.tolist() == [[0, 0], [0, 0.5], [0, 1], [1, 0], [1, 0.5], [1, 1]]
    with pytest.raises(ValueError, match="among choices"):
        INRMetadata(coord_order="yx")
    assert INRMetadata.from_json(INRMetadata((0, 1), "rowcol", 30, (8, 8)).to_json()) == \
        INRMetadata((0.0, 1.0), "rowcol", 30.0, (8, 8))


# -- tables, sources and half zoos (issues 27, 33) -------------------------------------------------
def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("column", ["id", "spec", "index", "sha256", "family", "source", "image_index"])
def test_a_table_cannot_set_reserved_manifest_fields(tmp_path, column):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    _mlp_folder(src, n=4)
    table = _write(os.path.join(src, "t.csv"), f"file,test_acc,{column}\nm0,0.1,dup\nm1,0.2,dup\nm2,0.3,x\nm3,0.4,y\n")
    with pytest.raises(ZooError, match=rf"t.csv:2: column '{column}' would set a manifest field the import sets itself"):
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    assert not os.path.exists(out)  # nothing written


def test_two_rows_for_one_file_name_both_lines_and_nothing_is_written(tmp_path):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    _mlp_folder(src, n=4)
    table = _write(os.path.join(src, "t.csv"), "file,test_acc\nm0,0.1\nm1,0.2\nm2,0.3\nm3,0.4\nm1.safetensors,0.9\n")
    with pytest.raises(ZooError, match=r"t.csv:6 and .*t.csv:3 both fit test/m1.safetensors"):
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    table = _write(os.path.join(src, "t.csv"), "file,test_acc\nm0,0.1\nm1,0.2\nm2,0.3\nm3,0.4\nm1,0.9\n")
    with pytest.raises(ZooError, match=r"t.csv:6: file 'm1' has a row already at .*t.csv:3"):
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    assert not os.path.exists(out)


def test_a_row_that_fits_two_files_is_an_error(tmp_path):
    from nngraph.zoo import build_model

    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    for run in ("a", "b"):
        os.makedirs(os.path.join(src, run))
        save_file(build_model(MLP_SPEC).state_dict(), os.path.join(src, run, "final.safetensors"))
    table = _write(str(tmp_path / "t.csv"), "file,test_acc\nfinal,0.5\n")
    with pytest.raises(ZooError, match=r"t.csv:2: 'final' fits two files, a/final.safetensors and b/final.safetensors"):
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    table = _write(str(tmp_path / "t.csv"), "file,test_acc\na/final.safetensors,0.5\nb/final.safetensors,0.6\n")
    assert import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False, split=(1, 0, 0)) == 2


@pytest.mark.parametrize("text, message", [
    ("file,acc\nm0,0.1\nm1,0.2\n", r"table .*t.csv has no 'test_acc' column \(the accuracy-prediction target"),
    ("name,test_acc\nm0,0.1\nm1,0.2\n", r"table .*t.csv has no 'file' column naming the model files"),
    ("file,test_acc\nm0,0.1\nm1,high\n", r"t.csv:3 \(.*m1.safetensors\): test_acc is 'high', not a number"),
    ("file,test_acc\nm0,0.1\nm1,\n", r"t.csv:3 \(.*m1.safetensors\): test_acc is '', not a number"),
    ("file,test_acc,split\nm0,0.1,train\nm1,0.2,trian\n", r"t.csv:3 \(.*m1.safetensors\): split 'trian' is not one of"),
    ("file,test_acc\nm0,0.1,7\n", r"t.csv:2 has 3 cells, more than the 2 columns"),
    ('[{"file": "m0", "test_acc": 0.1}', r"table .*t.json is not valid JSON"),
])
def test_a_bad_table_is_one_line_naming_the_column_or_line(tmp_path, text, message):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    _mlp_folder(src, n=2)
    table = _write(str(tmp_path / ("t.json" if text.startswith("[") else "t.csv")), text)
    with pytest.raises(ZooError, match=message) as info:
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    assert "\n" not in str(info.value)
    assert not os.path.exists(out)


def test_classifiers_without_a_table_name_the_column(tmp_path):
    src = str(tmp_path / "src")
    _mlp_folder(src, n=2)
    with pytest.raises(ZooError, match=r"2 of 2 classifiers of .* have no 'test_acc' .* give a table \(--table\) "
                                       r"with a 'test_acc' column"):
        import_zoo(src, str(tmp_path / "zoo"), spec=MLP_SPEC, progress=False)


@pytest.mark.parametrize("label, message", [(-1, "label is -1, not an integer class >= 0"),
                                            (2.5, "label is 2.5, not an integer class >= 0"),
                                            ("two", "label is 'two', not an integer class >= 0")])
def test_inr_labels_must_be_classes(tmp_path, label, message):
    from nngraph.zoo import build_model, siren_spec

    spec = siren_spec(2, [4], 1, 30.0)
    src = str(tmp_path / "src")
    os.makedirs(src)
    for i in range(2):
        save_file(build_model(spec).state_dict(), os.path.join(src, f"i{i}.safetensors"))
    table = _write(str(tmp_path / "t.csv"), f"file,label\ni0,1\ni1,{label}\n")
    with pytest.raises(ZooError, match=rf"t.csv:3 \(.*i1.safetensors\): {message}"):
        import_zoo(src, str(tmp_path / "zoo"), spec=spec, table=table, progress=False)


def test_symlinks_out_of_the_source_are_refused_unless_followed(tmp_path):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    table = _mlp_folder(src, n=2)
    elsewhere = str(tmp_path / "elsewhere")
    os.makedirs(elsewhere)
    os.replace(os.path.join(src, "test", "m1.safetensors"), os.path.join(elsewhere, "m1.safetensors"))
    os.symlink(os.path.join(elsewhere, "m1.safetensors"), os.path.join(src, "test", "m1.safetensors"))
    with pytest.raises(ZooError, match=r"test/m1.safetensors is a symlink to .*elsewhere/m1.safetensors \(outside "
                                       r".*\); .* --follow-symlinks") as info:
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    assert "\n" not in str(info.value) and not os.path.exists(out)
    assert import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False, follow_symlinks=True) == 2
    assert Zoo(out).config["imported"]["follow_symlinks"] is True


def test_a_symlinked_folder_is_refused(tmp_path):
    src = str(tmp_path / "src")
    table = _mlp_folder(src, n=2)
    outside = str(tmp_path / "outside")
    os.replace(os.path.join(src, "test"), outside)
    os.symlink(outside, os.path.join(src, "test"))
    with pytest.raises(ZooError, match=r"src/test is a symlink \(a folder\) to .*outside"):
        import_zoo(src, str(tmp_path / "zoo"), spec=MLP_SPEC, table=table, progress=False)
    assert import_zoo(src, str(tmp_path / "zoo"), spec=MLP_SPEC, table=table, progress=False,
                      follow_symlinks=True) == 2


def test_casts_are_counted_and_refused_with_no_cast(tmp_path, capsys):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    table = _mlp_folder(src, n=3)
    for name in ("train/m0.safetensors", "test/m1.safetensors"):
        path = os.path.join(src, name)
        save_file({k: v.double() for k, v in load_file(path).items()}, path)
    with pytest.raises(ZooError, match=r"m1.safetensors: tensor '1.weight' is float64, the architecture's is float32 "
                                       r"\(4 tensors of another dtype\); refused by --no-cast"):
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False, casts="refuse")
    assert not os.path.exists(out)
    capsys.readouterr()
    assert import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False) == 3
    assert "cast 8 float64 tensors to float32 in 2 files (e.g. " in capsys.readouterr().out
    assert {v.dtype for v in Zoo(out).load_state_dict(Zoo(out).entries[0]).values()} == {torch.float32}


def test_a_failed_import_leaves_nothing_and_a_half_zoo_is_named(tmp_path, capsys):
    from nngraph.zoo import summarize

    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    table = _mlp_folder(src, n=2)
    bad = os.path.join(src, "test", "m1.safetensors")  # the first file, checked before anything is written
    save_file({"0.weight": torch.zeros(6, 3)}, bad)
    assert main(["import", src, "--out", out, "--spec", json.dumps(MLP_SPEC), "--table", table, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "m1.safetensors does not match" in err
    assert not os.path.exists(out)  # no zoo.json claiming 2 models over no manifest
    # a zoo.json over an empty manifest (a build killed before its first model): a clear error, not min()
    os.makedirs(out)
    _write(os.path.join(out, "zoo.json"), json.dumps({"kind": "classifier", "num_models": 6}))
    with pytest.raises(ZooError, match=r"holds no models: .* \(6 expected\); an empty or unfinished build"):
        summarize(out)
    assert main(["summary", out]) == 1
    assert "holds no models" in capsys.readouterr().err


def test_an_import_stopped_early_is_unfinished_until_rerun(tmp_path, capsys):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    table = _mlp_folder(src, n=4)
    assert main(["import", src, "--out", out, "--spec", json.dumps(MLP_SPEC), "--table", table, "--no-progress",
                 "--max-models", "2"]) == 0
    assert "unfinished import" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(out, "zoo.json"))
    assert main(["summary", out]) == 1
    assert "is an unfinished import (2 of 4 models stored" in capsys.readouterr().err
    assert main(["import", src, "--out", out, "--spec", json.dumps(MLP_SPEC), "--table", table, "--no-progress"]) == 0
    assert len(Zoo(out)) == 4


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    _mlp_folder(src, n=2)
    argv = ["import", src, "--out", out, "--spec", json.dumps(MLP_SPEC), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m nngraph.zoo import: error: 2 of 2 classifiers") and err.count("\n") == 1
    with pytest.raises(ZooError, match="have no 'test_acc'"):
        main(argv + ["--debug"])
    assert main(["summary", str(tmp_path / "nowhere")]) == 1
    assert "is not a zoo" in capsys.readouterr().err


def test_zoo_import_finds_a_factory_in_the_current_directory(tmp_path, monkeypatch, fresh_trust, capsys):
    import sys

    work = tmp_path / "work"
    work.mkdir()
    (work / "mymodels.py").write_text("from torch import nn\n\n\ndef make():\n"
                                      "    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))\n")
    src = str(work / "ckpts")
    os.makedirs(src)
    for i in range(2):
        torch.manual_seed(i)
        save_file(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict(),
                  os.path.join(src, f"m{i}.safetensors"))
    table = _write(str(work / "labels.csv"), "file,test_acc,split\nm0,0.5,train\nm1,0.6,test\n")
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(work))])
    from nngraph.cli import main as nngraph_main

    assert nngraph_main(["zoo", "import", "ckpts", "--out", "zoo", "--factory", "mymodels:make", "--input-shape", "3",
                         "--table", "labels.csv", "--no-progress"]) == 0, capsys.readouterr().err
    assert len(Zoo("zoo")) == 2 and str(work) not in sys.path


def test_tables_from_spreadsheets_and_their_mistakes(tmp_path):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    _mlp_folder(src, n=2)
    bom = _write(str(tmp_path / "bom.csv"), "\ufefffile, test_acc\nm0,0.1\nm1,0.2\n")  # Excel's BOM, a space
    assert import_zoo(src, out, spec=MLP_SPEC, table=bom, progress=False) == 2
    assert sorted(e["test_acc"] for e in Zoo(out).entries) == [0.1, 0.2]
    twice = _write(str(tmp_path / "twice.csv"), "file,test_acc,test_acc\nm0,0.1,0.9\nm1,0.2,0.8\n")
    with pytest.raises(ZooError, match=r"twice.csv:1: column 'test_acc' appears 2 times in the header"):
        import_zoo(src, str(tmp_path / "z2"), spec=MLP_SPEC, table=twice, progress=False)
    nan = _write(str(tmp_path / "nan.csv"), "file,test_acc\nm0,nan\nm1,inf\n")
    with pytest.raises(ZooError, match=r"nan.csv:3 \(.*m1.safetensors\): test_acc is inf, not a number \(2 of 2"):
        import_zoo(src, str(tmp_path / "z3"), spec=MLP_SPEC, table=nan, progress=False)
