"""The shared training loop: metrics, best checkpoint, resume after a kill, early stopping, DDP."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

from nngraph.train import TrainConfig, fit, load_best_model, read_metrics, seed_everything
from tests import train_worker as worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model():
    seed_everything(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _config(tmp_path, name, **kw):
    settings = {"epochs": 4, "patience": None, "batch_size": 16, "lr": 1e-2, **kw}
    return TrainConfig(out_dir=str(tmp_path / name), progress=False, **settings)


def test_fit_writes_metrics_and_loadable_best_checkpoint(tmp_path):
    data = worker.problem()
    model = _model()
    result = fit(model, data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "run"))
    rows = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert all(set(r) >= {"train_loss", "val_loss", "lr"} for r in rows)
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]  # it learns
    best = min(rows, key=lambda r: r["val_loss"])
    assert result.best_epoch == best["epoch"]
    fresh = _model()
    info = load_best_model(str(tmp_path / "run"), fresh)
    assert info["epoch"] == best["epoch"] and info["settings"]["train"]["epochs"] == 4
    for a, b in zip(fresh.parameters(), model.parameters()):
        assert torch.equal(a, b)  # the returned model holds the best weights
    assert not [f for f in os.listdir(tmp_path / "run") if f.startswith(".tmp-")]


class _Killed(Exception):
    pass


def test_resume_after_interruption_continues_and_matches_uninterrupted_run(tmp_path):
    data = worker.problem()
    full = _model()
    fit(full, data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "full", schedule="cosine"))

    calls = {"n": 0}

    def dying_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 2 * 4 + 2:  # 4 batches per epoch: dies in the middle of epoch 3
            raise _Killed
        return worker.loss_fn(model, batch)

    with pytest.raises(_Killed):
        fit(_model(), data, data[:16], dying_loss, worker.eval_fn, _config(tmp_path, "cut", schedule="cosine"))
    assert [r["epoch"] for r in read_metrics(str(tmp_path / "cut" / "metrics.jsonl"))] == [1, 2]

    calls["n"] = 0
    resumed = _model()
    result = fit(resumed, data, data[:16], dying_loss, worker.eval_fn, _config(tmp_path, "cut", schedule="cosine"))
    assert calls["n"] == 2 * 4  # only epochs 3 and 4 were trained again
    assert result.epochs_run == 4
    for a, b in zip(resumed.parameters(), full.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    rows_full = read_metrics(str(tmp_path / "full" / "metrics.jsonl"))
    rows_cut = read_metrics(str(tmp_path / "cut" / "metrics.jsonl"))
    assert [r["val_loss"] for r in rows_cut] == pytest.approx([r["val_loss"] for r in rows_full], abs=1e-6)

    calls["n"] = 0  # a finished run is not trained again
    fit(_model(), data, data[:16], dying_loss, worker.eval_fn, _config(tmp_path, "cut", schedule="cosine"))
    assert calls["n"] == 0


def test_other_settings_in_the_same_directory_are_refused(tmp_path):
    data = worker.problem()
    fit(_model(), data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "run", epochs=1))
    with pytest.raises(ValueError, match=r"other settings \(train.lr\)"):  # the changed setting is named
        fit(_model(), data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "run", epochs=1, lr=0.5))


def test_raising_epochs_continues_a_finished_run_in_its_directory(tmp_path):
    data = worker.problem()
    full = _model()
    fit(full, data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "full", epochs=4, schedule="constant"))
    fit(_model(), data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "run", epochs=2, schedule="constant"))
    calls = {"n": 0}

    def counting_loss(model, batch):
        calls["n"] += 1
        return worker.loss_fn(model, batch)

    extended = _model()
    result = fit(extended, data, data[:16], counting_loss, worker.eval_fn,
                 _config(tmp_path, "run", epochs=4, schedule="constant"))
    assert calls["n"] == 2 * 4 and result.epochs_run == 4  # only epochs 3 and 4 were trained
    rows_full = read_metrics(str(tmp_path / "full" / "metrics.jsonl"))
    rows = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["val_loss"] for r in rows] == pytest.approx([r["val_loss"] for r in rows_full], abs=1e-6)
    with pytest.raises(ValueError, match="other settings"):  # fewer epochs, or anything else changed, is refused
        fit(_model(), data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "run", epochs=3,
                                                                                 schedule="constant"))


@pytest.mark.parametrize("grad_clip", [1.0, None])
def test_a_non_finite_loss_stops_training_before_the_step(tmp_path, grad_clip):
    data = worker.problem()
    calls = {"n": 0}

    def diverging_loss(model, batch):
        calls["n"] += 1
        loss = worker.loss_fn(model, batch)
        return loss * float("nan") if calls["n"] == 4 + 2 else loss  # 4 batches per epoch: epoch 2, batch 2

    model = _model()
    with pytest.raises(FloatingPointError, match="epoch 2/4, batch 2: training loss nan"):
        fit(model, data, data[:16], diverging_loss, worker.eval_fn, _config(tmp_path, "nan", grad_clip=grad_clip))
    assert all(torch.isfinite(p).all() for p in model.parameters())  # stopped before the step
    assert [r["epoch"] for r in read_metrics(str(tmp_path / "nan" / "metrics.jsonl"))] == [1]


def test_early_stopping(tmp_path):
    data = worker.problem()
    scores = iter([0.5, 0.4, 0.45, 0.41, 0.3, 0.2])

    def eval_fn(model, loader):
        return {"val_loss": next(scores)}

    result = fit(_model(), data, data[:16], worker.loss_fn, eval_fn, _config(tmp_path, "run", epochs=6, patience=2))
    assert result.epochs_run == 4 and result.best_epoch == 2 and result.best_value == pytest.approx(0.4)


@pytest.mark.distributed
def test_ddp_two_processes_agree_and_match_one_process(tmp_path):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    script = os.path.join(ROOT, "tests", "train_worker.py")
    out = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", script, str(tmp_path / "ddp"), "3"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    subprocess.run([sys.executable, script, str(tmp_path / "one"), "3"], env=env, check=True, timeout=60)
    r0, r1, one = (json.load(open(tmp_path / d / f)) for d, f in [("ddp", "rank0.json"), ("ddp", "rank1.json"),
                                                                    ("one", "rank0.json")])
    assert r0["weights"] == r1["weights"]  # both ranks hold the same model
    for a, b in zip(r0["weights"], one["weights"]):  # 2 x 8 per rank == 16 in one process
        assert a == pytest.approx(b, abs=1e-5)
    assert len(read_metrics(str(tmp_path / "ddp" / "metrics.jsonl"))) == 3


def _cut_at_epoch_3(tmp_path, name):
    """A run of 4 epochs killed in the middle of epoch 3; returns the loss function counting its calls."""
    calls = {"n": 0, "die": True}

    def dying_loss(model, batch):
        calls["n"] += 1
        if calls["die"] and calls["n"] == 2 * 4 + 2:
            raise _Killed
        return worker.loss_fn(model, batch)

    data = worker.problem()
    with pytest.raises(_Killed):
        fit(_model(), data, data[:16], dying_loss, worker.eval_fn, _config(tmp_path, name))
    calls.update(n=0, die=False)
    return dying_loss, calls


def _resume_and_compare(tmp_path, name, loss_fn, calls):
    data = worker.problem()
    full = _model()
    fit(full, data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "full"))
    resumed = _model()
    fit(resumed, data, data[:16], loss_fn, worker.eval_fn, _config(tmp_path, name))
    assert calls["n"] == 2 * 4  # only epochs 3 and 4 were trained
    for a, b in zip(resumed.parameters(), full.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("how", [shutil.move, shutil.copytree])
def test_moved_or_copied_run_directory_resumes(tmp_path, how):
    loss_fn, calls = _cut_at_epoch_3(tmp_path, "cut")
    how(str(tmp_path / "cut"), str(tmp_path / "elsewhere"))
    _resume_and_compare(tmp_path, "elsewhere", loss_fn, calls)


def test_checkpoint_of_an_older_version_resumes(tmp_path):
    """``last.json`` without checksums and with ``out_dir`` in its settings, as written before."""
    loss_fn, calls = _cut_at_epoch_3(tmp_path, "cut")
    path = tmp_path / "cut" / "last.json"
    meta = json.loads(path.read_text())
    del meta["tensors_sha256"], meta["checksum"]
    meta["settings"]["train"]["out_dir"] = "/somewhere/else"
    path.write_text(json.dumps(meta))
    _resume_and_compare(tmp_path, "cut", loss_fn, calls)


def test_stale_temporary_files_are_removed_on_start(tmp_path):
    from nngraph.io import _host

    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [run / f".tmp-{dead.pid}@{_host()}-abc", run / ".tmp-old"]
    live = [run / f".tmp-{os.getpid()}@{_host()}-xyz", run / ".tmp-recent", run / f".tmp-{dead.pid}@00000000-q"]
    for p in stale + live:
        p.write_bytes(b"partial")
    os.utime(run / ".tmp-old", (0, 0))
    data = worker.problem()
    fit(_model(), data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "run", epochs=1))
    assert not any(p.exists() for p in stale) and all(p.exists() for p in live)


def test_fit_leaves_the_allocator_alone_unless_asked_and_stores_no_rng_state(tmp_path, monkeypatch):
    from nngraph.train import load_checkpoint

    calls = []
    monkeypatch.setattr("nngraph.train.loop.keep_freed_memory", lambda: calls.append(1) or True)
    data = worker.problem()
    fit(_model(), data, data[:16], worker.loss_fn, worker.eval_fn, _config(tmp_path, "default", epochs=1))
    assert calls == []  # mallopt is process-wide: off by default
    fit(_model(), data, data[:16], worker.loss_fn, worker.eval_fn,
        _config(tmp_path, "asked", epochs=1, keep_freed_memory=True))
    assert calls == [1]
    tensors, _ = load_checkpoint(str(tmp_path / "default"), "last")
    assert not [k for k in tensors if k.startswith("rng/")]  # resume reseeds every epoch; nothing reads an RNG state
    assert [k for k in tensors if k.startswith("optim/")]
