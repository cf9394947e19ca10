import pytest
import torch

import nngraph
from nngraph.zoo import RecurrentZooConfig, Zoo, build_recurrent_zoo
from nngraph.zoo.classifiers import classifier_data, evaluate
from nngraph.zoo.recurrent import sample_recurrent_run
from nngraph.zoo.specs import CELLS, count_parameters, spec_size
from tests.zoo.tiny import checksums, tiny_recurrent


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("rnn_full"))
    build_recurrent_zoo(root, tiny_recurrent(), progress=False)
    return Zoo(root)


def test_entries_reproduce_and_convert_soundly(full):
    config = tiny_recurrent()
    assert {e["run"] for e in full.entries} == set(range(4))
    assert full.config["kind"] == "classifier" and full.config["architectures"] == "recurrent"
    images, train = classifier_data(config)
    x_te, y_te = images.images[~train], images.labels[~train]
    for e in full.entries:
        assert e["spec"]["family"] == "rnn" and e["family"] == e["spec"]["cell"]
        model = full.load_model(e)
        acc, _ = evaluate(model, x_te, y_te)
        assert acc == e["test_acc"]
        assert e["num_params"] == count_parameters(model) <= config.max_params
        report = nngraph.verify(model, x_te[:3], num_permutations=2)
        assert report.ok and report.num_permutable == report.num_hidden, (e["id"], report)


def test_resumable_and_shardable(full, tmp_path):
    root = str(tmp_path / "z")
    assert build_recurrent_zoo(root, tiny_recurrent(), max_models=2, progress=False) == 2
    build_recurrent_zoo(root, tiny_recurrent(), shard="1/2", progress=False)
    build_recurrent_zoo(root, tiny_recurrent(), shard="0/2", progress=False)
    assert checksums(Zoo(root)) == checksums(full)
    assert build_recurrent_zoo(root, tiny_recurrent(), progress=False) == 0


def test_first_run_continues_the_same_runs_on_the_same_images(full, tmp_path):
    """A zoo starting at run 2 holds exactly the runs 2 and 3 of the full zoo (a run is a function of the seed
    and its index), all in the split it is told, records where it starts, and counts as more runs of the full
    zoo for --extra-train; the full zoo's zoo.json has no first_run (zoos built before it existed resume)."""
    from tasks.common.splits import check_more_runs

    root = str(tmp_path / "more")
    assert build_recurrent_zoo(root, tiny_recurrent(first_run=2, num_runs=2, split=[1.0, 0.0, 0.0]),
                               progress=False) > 0
    more = Zoo(root)
    assert {e["run"] for e in more.entries} == {2, 3} and {e["split"] for e in more.entries} == {"train"}
    assert checksums(more) == {k: v for k, v in checksums(full).items() if int(k.split("-")[1]) >= 2}
    assert more.config["first_run"] == 2 and "first_run" not in full.config
    later = str(tmp_path / "later")
    build_recurrent_zoo(later, tiny_recurrent(first_run=4, num_runs=1, split=[1.0, 0.0, 0.0]), progress=False)
    check_more_runs(full.root, later)  # runs 4.. of the same settings: accepted
    with pytest.raises(ValueError, match="first_run"):
        build_recurrent_zoo(str(tmp_path / "bad"), tiny_recurrent(first_run=-1), progress=False)


def test_runs_depend_only_on_seed_and_run_and_mix_cells():
    a = sample_recurrent_run(RecurrentZooConfig(seed=1, num_runs=10), 7, [1, 8, 8], 10)
    b = sample_recurrent_run(RecurrentZooConfig(seed=1, num_runs=500), 7, [1, 8, 8], 10)
    c = sample_recurrent_run(RecurrentZooConfig(seed=2, num_runs=10), 7, [1, 8, 8], 10)
    assert a == b and a != c
    specs = [sample_recurrent_run(RecurrentZooConfig(), r, [1, 8, 8], 10)["spec"] for r in range(60)]
    assert {s["cell"] for s in specs} == set(CELLS)
    assert {s["readout"] for s in specs} == {"last", "h_n"}
    assert {s["num_layers"] for s in specs} == {1, 2} and {s["bidirectional"] for s in specs} == {False, True}
    for s in specs:
        assert spec_size(s).parameters == count_parameters(s) <= RecurrentZooConfig().max_params
    with pytest.raises(ValueError, match="Could not resolve cells"):
        sample_recurrent_run(RecurrentZooConfig(cells=["transformer"]), 0, [1, 8, 8], 10)


def test_command_line_builds_a_recurrent_zoo(tmp_path, capsys):
    from nngraph.zoo.__main__ import main

    root = str(tmp_path / "cli")
    assert main(["recurrent", "--out", root, "--num-runs", "2", "--max-epochs", "1", "--no-progress"]) == 0
    zoo = Zoo(root)
    assert len(zoo.entries) == 2 and all(e["id"].startswith("rnn-") for e in zoo.entries)
    more = str(tmp_path / "cli-more")
    assert main(["recurrent", "--out", more, "--num-runs", "1", "--max-epochs", "1", "--first-run", "5",
                 "--split", "1,0,0", "--no-progress"]) == 0
    assert {e["run"] for e in Zoo(more).entries} == {5} and Zoo(more).config["first_run"] == 5
