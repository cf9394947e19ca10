"""Choosing among many samples with an accuracy predictor fitted on the zoo.

A filter, said as such: ``latent_filtered`` draws ``--filter-pool`` times more samples than it keeps from the
latent generator and keeps, at every target, those whose *predicted* accuracy is nearest the target. Its predictor
reads only weights (the samples' codes in the generator's frame, :meth:`nngraph.generate.LatentFlowGenerator.encode`,
into a ridge regression fitted on the zoo's codes and test accuracies); no sample is run on data to choose it.
``latent_probed`` keeps them by a predictor of their function instead (:mod:`.probed`). Both report their
Kendall tau on held-out runs of the zoo (:func:`heldout_tau`).

What the condition means is a choice of the filter: :func:`select_nearest` reads it as "this accuracy" (the
samples predicted nearest the target), :func:`select_at_least` as "at least this accuracy" (the samples predicted
at or above the target plus a margin, the nearest to it first).
"""
from __future__ import annotations

import numpy as np

from ..common.metrics import kendall_tau

__all__ = ["CodeAccuracyPredictor", "heldout_predictions", "heldout_tau", "select_at_least", "select_nearest"]


class CodeAccuracyPredictor:
    """Ridge regression (penalty chosen by leave-one-out, :class:`sklearn.linear_model.RidgeCV`) from the codes of a
    fitted :class:`~nngraph.generate.LatentFlowGenerator` to test accuracy.

    Args:
        generator: the fitted latent generator whose frame and basis give the codes.
        template: the architecture (the module), to align graphs to the frame.
    """

    ALPHAS = np.logspace(-3, 3, 13)

    def __init__(self, generator, template):
        self.generator, self.template = generator, template
        self.model = None

    def codes(self, graphs) -> np.ndarray:
        """``(B, r)``: the graphs' codes in the generator's frame."""
        return self.generator.encode(graphs, self.template).numpy()

    def fit(self, graphs, accuracy: np.ndarray, runs: np.ndarray | None = None, folds: int = 5):
        """Fit on the zoo; with ``runs`` ``(M,)`` also measure Kendall's tau on held-out runs (``folds`` groups of
        runs, at most one per run, each predicted by the predictor fitted on the others), kept as
        :attr:`heldout_tau`."""
        from sklearn.linear_model import RidgeCV

        x = self.codes(graphs)  # (M, r)
        self.heldout_tau = None if runs is None else heldout_tau(lambda: RidgeCV(alphas=self.ALPHAS), x, accuracy,
                                                                 runs, folds)
        self.model = RidgeCV(alphas=self.ALPHAS).fit(x, accuracy)
        return self

    def predict(self, graphs) -> np.ndarray:
        """``(B,)`` predicted test accuracies."""
        return self.model.predict(self.codes(graphs))


def heldout_predictions(make, x: np.ndarray, y: np.ndarray, runs: np.ndarray, folds: int = 5) -> np.ndarray:
    """``(M,)``: every model's ``y`` predicted by a regressor never fitted on its run: runs dealt into ``folds``
    groups by their index (``run % folds``, at most one fold per run), every group predicted by ``make()`` (a fresh
    scikit-learn regressor) fitted on the others. ``x`` ``(M, F)``, ``y`` and ``runs`` ``(M,)``.

    Raises:
        ValueError: when the models come from fewer than 2 runs.
    """
    run_index = np.unique(runs, return_inverse=True)[1]  # (M,): 0..R-1
    folds = min(folds, int(run_index.max()) + 1)
    if folds < 2:
        raise ValueError("measuring the held-out tau needs models of at least 2 runs")
    fold = run_index % folds  # (M,): the fold of every model's run
    pred = np.empty(len(x))
    for f in range(folds):
        test = fold == f
        pred[test] = make().fit(x[~test], y[~test]).predict(x[test])
    return pred


def heldout_tau(make, x: np.ndarray, y: np.ndarray, runs: np.ndarray, folds: int = 5) -> float:
    """Kendall's tau between ``y`` and its :func:`heldout_predictions` (same arguments)."""
    return kendall_tau(y, heldout_predictions(make, x, y, runs, folds))


def _select(target: np.ndarray, per_target: int, last: np.ndarray | None, order) -> np.ndarray:
    """For every distinct target in increasing order, the first ``per_target`` of its samples in ``order(idx, t)``
    (positions into ``idx``, the target's samples), with samples flagged in ``last`` moved after the others."""
    last = np.zeros(len(target), dtype=bool) if last is None else np.asarray(last, dtype=bool)
    kept = []
    for t in np.unique(target):
        idx = np.flatnonzero(target == t)
        if len(idx) < per_target:
            raise ValueError(f"target {t:.4g} has {len(idx)} samples; cannot keep {per_target}")
        ranked = idx[order(idx, t)]
        ranked = np.concatenate([ranked[~last[ranked]], ranked[last[ranked]]])  # flagged last, order kept
        kept.append(ranked[:per_target])
    return np.concatenate(kept)


def select_nearest(predicted: np.ndarray, target: np.ndarray, per_target: int,
                   last: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``per_target`` samples whose ``predicted`` value is nearest their ``target``, for every
    distinct target in increasing order (so ``target[kept]`` is each target repeated ``per_target`` times);
    ties go to the earlier sample. Samples flagged in ``last`` ``(B,)`` bool (e.g. copies of a zoo model) are
    kept only when a target has fewer than ``per_target`` others.

    Raises:
        ValueError: when a target has fewer than ``per_target`` samples.
    """
    predicted, target = np.asarray(predicted, dtype=float), np.asarray(target, dtype=float)
    return _select(target, per_target, last, lambda idx, t: np.argsort(np.abs(predicted[idx] - t), kind="stable"))


def select_at_least(predicted: np.ndarray, target: np.ndarray, per_target: int, margin: float = 0.0,
                    last: np.ndarray | None = None) -> np.ndarray:
    """The condition read as "at least this value": for every distinct target ``t`` in increasing order, the
    ``per_target`` samples whose ``predicted`` value is at least ``t + margin``, the nearest to it
    first; when fewer qualify, the others follow, nearest ``t + margin`` first (the highest
    predicted below it). Ties go to the earlier sample; samples flagged in ``last`` ``(B,)`` bool come after all
    others, as in :func:`select_nearest`. With every prediction exact this keeps samples at or above their
    target, so their median is at or above the targets' where :func:`select_nearest` centres it on them.

    Raises:
        ValueError: when a target has fewer than ``per_target`` samples, or ``margin`` is negative or not finite.
    """
    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    predicted, target = np.asarray(predicted, dtype=float), np.asarray(target, dtype=float)

    def order(idx, t):
        floor = t + margin
        below = predicted[idx] < floor  # (n,): not qualifying
        return np.lexsort((np.abs(predicted[idx] - floor), below))  # qualifying first, then nearest the floor

    return _select(target, per_target, last, order)
