"""tasks.merging end to end at toy sizes: both models, results.json with every field, a plot per model."""
from __future__ import annotations

import json

from tasks.merging import task as merging


def test_merging_runs_and_writes_its_results(tmp_path):
    out = tmp_path / "merge"
    assert merging.main(["--out", str(out), "--seeds", "0", "--epochs", "1", "--mlp-width", "16",
                         "--resnet-width", "4", "--transformer-width", "8", "--steps", "3"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in rows] == ["mlp", "resnet", "transformer"]
    for row in rows:
        for kind in ("naive", "aligned"):
            curve = row["curves"][kind]
            ends = [(1 - t) * curve["loss"][0] + t * curve["loss"][-1] for t in curve["t"]]
            assert row[f"barrier_{kind}"] == max(v - e for v, e in zip(curve["loss"], ends))
        assert 0.0 <= row["merged_acc_aligned"] <= 1.0 and len(row["curves"]["aligned"]["t"]) == 3
        assert (out / f"barrier_{row['model']}.png").stat().st_size > 1000
