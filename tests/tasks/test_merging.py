"""tasks.merging end to end at toy sizes: every model, results.json with every field, a plot per model, resume."""
from __future__ import annotations

import json

from tasks.merging import task as merging


def test_merging_runs_and_writes_its_results(tmp_path, monkeypatch):
    out = tmp_path / "merge"
    argv = ["--out", str(out), "--seeds", "0", "--epochs", "1", "--mlp-width", "16", "--resnet-width", "4",
            "--transformer-width", "8", "--gpt2-width", "8", "--gpt2-epochs", "1", "--steps", "3"]
    assert merging.main(argv) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in rows] == ["mlp", "resnet", "transformer", "gpt2"]
    assert all(0.0 <= r["acc_a"] <= 1.0 for r in rows)
    for row in rows:
        for kind in ("naive", "aligned"):
            curve = row["curves"][kind]
            ends = [(1 - t) * curve["loss"][0] + t * curve["loss"][-1] for t in curve["t"]]
            assert row[f"barrier_{kind}"] == max(v - e for v, e in zip(curve["loss"], ends))
        assert 0.0 <= row["merged_acc_aligned"] <= 1.0 and len(row["curves"]["aligned"]["t"]) == 3
        assert (out / f"barrier_{row['model']}.png").stat().st_size > 1000
    # a rerun finds every pair in results.json and trains nothing
    run_pair = merging.run_pair
    monkeypatch.setattr(merging, "run_pair", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    assert merging.main(argv) == 0
    assert json.loads((out / "results.json").read_text()) == rows
    assert all(r["match"] == "activations" for r in rows)  # the default
    # another matching on the same models reads them from <out>/models: nothing is trained again
    monkeypatch.setattr(merging, "run_pair", run_pair)
    monkeypatch.setattr(merging, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    monkeypatch.setattr(merging.sequences, "train", merging.train)
    assert merging.main(argv + ["--match", "weights"]) == 0
    again = [r for r in json.loads((out / "results.json").read_text()) if r["match"] == "weights"]
    assert [(r["acc_a"], r["acc_b"]) for r in again] == [(r["acc_a"], r["acc_b"]) for r in rows]
