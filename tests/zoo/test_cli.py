import json
import os

from nngraph.zoo import Zoo
from nngraph.zoo.__main__ import main


def test_cli_inr_and_classifiers(tmp_path, capsys):
    inr = str(tmp_path / "inr")
    assert main(["inr", "--out", inr, "--max-images", "3", "--inrs-per-image", "2", "--resolution", "8",
                 "--hidden", "8,8", "--max-steps", "10", "--no-progress"]) == 0
    zoo = Zoo(inr)
    assert len(zoo) == 6 and zoo.config["hidden"] == [8, 8] and zoo.config["max_steps"] == 10
    assert "PSNR dB: mean" in capsys.readouterr().out
    dws = str(tmp_path / "dws")
    assert main(["inr", "--out", dws, "--max-images", "2", "--inrs-per-image", "1", "--resolution", "8",
                 "--hidden", "8", "--max-steps", "0", "--init", "dwsnets", "--no-progress"]) == 0
    assert Zoo(dws).config["init"] == "dwsnets" and "init" not in zoo.config
    clf = str(tmp_path / "clf")
    assert main(["classifiers", "--out", clf, "--small", "--num-runs", "3", "--max-epochs", "1",
                 "--no-progress", "--shard", "0/1"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy over" in out and "#" in out
    assert os.path.exists(os.path.join(clf, "accuracy_histogram.png"))
    with open(os.path.join(clf, "zoo.json")) as f:
        assert json.load(f)["num_runs"] == 3
