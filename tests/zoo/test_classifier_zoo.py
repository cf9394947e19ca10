
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


@pytest.mark.slow
def test_workers_give_the_same_zoo(full, tmp_path):
    root = str(tmp_path / "z")
    build_classifier_zoo(root, tiny_classifiers(), progress=False, workers=2)
    assert checksums(Zoo(root)) == checksums(full)
    assert [e["id"] for e in Zoo(root).entries] == [e["id"] for e in full.entries]
