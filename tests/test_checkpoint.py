"""Checkpoints: the safetensors + JSON pair commits as one unit, carries checksums, and survives kills."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

from nngraph.errors import CheckpointError
from nngraph.train import TrainConfig, fit, load_best_model, load_checkpoint, read_metrics, save_checkpoint
from nngraph.train import seed_everything
from tests import train_worker as worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model():
    seed_everything(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _config(out_dir, **kw):
    settings = {"epochs": 4, "patience": None, "batch_size": 16, "lr": 1e-2, "schedule": "cosine", **kw}
    return TrainConfig(out_dir=str(out_dir), progress=False, **settings)


def _fit(out_dir, loss_fn=worker.loss_fn, **kw):
    data = worker.problem()
    model = _model()
    result = fit(model, data, data[:16], loss_fn, worker.eval_fn, _config(out_dir, **kw))
    return model, result


def _outcome(model, out_dir) -> dict:
    """What a finished run leaves: its weights, validation losses and best checkpoint."""
    best = _model()
    info = load_best_model(str(out_dir), best)
    return {"weights": [p.detach().clone() for p in model.parameters()],
            "val_loss": [r["val_loss"] for r in read_metrics(os.path.join(out_dir, "metrics.jsonl"))],
            "best_epoch": info["epoch"], "best": [p.detach().clone() for p in best.parameters()]}


def _assert_same(a: dict, b: dict) -> None:
    assert a["val_loss"] == b["val_loss"] and a["best_epoch"] == b["best_epoch"]
    for x, y in zip(a["weights"] + a["best"], b["weights"] + b["best"]):
        assert torch.equal(x, y)


def _saved(tmp_path, name="last"):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(str(tmp_path), name, model, {"epoch": 3, "settings": {"a": 1}}, optimizer)
    return model


def _flip(path, offset=-3):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x01
    open(path, "wb").write(bytes(data))


def test_round_trip_and_only_the_pair_on_disk(tmp_path):
    model = _saved(tmp_path)
    tensors, info = load_checkpoint(str(tmp_path), "last")
    assert info["epoch"] == 3 and torch.equal(tensors["model/weight"], model.weight)
    assert sorted(os.listdir(tmp_path)) == ["last.json", "last.safetensors"]


@pytest.mark.parametrize("name", ["last", "best"])
def test_flipped_byte_in_the_tensors_is_detected(tmp_path, name):
    _saved(tmp_path, name)
    _flip(str(tmp_path / f"{name}.safetensors"))
    with pytest.raises(CheckpointError, match=rf"{name}.safetensors .*checksum"):
        load_checkpoint(str(tmp_path), name)
    if name == "best":
        with pytest.raises(CheckpointError, match="best.safetensors"):
            load_best_model(str(tmp_path), nn.Linear(3, 2))


def test_flipped_digit_in_the_json_is_detected(tmp_path):
    _saved(tmp_path)
    path = str(tmp_path / "last.json")
    text = open(path).read().replace('"epoch": 3', '"epoch": 2')
    open(path, "w").write(text)
    with pytest.raises(CheckpointError, match=r"last.json .*checksum"):
        load_checkpoint(str(tmp_path), "last")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_garbage_json_names_the_file(tmp_path, content):
    _saved(tmp_path)
    (tmp_path / "last.json").write_bytes(content)
    with pytest.raises(CheckpointError, match="last.json"):
        load_checkpoint(str(tmp_path), "last")


def test_truncated_or_missing_tensors_name_the_file(tmp_path):
    _saved(tmp_path)
    path = tmp_path / "last.safetensors"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="last.safetensors"):
        load_checkpoint(str(tmp_path), "last")
    os.remove(path)
    with pytest.raises(CheckpointError, match="last.safetensors .*missing"):
        load_checkpoint(str(tmp_path), "last")


def test_tensors_of_another_checkpoint_are_refused(tmp_path):
    """The JSON of one save with the tensors of another: the torn pair of a crash between the two writes."""
    _saved(tmp_path / "a")
    other = nn.Linear(3, 2)
    save_checkpoint(str(tmp_path / "b"), "last", other, {"epoch": 4})
    shutil.copy(tmp_path / "b" / "last.safetensors", tmp_path / "a" / "last.safetensors")
    with pytest.raises(CheckpointError, match="last.safetensors .*last.json"):
        load_checkpoint(str(tmp_path / "a"), "last")


class _Killed(BaseException):
    """A kill: not an ``Exception``, so nothing on the way up handles it."""


def _die_at(monkeypatch, n: int) -> None:
    """Kill the process (raise :class:`_Killed`) just before its ``n``-th ``os.replace``: every file of a
    checkpoint is committed by one, so the crash lands between any two writes of the pair."""
    real, calls = os.replace, {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == n:
            raise _Killed
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def _count_replaces(monkeypatch, out_dir) -> int:
    real, calls = os.replace, {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    _fit(out_dir)
    monkeypatch.setattr(os, "replace", real)
    return calls["n"]


def test_killed_at_every_write_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    real = os.replace
    total = _count_replaces(monkeypatch, tmp_path / "count")
    assert total >= 4 * 2 * 2  # at least two files for last and for best per epoch
    full = _outcome(*_fit(tmp_path / "full")[:1], tmp_path / "full")
    for n in range(1, total + 1):
        out = tmp_path / f"kill-{n}"
        _die_at(monkeypatch, n)
        with pytest.raises(_Killed):
            _fit(out)
        monkeypatch.setattr(os, "replace", real)
        model, result = _fit(out)
        assert result.epochs_run == 4, n
        _assert_same(_outcome(model, out), full)


def test_killed_twice_in_a_row_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """A second kill right after resuming from a torn pair (the pending tensors not yet in place)."""
    real = os.replace
    total = _count_replaces(monkeypatch, tmp_path / "count")
    full = _outcome(*_fit(tmp_path / "full")[:1], tmp_path / "full")
    rng = random.Random(0)
    for trial in range(6):
        out = tmp_path / f"kill-{trial}"
        for n in sorted(rng.sample(range(1, total // 2), 2)):
            _die_at(monkeypatch, n)
            with pytest.raises(_Killed):
                _fit(out)
        monkeypatch.setattr(os, "replace", real)
        model, _ = _fit(out)
        _assert_same(_outcome(model, out), full)


_KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
real, calls = os.replace, [0]
def replace(src, dst):
    calls[0] += 1
    if calls[0] == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
from tests import train_worker
train_worker.main({out!r}, 4)
"""


@pytest.mark.slow
def test_sigkill_at_random_writes_resumes_to_the_uninterrupted_result(tmp_path):
    """A real SIGKILL (no cleanup runs) at random commit points of a subprocess, then a resumed run."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    script = os.path.join(ROOT, "tests", "train_worker.py")
    subprocess.run([sys.executable, script, str(tmp_path / "full"), "4"], env=env, check=True, timeout=120,
                   cwd=ROOT)
    full = json.load(open(tmp_path / "full" / "rank0.json"))
    for n in random.Random(1).sample(range(1, 4 * 6 + 1), 4):
        out = str(tmp_path / f"kill-{n}")
        done = subprocess.run([sys.executable, "-c", _KILLER.format(root=ROOT, n=n, out=out)], env=env,
                              timeout=120, cwd=ROOT)
        assert done.returncode == -signal.SIGKILL, n
        subprocess.run([sys.executable, script, out, "4"], env=env, check=True, timeout=120, cwd=ROOT)
        resumed = json.load(open(os.path.join(out, "rank0.json")))
        assert resumed["weights"] == full["weights"], n
        assert [r["val_loss"] for r in resumed["history"]] == [r["val_loss"] for r in full["history"]], n
