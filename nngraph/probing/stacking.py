"""Stacking on a base model: cross-fitting (its predictions on its own training rows, each made by a fit that did
not see it) and shrinking a stacked model's correction toward it."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["cross_fit", "correction_shrinkage"]


def cross_fit(fit_predict: Callable, x, y, groups: Sequence, others: Sequence = (), folds: int = 5,
              seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Out-of-fold predictions for the training rows, full-fit predictions for ``others``.

    A stacked model (one that reads a base model's prediction, e.g. :class:`~nngraph.probing.ProbeGraphHybrid`'s
    prior) must see, in training, predictions as good as the ones it will see at test time: not the base
    model's predictions on the rows it was fit on. So the training rows are cut into ``folds`` by ``groups``
    (every row of a group, e.g. the checkpoints of one training run, in one fold: siblings would leak) and each
    fold is predicted by a fit on the others; ``others`` (validation, test) are predicted by one fit on all rows.

    Args:
        fit_predict: ``(x_fit, y_fit, x_predict) -> (M_predict,)`` predictions (fits a fresh model each call).
        x, y: the training rows, indexable by an integer array (``(M, F)`` and ``(M,)``).
        groups: ``(M,)`` a group label per training row.
        others: row sets to predict with the fit on every training row.
        folds: at least 2 and at most the number of groups. (default: ``5``)
        seed: the draw of groups into folds. (default: ``0``)

    Returns:
        ``(oof, [pred for each of others])``: numpy arrays ``(M,)`` and ``(M_k,)``.
    """
    groups = np.asarray(groups)
    if len(groups) != len(y):
        raise ValueError(f"{len(groups)} group labels for {len(y)} training rows")
    names = np.unique(groups)
    if not 2 <= folds <= len(names):
        raise ValueError(f"folds must be in [2, {len(names)}] (the number of groups), got {folds}")
    order = np.random.default_rng(seed).permutation(len(names))  # groups dealt round-robin into the folds
    fold_of_group = np.empty(len(names), dtype=int)
    fold_of_group[order] = np.arange(len(names)) % folds
    fold = fold_of_group[np.searchsorted(names, groups)]  # (M,)
    oof = np.empty(len(y), dtype=float)
    for k in range(folds):
        held, kept = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        oof[held] = np.asarray(fit_predict(x[kept], y[kept], x[held]), dtype=float).reshape(-1)
    full = [np.asarray(fit_predict(x, y, o), dtype=float).reshape(-1) for o in others]
    return oof, full


def correction_shrinkage(prior, pred, y) -> float:
    r"""How much of a stacked model's correction to keep: the :math:`\alpha \in [0, 1]` minimising

    .. math::
        \sum_i \big(\pi_i + \alpha (\hat{y}_i - \pi_i) - y_i\big)^2

    over held-out rows (models the stacked model was not trained on), with :math:`\pi` the base model's
    prediction and :math:`\hat{y}` the stacked one's: least squares of the residual :math:`y - \pi` on the
    correction :math:`c = \hat{y} - \pi`, :math:`\alpha = \langle c, y - \pi \rangle / \langle c, c \rangle`,
    clipped to :math:`[0, 1]`. A correction that fits noise in training (it does not carry over to new models)
    gets a small :math:`\alpha`, one that carries over keeps its size; :math:`\alpha = 0` returns the base model.
    ``0`` when the correction is zero everywhere.

    Shapes:
        - **input:** ``prior``, ``pred``, ``y``: :math:`(M,)` each (array-likes)
        - **output:** a float in :math:`[0, 1]`
    """
    prior, pred, y = (np.asarray(v, dtype=float).reshape(-1) for v in (prior, pred, y))
    if not len(prior) == len(pred) == len(y):
        raise ValueError(f"prior, pred and y must have one value per row: got {len(prior)}, {len(pred)}, {len(y)}")
    if not (np.isfinite(prior).all() and np.isfinite(pred).all() and np.isfinite(y).all()):
        raise ValueError("prior, pred and y must be finite")
    correction = pred - prior  # (M,)
    energy = float(correction @ correction)
    if energy == 0.0:
        return 0.0
    return float(np.clip(correction @ (y - prior) / energy, 0.0, 1.0))
