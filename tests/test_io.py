"""nngraph.io: atomic writes leave files with the permissions the user's umask gives, like ``open``."""
from __future__ import annotations

import os
import stat

import pytest

from nngraph.io import atomic_write


@pytest.fixture
def umask():
    """Set the process umask for one test, restored afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
def test_atomic_write_follows_the_umask(tmp_path, umask, mask):
    umask(mask)
    path = tmp_path / "sub" / "file.json"
    atomic_write(str(path), b"{}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask
    atomic_write(str(path), b"[]")  # overwriting: the same mode, the new content
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask and path.read_bytes() == b"[]"
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert stat.S_IMODE(os.stat(plain).st_mode) == stat.S_IMODE(os.stat(path).st_mode)  # as open() does


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
def test_checkpoints_and_zoo_files_follow_the_umask(tmp_path, umask):
    """The writers built on atomic_write (a zoo's settings, a training checkpoint) inherit it."""
    from torch import nn

    from nngraph.train import save_checkpoint
    from nngraph.zoo.storage import write_config
    umask(0o022)
    write_config(str(tmp_path / "zoo"), {"kind": "test"})
    save_checkpoint(str(tmp_path / "run"), "best", nn.Linear(2, 1), {"epoch": 1})
    files = [os.path.join(d, n) for d, _, names in os.walk(tmp_path) for n in names]
    assert len(files) >= 3
    assert {oct(stat.S_IMODE(os.stat(f).st_mode)) for f in files} == {"0o644"}, files


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
def test_every_file_the_commands_write_follows_the_umask(tmp_path, umask, monkeypatch):
    """What a user's session writes: graph files (nngraph convert, .pt and .safetensors), an imported zoo (weights,
    manifest, settings, lock) and the dataset's graph cache, all 0644 under umask 022, as ``open`` would give."""
    import torch
    from safetensors.torch import save_file
    from torch import nn

    from nngraph.cli import main
    from nngraph.data import ZooDataset

    umask(0o022)
    spec = {"family": "mlp", "in_shape": [1, 1, 3], "hidden": [4], "num_classes": 2, "act": "relu", "norm": "none"}
    from nngraph.zoo import build_model

    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        torch.manual_seed(i)
        save_file(build_model(spec).state_dict(), str(src / f"m{i}.safetensors"))
    (tmp_path / "labels.csv").write_text("file,test_acc,split\nm0,0.5,train\nm1,0.6,test\n")
    (tmp_path / "spec.json").write_text(__import__("json").dumps(spec))
    program = str(tmp_path / "model.pt2")
    torch.export.save(torch.export.export(nn.Sequential(nn.Linear(3, 4), nn.ReLU()).eval(), (torch.randn(2, 3),)),
                      program)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    before = {os.path.join(d, n) for d, _, names in os.walk(tmp_path) for n in names}
    assert main(["convert", program, "-o", "graph.safetensors"]) == 0
    assert main(["convert", program, "-o", "graph.pt"]) == 0
    assert main(["zoo", "import", str(src), "--out", "zoo", "--spec", str(tmp_path / "spec.json"), "--table",
                 str(tmp_path / "labels.csv"), "--no-progress"]) == 0
    ZooDataset("zoo", "all", cache_dir=str(out / "cache"), progress=False)
    written = {os.path.join(d, n) for d, _, names in os.walk(tmp_path) for n in names} - before
    assert {"graph.safetensors", "graph.pt", "manifest.jsonl", "zoo.json", "m0.safetensors"} <= {
        os.path.basename(f) for f in written}
    assert any(f.startswith(str(out / "cache")) for f in written)
    modes = {f: oct(stat.S_IMODE(os.stat(f).st_mode)) for f in written}
    assert set(modes.values()) == {"0o644"}, {f: m for f, m in modes.items() if m != "0o644"}
