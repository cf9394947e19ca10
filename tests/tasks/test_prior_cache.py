"""The hybrid's cross-fitted GBM prior, cached in the run directory: read back for the same key, computed again for
another, identical to the uncached prior; the task's hybrid variants and restarts share it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tasks.accuracy_prediction import prior_cache
from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.accuracy_prediction.prior_cache import FOLDS, cached_arrays, gbm_prior


@pytest.fixture
def fits(monkeypatch):
    """Counts the gradient-boosting fits the prior makes (each fit still runs): a fit per fold and one per
    predicted split (validation, the rest), :data:`FOLDS` + 2 a prior."""
    calls = []
    real = prior_cache.gradient_boosting

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(prior_cache, "gradient_boosting", counting)
    return calls


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.rand(n, 6, generator=g) for n in (30, 8, 9)]  # (M_k, K * C)
    y = feats[0][:, 0].numpy() + 0.1 * torch.rand(30, generator=g).numpy()  # (30,)
    groups = [f"run{i // 3}" for i in range(30)]  # 10 runs of 3 checkpoints
    ids = [[f"{s}{i}" for i in range(len(f))] for s, f in zip("tvp", feats)]
    return feats, y, groups, ids


def test_cached_arrays_reads_back_the_same_key_and_recomputes_another(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return [np.arange(4.0) * len(calls), np.array([len(calls)])]

    first = cached_arrays(str(tmp_path), "x", {"seed": 0}, compute)
    again = cached_arrays(str(tmp_path), "x", {"seed": 0}, compute)
    assert len(calls) == 1
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    other = cached_arrays(str(tmp_path), "x", {"seed": 1}, compute)
    assert len(calls) == 2 and other[1][0] == 2
    assert not list(tmp_path.glob(".tmp-*"))  # written atomically: no temporary left


def test_a_file_holding_another_key_is_not_used(tmp_path):
    cached_arrays(str(tmp_path), "x", {"seed": 0}, lambda: [np.zeros(2)])
    (path,) = tmp_path.glob("x-*.npz")
    np.savez(path, key=np.array(json.dumps({"seed": 9})), count=np.array(1), a0=np.ones(2))  # same name, other key
    (out,) = cached_arrays(str(tmp_path), "x", {"seed": 0}, lambda: [np.full(2, 5.0)])
    np.testing.assert_array_equal(out, [5.0, 5.0])


def test_the_second_prior_is_read_and_equals_the_uncached_one(tmp_path, fits):
    feats, y, groups, ids = _problem()
    uncached = gbm_prior(feats, y, groups, ids, 0, 5, 3, None)
    assert len(fits) == FOLDS + 2
    first = gbm_prior(feats, y, groups, ids, 0, 5, 3, str(tmp_path))
    assert len(fits) == 2 * (FOLDS + 2)
    second = gbm_prior(feats, y, groups, ids, 0, 5, 3, str(tmp_path))
    assert len(fits) == 2 * (FOLDS + 2)  # read, not fitted
    for u, a, b in zip(uncached, first, second):
        assert u.shape == a.shape == b.shape
        np.testing.assert_array_equal(u, a)
        np.testing.assert_array_equal(u, b)


@pytest.mark.parametrize("change", ["seed", "gbm_iters", "probe_inputs", "feature", "target", "ids", "groups"])
def test_a_changed_key_recomputes(tmp_path, fits, change):
    feats, y, groups, ids = _problem()
    settings = {"seed": 0, "gbm_iters": 5, "probe_inputs": 3}
    gbm_prior(feats, y, groups, ids, **settings, cache_dir=str(tmp_path))
    n = len(fits)
    feats, y, groups, ids = [f.clone() for f in feats], y.copy(), list(groups), [list(s) for s in ids]
    if change in settings:
        settings[change] += 1
    elif change == "feature":
        feats[2][0, 0] += 0.5  # one predicted model's output: another split or zoo
    elif change == "target":
        y[0] += 0.5
    elif change == "ids":
        ids[1][0] = "other"
    else:
        groups[0] = "run9"
    gbm_prior(feats, y, groups, ids, **settings, cache_dir=str(tmp_path))
    assert len(fits) == 2 * n


def _run(clf_zoo, out, methods):
    args = ["--zoo", clf_zoo, "--out", out, "--holdout-family", "", "--methods", methods, "--epochs", "1",
            "--probe-inputs", "4", "--gbm-iters", "5", "--hidden-dim", "8", "--num-layers", "1", "--no-progress"]
    accuracy_prediction.run(accuracy_prediction.build_parser().parse_args(args))
    return json.load(open(f"{out}/predictions.json"))["pred"]


def test_the_hybrid_variants_and_a_restart_share_one_prior(clf_zoo, tmp_path, fits):
    out = str(tmp_path / "acc")
    first = _run(clf_zoo, out, "hybrid_no_graph,hybrid_fixed_probes")
    assert len(fits) == FOLDS + 2  # one prior for both variants
    assert len(list((tmp_path / "acc" / "cache").glob("gbm_prior-*.npz"))) == 1
    again = _run(clf_zoo, out, "hybrid_no_graph,hybrid_fixed_probes")  # a restart: networks loaded, prior read
    assert len(fits) == FOLDS + 2
    assert again == first
