
import pytest

from nngraph.zoo import ClassifierZooConfig, Zoo, build_classifier_zoo
from nngraph.zoo.classifiers import classifier_data, evaluate, sample_run
from tests.zoo.tiny import checksums, tiny_classifiers


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("clf_full"))
    build_classifier_zoo(root, tiny_classifiers(), progress=False)
    return Zoo(root)


def test_entries_and_stored_metrics_reproduce(full):
    config = tiny_classifiers()
    runs = {e["run"] for e in full.entries}
    assert runs == set(range(5))
    images, train = classifier_data(config)
    x_te, y_te = images.images[~train], images.labels[~train]
    for e in full.entries:
        assert set(e) >= {"spec", "hparams", "test_acc", "train_acc", "train_loss", "test_loss", "epoch", "sha256"}
        assert e["epoch"] in e["hparams"]["checkpoint_epochs"]
        acc, loss = evaluate(full.load_model(e), x_te, y_te)
        assert acc == e["test_acc"]
        assert e["num_params"] <= config.max_params + 200  # BatchNorm buffers are not parameters
    # every checkpoint of a run lands in the run's split
    split_of_run = {}
    for e in full.entries:
        assert split_of_run.setdefault(e["run"], e["split"]) == e["split"]


def test_run_settings_depend_only_on_seed_and_run():
    a = sample_run(ClassifierZooConfig(seed=1, num_runs=10), 7, [1, 8, 8], 10)
    b = sample_run(ClassifierZooConfig(seed=1, num_runs=500), 7, [1, 8, 8], 10)
    c = sample_run(ClassifierZooConfig(seed=2, num_runs=10), 7, [1, 8, 8], 10)
    assert a == b and a != c


def test_sampled_zoo_mixes_architectures():
    config = ClassifierZooConfig(seed=0)
    specs = [sample_run(config, r, [1, 8, 8], 10)["spec"] for r in range(60)]
    assert {s["family"] for s in specs} == {"mlp", "cnn", "resnet"}
    assert {s.get("kernel_size") for s in specs} >= {3, 5}
    assert {s["norm"] for s in specs} == {"none", "batch", "layer"}
    assert {s["act"] for s in specs} == {"relu", "gelu", "tanh", "silu"}
    assert {s.get("head") for s in specs} >= {"gap", "flatten"}


def test_deterministic_resumable_and_shardable(full, tmp_path):
    root = str(tmp_path / "z")
    assert build_classifier_zoo(root, tiny_classifiers(), max_models=3, progress=False) == 3
    build_classifier_zoo(root, tiny_classifiers(), shard="1/2", progress=False)
    build_classifier_zoo(root, tiny_classifiers(), shard="0/2", progress=False)
    assert checksums(Zoo(root)) == checksums(full)
    assert build_classifier_zoo(root, tiny_classifiers(), progress=False) == 0


def test_first_run_continues_the_same_runs_on_the_same_images(full, tmp_path):
    """A zoo starting at run 3 holds exactly the runs 3 and 4 of the full zoo (a run is a function of the seed
    and its index), all in the split it is told, and records where it starts."""
    root = str(tmp_path / "more")
    assert build_classifier_zoo(root, tiny_classifiers(first_run=3, num_runs=2, split=[1.0, 0.0, 0.0]),
                                progress=False) > 0
    more = Zoo(root)
    assert {e["run"] for e in more.entries} == {3, 4} and {e["split"] for e in more.entries} == {"train"}
    same = {k: v for k, v in checksums(full).items() if int(k.split("-")[1]) >= 3}
    assert checksums(more) == same
    assert more.config["first_run"] == 3 and more.config["data_fingerprint"] == full.config["data_fingerprint"]
    with pytest.raises(ValueError, match="first_run"):
        build_classifier_zoo(str(tmp_path / "bad"), tiny_classifiers(first_run=-1), progress=False)


@pytest.mark.slow
def test_workers_give_the_same_zoo(full, tmp_path):
    root = str(tmp_path / "z")
    build_classifier_zoo(root, tiny_classifiers(), progress=False, workers=2)
    assert checksums(Zoo(root)) == checksums(full)
    assert [e["id"] for e in Zoo(root).entries] == [e["id"] for e in full.entries]


def test_zoos_without_the_wild_options_draw_the_runs_they_drew_before():
    """sha256 of the first 60 runs' settings of the default config, computed before families /
    kernel_sizes / data_fractions existed (zoos built then resume with the same runs)."""
    import hashlib
    import json

    runs = [sample_run(ClassifierZooConfig(), r, [1, 8, 8], 10) for r in range(60)]
    digest = hashlib.sha256(json.dumps(runs, sort_keys=True).encode()).hexdigest()
    assert digest == "45ffaef39c618e4ca2d3687de208bd379b5dc2448dabd12788f68dedc344be5d"


def test_wild_config_draws_every_family_kernel_and_data_fraction():
    from nngraph.zoo import count_parameters

    config = ClassifierZooConfig.wild()
    runs = [sample_run(config, r, [1, 8, 8], 10) for r in range(300)]
    specs = [r["spec"] for r in runs]
    assert {s["family"] for s in specs} == {"mlp", "cnn", "resnet", "vit", "gated"}
    assert {s.get("kernel_size") for s in specs} >= {3, 5, 7}
    assert {r["hparams"]["data_fraction"] for r in runs} == {0.1, 0.25, 0.5, 1.0}
    assert all(count_parameters(s) <= config.max_params for s in specs)
    checkpoints = sum(len(r["hparams"]["checkpoint_epochs"]) for r in runs) / len(runs)
    assert config.num_runs * checkpoints >= 10_000  # "at least 10,000 checkpoints"
    with pytest.raises(ValueError, match="among choices"):
        sample_run(ClassifierZooConfig(families={"lstm": 1.0}), 0, [1, 8, 8], 10)


def test_wild_zoo_builds_trains_on_data_subsets_and_records_its_options(tmp_path):
    config = ClassifierZooConfig.wild(num_runs=6, max_epochs=1, checkpoints=1, seed=3,
                                      families={"vit": 0.5, "gated": 0.5}, data_fractions=[0.1])
    root = str(tmp_path / "wild")
    assert build_classifier_zoo(root, config, progress=False) == 6
    zoo = Zoo(root)
    assert zoo.config["families"] == {"vit": 0.5, "gated": 0.5} and zoo.config["data_fractions"] == [0.1]
    assert {e["family"] for e in zoo.entries} == {"vit", "gated"}
    images, train = classifier_data(config)
    x_te, y_te = images.images[~train], images.labels[~train]
    for e in zoo.entries:
        assert e["hparams"]["data_fraction"] == 0.1
        assert evaluate(zoo.load_model(e), x_te, y_te)[0] == e["test_acc"]
    # the default config's zoo.json is as before the options existed
    plain = str(tmp_path / "plain")
    build_classifier_zoo(plain, ClassifierZooConfig(num_runs=1, max_epochs=1, checkpoints=1), progress=False)
    assert not {"families", "kernel_sizes", "data_fractions", "first_run"} & set(Zoo(plain).config)
