"""accuracy_prediction --extra-train: more training runs from a zoo of more runs, validation and test unchanged."""
import json
import os

import pytest

from nngraph.errors import ZooError
from nngraph.zoo import ClassifierZooConfig, Zoo, build_classifier_zoo
from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.common.splits import check_more_runs

#: the settings of the session's clf_zoo fixture (tests/tasks/conftest.py)
CLF = dict(num_runs=10, max_epochs=2, checkpoints=1, max_params=3000, split=[0.5, 0.2, 0.3])


@pytest.fixture(scope="module")
def more_zoo(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("zoo-clf-more"))
    build_classifier_zoo(root, ClassifierZooConfig(**{**CLF, "first_run": 10, "num_runs": 4, "split": [1, 0, 0]}),
                         progress=False)
    return root


def _run(zoo, out, *extra):
    args = ["--zoo", zoo, "--out", out, "--methods", "stats_gbm", "--gbm-iters", "5", "--holdout-family", "",
            "--no-progress", *extra]
    rows = accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(args))
    with open(os.path.join(out, "predictions.json")) as f:
        return rows, json.load(f)


def test_extra_runs_join_training_only(clf_zoo, more_zoo, tmp_path):
    rows, plain = _run(clf_zoo, str(tmp_path / "plain"), "--seed", "2")
    with open(tmp_path / "plain" / "results.json") as f:
        assert {r["seed"] for r in json.load(f)} == {2}  # what summarize --paired pairs runs by
    rows_more, more = _run(clf_zoo, str(tmp_path / "more"), "--extra-train", more_zoo, "--seed", "2")
    n_train = lambda rs: int(rs[0]["note"].split()[0])  # noqa: E731
    assert n_train(rows_more) == n_train(rows) + len(Zoo(more_zoo).entries) == n_train(rows) + 4
    assert more["ids"] == plain["ids"] and more["true"] == plain["true"]  # the same test models


def test_a_zoo_of_other_settings_or_the_same_runs_is_refused(clf_zoo, tmp_path):
    other = str(tmp_path / "other")
    build_classifier_zoo(other, ClassifierZooConfig(**{**CLF, "first_run": 10, "num_runs": 1, "seed": 1}),
                         progress=False)
    with pytest.raises(ZooError, match="seed 1 vs 0"):
        check_more_runs(clf_zoo, other)
    same = str(tmp_path / "same")
    build_classifier_zoo(same, ClassifierZooConfig(**{**CLF, "first_run": 9, "num_runs": 1}), progress=False)
    with pytest.raises(ZooError, match="the same runs"):
        check_more_runs(clf_zoo, same)
    with pytest.raises(ZooError, match="the same runs"):
        _run(clf_zoo, str(tmp_path / "acc"), "--extra-train", same)
