"""accuracy_prediction.subsample_runs: learning curves train on whole runs, never on part of one."""
import pytest

from tasks.accuracy_prediction.task import subsample_runs
from tasks.common.splits import Split


def _split(runs: dict[str, int]) -> Split:
    entries = [{"id": f"{r}-{k}", "run": r} for r, n in runs.items() for k in range(n)]
    return Split(list(range(len(entries))), [None] * len(entries), entries, dataset=None)


@pytest.mark.parametrize("budget", [1, 3, 4, 7, 10, 100])
def test_keeps_whole_runs_within_the_budget(budget):
    split = _split({"a": 3, "b": 4, "c": 1, "d": 2, "e": 4})
    out = subsample_runs(split, budget, seed=0)
    kept = [e["run"] for e in out.entries]
    assert len(kept) <= budget
    for run in set(kept):  # every checkpoint of a drawn run
        assert kept.count(run) == sum(e["run"] == run for e in split.entries)
    assert out.graphs == sorted(out.graphs)  # the split's order
    if budget >= 14:
        assert len(out) == 14


def test_draw_depends_on_the_seed_and_repeats_with_it():
    split = _split({f"r{i}": 2 for i in range(50)})
    runs = lambda s: [e["run"] for e in subsample_runs(split, 20, seed=s).entries]  # noqa: E731
    assert runs(0) == runs(0)
    assert runs(0) != runs(1)
    assert len(runs(0)) == 20


def test_rejects_an_empty_budget():
    with pytest.raises(ValueError, match="at least 1"):
        subsample_runs(_split({"a": 1}), 0, seed=0)
