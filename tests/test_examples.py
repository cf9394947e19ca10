"""Every script in ``examples/`` runs to the end and prints what it promises."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(name: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.slow  # ~15-25 s: export tracing and the float64 check of a BERT
@pytest.mark.realworld
def test_convert_hf_model():
    pytest.importorskip("transformers")
    out = _run("convert_hf_model.py")
    assert "sound: relative output error" in out and "round trip bit for bit" in out


@pytest.mark.slow  # ~35 s: builds a zoo of 600 SIRENs, trains 15 epochs
def test_train_encoder(tmp_path):
    out = _run("train_encoder.py", "--workdir", str(tmp_path), "--threads", "1")
    assert "epoch 15: train loss" in out and os.path.exists(tmp_path / "run" / "best.json")
    test_line = next(l for l in out.splitlines() if "test accuracy" in l)
    accuracy = float(test_line.split("test accuracy ")[1].split()[0])
    assert accuracy >= 0.5, out  # chance is 0.10: the encoder with probe features learns the digits


def test_train_encoder_learns_in_a_quick_run(tmp_path):
    """Not slow (~30 s): half the zoo and 10 epochs already end well above chance (0.59 test accuracy measured,
    chance 0.10); an encoder that learns nothing, as this example's earlier task did, stays near 0.10."""
    out = _run("train_encoder.py", "--workdir", str(tmp_path), "--images", "300", "--epochs", "10")
    test_line = next(l for l in out.splitlines() if "test accuracy" in l)
    accuracy = float(test_line.split("test accuracy ")[1].split()[0])
    assert "(chance 0.10:" in test_line
    assert accuracy >= 0.35, out  # 3.5x chance, on 41 test INRs
    last = [l for l in out.splitlines() if l.startswith("epoch 10:")][0]
    assert float(last.split("val accuracy ")[1]) >= 0.35, out


@pytest.mark.slow  # ~15 s: trains 8 CNNs and the editor
def test_edit_cnn():
    out = _run("edit_cnn.py", "--threads", "1")
    lines = {l.split(":")[0]: l for l in out.splitlines()}
    assert "from_graph of the edited graph gives the same logits: True" in out
    before, after = lines["test accuracy of the 6 CNNs the editor trained on"].split(":", 1)[1].split("->")
    assert sum(eval(after)) > sum(eval(before))  # the edit helps the CNNs it was trained on


@pytest.mark.slow  # ~15 s: a small CNN trained 150 steps (the meta-training horizon) with the shipped learned
# optimizer and with Adam
def test_learned_optimizer():
    out = _run("learned_optimizer.py", "--steps", "150", "--threads", "1")
    lines = {l.split(":")[0]: l for l in out.splitlines()}
    start = float(lines["training loss at the start"].split(": ")[1])
    learned = float(lines["learned optimizer"].split("training loss ")[1].split(",")[0])
    assert learned < 0.7 * start  # it trains, in a plain loop, through a state-dict round trip mid-run
    gap = float(lines["untrained network vs adam (lr 1e-2), largest weight difference after 20 steps"].split(": ")[1])
    assert gap < 1e-4  # untrained, its step is Adam's
    assert "is not a parameter of the Sequential" in lines["a parameter of another model"]
