"""Linear probes on frozen features (embeddings, weight statistics): logistic regression for classes, ridge
regression for values, both on features standardised over the training set (scikit-learn)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["standardise", "probe_classes", "probe_values"]


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """``train`` and ``others`` centred and scaled by the training mean and std (constant features stay 0);
    non-finite entries become 0 (a diverged model's statistics of 1e30, say, after the caller's ``asinh``)."""
    train = np.nan_to_num(np.asarray(train, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)  # (M, D)
    mean, std = train.mean(0), train.std(0)
    std = np.where(std < 1e-8, 1.0, std)
    out = [(train - mean) / std]
    for x in others:
        x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        out.append((x - mean) / std)
    return out


def probe_classes(x_train: np.ndarray, y_train: Sequence, x_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(M_test,)`` classes predicted by an L2-regularised logistic regression fitted on ``(x_train, y_train)``.

    Shapes:
        - ``x_train`` :math:`(M, D)`, ``x_test`` :math:`(M_{test}, D)`
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y_train)
    if len(set(y.tolist())) < 2:  # one class in training: the probe can only say it
        return np.full(len(x_test), y[0])
    xtr, xte = standardise(x_train, x_test)
    model = LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
    return model.fit(xtr, y).predict(xte)


def probe_values(x_train: np.ndarray, y_train: Sequence[float], x_test: np.ndarray) -> np.ndarray:
    """``(M_test,)`` values predicted by ridge regression, its strength chosen by leave-one-out over a log grid."""
    from sklearn.linear_model import RidgeCV

    xtr, xte = standardise(x_train, x_test)
    model = RidgeCV(alphas=np.logspace(-3, 3, 13))
    return model.fit(xtr, np.asarray(y_train, dtype=np.float64)).predict(xte)
