"""The INR weight-motion diagnostics: the reproduced initialisation is exact, the probes read aligned signals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nngraph.zoo import INRZooConfig, build_inr_zoo
from tasks.diagnostics import inr_weights as inr_diagnostics


@pytest.mark.parametrize("init", ["siren", "dwsnets"])
def test_initialisation_is_reproduced_exactly(tmp_path, init):
    root = str(tmp_path / init)
    build_inr_zoo(root, INRZooConfig(max_images=4, inrs_per_image=2, resolution=8, hidden=[8], max_steps=0,
                                     init=init), progress=False)  # zero steps: stored weights = init
    d = inr_diagnostics.load_weights(root)
    assert d["w"].shape == (8, 8 * 2 + 8 + 8 + 1) and sum(d["sizes"]) == d["w"].shape[1]
    np.testing.assert_array_equal(d["w"], d["w0"])


def test_updates_are_nonzero_after_fitting(inr_zoo):
    d = inr_diagnostics.load_weights(inr_zoo)
    assert np.abs(d["w"] - d["w0"]).max() > 1e-3


def test_explained_by_label_and_linear_probe():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    noise = rng.normal(size=(200, 6))
    assert inr_diagnostics.explained_by_label(noise, y) < 0.05
    signal = noise + 3 * np.eye(6)[y]  # class c shifts coordinate c
    assert inr_diagnostics.explained_by_label(signal, y) > 0.5
    tr, te = np.arange(200) % 2 == 0, np.arange(200) % 2 == 1
    assert inr_diagnostics.linear_probe(signal[tr], y[tr], signal[te], y[te])[1] > 0.9
    assert inr_diagnostics.linear_probe(noise[tr], y[tr], noise[te], y[te])[1] < 0.5


def test_cli_writes_json(inr_zoo, tmp_path, capsys):
    path = str(tmp_path / "d.json")
    assert inr_diagnostics.main(["--zoo", inr_zoo, "--json", path, "--refit-shared", "6"]) == 0
    with open(path) as f:
        out = json.load(f)
    assert out["init"] == "siren" and set(out["linear_probe"]) == {"w", "w-w0", "w0"}
    assert out["tensors"]["all"]["rel"] > 0 and 0 <= out["shared_init_probe"]["test"] <= 1
    assert "logistic regression on w-w0" in capsys.readouterr().out


def test_corrupted_weights_are_refused(inr_zoo, tmp_path):
    import os
    import shutil

    from nngraph.zoo import Zoo, ZooError

    root = str(tmp_path / "zoo")
    shutil.copytree(inr_zoo, root)
    e = Zoo(root).entries[-1]
    with open(os.path.join(root, e["file"]), "r+b") as f:
        f.seek(-2, os.SEEK_END)
        f.write(b"\x00\x01")
    with pytest.raises(ZooError, match=f"{e['id']} are corrupted"):
        inr_diagnostics.load_weights(root)
