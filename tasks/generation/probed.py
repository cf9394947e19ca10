"""Choosing among many samples by what they compute: an accuracy predictor that reads a model's outputs on fixed,
unlabelled probe images, fitted on the zoo.

The filter of ``latent_probed``, said as such: every sample of a ``--filter-pool`` times larger pool is run on
``--probes`` images drawn once from the classifiers' *training* split (never their labels, never a test image);
what is read of its outputs (:func:`function_features`) goes into a ridge regression (or gradient boosting) fitted
on the zoo's models' same features and their recorded test accuracies; at every target the samples whose
predicted accuracy is nearest it are kept (:func:`~.filtering.select_nearest`), or, with ``rule="at_least"``, those
predicted at or above the target plus a margin (:func:`~.filtering.select_at_least`). The zoo's consensus (the class
its models' mean softmax favours on each probe) stands in for the labels the filter does not read.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nngraph.probing import output_statistics

from ..common.metrics import kendall_tau
from .filtering import heldout_predictions, select_at_least, select_nearest

__all__ = ["RULES", "FunctionAccuracyPredictor", "choose_by_function", "function_features", "probe_inputs"]

RULES = ("nearest", "at_least")  # what the condition means: "this accuracy" or "at least this accuracy"


def probe_inputs(x_train: torch.Tensor, num: int, seed: int = 0) -> torch.Tensor:
    """``(num, ...)``: ``num`` distinct images of ``x_train`` ``(N, ...)``, drawn by ``seed`` (no labels).

    Raises:
        ValueError: when ``x_train`` has fewer than ``num`` images.
    """
    if not 0 < num <= len(x_train):
        raise ValueError(f"cannot draw {num} probe images from {len(x_train)} training images")
    return x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))[:num]]


@torch.no_grad()
def model_logits(models: Sequence[nn.Module], inputs: torch.Tensor) -> torch.Tensor:
    """``(M, P, C)``: every model's logits on ``inputs`` ``(P, ...)``, in eval mode (restored afterwards)."""
    out = []
    for model in models:
        was_training = model.training
        out.append(model.eval()(inputs).float())  # (P, C)
        model.train(was_training)
    return torch.stack(out)


def function_features(logits: torch.Tensor, consensus: torch.Tensor) -> torch.Tensor:
    r"""What the filter reads of a model's outputs on :math:`P` probes: per probe the class probabilities, the
    confidence (largest probability), entropy and margin (:func:`nngraph.probing.output_statistics`) and whether
    its top class is the zoo's consensus class; then three summaries: the fraction of probes where it agrees with
    the consensus, its mean confidence and its mean probability of the consensus class. Non-finite logits (a
    diverged model) read as uniform probabilities.

    Shapes:
        - **input:** ``logits`` :math:`(M, P, C)`; ``consensus`` :math:`(P,)` class indices
        - **output:** :math:`(M, P (C + 4) + 3)`
    """
    m, p, c = logits.shape
    stats = output_statistics(logits)  # (M, P C + 3 P): probabilities first, probe-major
    probs = stats[:, :p * c].view(m, p, c)  # (M, P C) -> (M, P, C)
    agree = (probs.argmax(-1) == consensus).to(probs.dtype)  # (M, P)
    on_consensus = probs.gather(-1, consensus.view(1, p, 1).expand(m, p, 1))[..., 0]  # (M, P)
    summary = torch.stack([agree.mean(1), probs.max(-1).values.mean(1), on_consensus.mean(1)], dim=1)  # (M, 3)
    return torch.cat([stats, agree, summary], dim=1)


class FunctionAccuracyPredictor:
    """Test accuracy predicted from a classifier's outputs on fixed probe images (:func:`function_features`):
    a ridge regression (penalty by leave-one-out, ``kind="ridge"``) or histogram gradient boosting (``"gbm"``).

    Args:
        inputs: ``(P, ...)`` the probe images, the same for every model.
        kind: ``"ridge"`` or ``"gbm"``. (default: ``"ridge"``)
        seed: the gradient boosting's seed, any non-negative int (taken modulo :math:`2^{32}`). (default: ``0``)
    """

    ALPHAS = np.logspace(-3, 3, 13)
    KINDS = ("ridge", "gbm")

    def __init__(self, inputs: torch.Tensor, kind: str = "ridge", seed: int = 0):
        if kind not in self.KINDS:
            raise ValueError(f"Could not resolve predictor kind '{kind}' among choices {list(self.KINDS)}")
        self.inputs, self.kind, self.seed = inputs, kind, seed
        self.consensus = self.model = self.heldout_tau = self.heldout_residual = None

    def _make(self, rows: int):
        """A fresh regressor for ``rows`` training rows."""
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.linear_model import RidgeCV

        if self.kind == "ridge":
            return RidgeCV(alphas=self.ALPHAS)
        leaf = max(2, min(20, rows // 10))  # the default 20 is a constant predictor on tiny zoos
        return HistGradientBoostingRegressor(max_iter=200, random_state=self.seed % 2**32, early_stopping=False,
                                             min_samples_leaf=leaf)

    def features(self, models: Sequence[nn.Module]) -> np.ndarray:
        """``(M, F)``: the models' :func:`function_features` against the zoo's consensus (set by :meth:`fit`)."""
        if self.consensus is None:
            raise RuntimeError("fit the predictor on the zoo before reading features")
        return function_features(model_logits(models, self.inputs), self.consensus).double().numpy()

    def fit(self, models: Sequence[nn.Module], accuracy: np.ndarray, runs: np.ndarray | None = None,
            folds: int = 5):
        """Fit on the zoo's ``models`` and their test ``accuracy`` ``(M,)``; the consensus is the top class of the
        zoo's mean softmax on every probe. With ``runs`` ``(M,)`` also predict every model from the others' runs
        (:func:`~.filtering.heldout_predictions`): Kendall's tau of those predictions is kept as
        :attr:`heldout_tau`, the median absolute residual (accuracy minus prediction) as
        :attr:`heldout_residual`."""
        logits = model_logits(models, self.inputs)  # (M, P, C)
        probs = output_statistics(logits)[:, :logits.shape[1] * logits.shape[2]].view(logits.shape)  # (M, P, C)
        self.consensus = probs.mean(0).argmax(-1)  # (P,)
        x = function_features(logits, self.consensus).double().numpy()  # (M, F)
        accuracy = np.asarray(accuracy, dtype=float)
        make = lambda: self._make(len(x))  # noqa: E731
        if runs is not None:
            heldout = heldout_predictions(make, x, accuracy, runs, folds)  # (M,)
            self.heldout_tau = kendall_tau(accuracy, heldout)
            self.heldout_residual = float(np.median(np.abs(accuracy - heldout)))
        self.model = make().fit(x, accuracy)
        return self

    def predict(self, models: Sequence[nn.Module]) -> np.ndarray:
        """``(B,)`` predicted test accuracies."""
        return self.model.predict(self.features(models))


def choose_by_function(pool: Sequence[nn.Module], pool_target: np.ndarray, zoo: Sequence[nn.Module],
                       zoo_acc: np.ndarray, runs: np.ndarray, data: tuple, per_target: int, probes: int = 64,
                       kind: str = "ridge", seed: int = 0, last: np.ndarray | None = None, rule: str = "nearest",
                       margin: float | str = 0.0) -> tuple[np.ndarray, FunctionAccuracyPredictor, float]:
    """The ``latent_probed`` filter: indices of ``per_target`` samples of ``pool`` per target (samples flagged in
    ``last`` kept last), the predictor fitted on the zoo, and the margin used. ``rule="nearest"``: the samples whose
    predicted accuracy is nearest the target (:func:`~.filtering.select_nearest`); ``rule="at_least"``: the target
    read as "at least this accuracy", the samples predicted at or above the target plus ``margin``, nearest it
    first, the highest below it when too few qualify (:func:`~.filtering.select_at_least`). ``margin`` is a number
    or ``"heldout"``, the predictor's median absolute residual on held-out runs of the zoo.

    Reads ``data`` (the task's ``(x_train, y_train, x_test, y_test, num_classes)``) for ``probes`` training
    images only: no label, no test image; ``zoo_acc`` ``(M,)`` (the zoo's recorded test accuracies) is what the
    predictor is fitted to.

    Raises:
        ValueError: on an unknown rule or a margin that is neither a number nor ``"heldout"``.
    """
    if rule not in RULES:
        raise ValueError(f"Could not resolve rule '{rule}' among choices {list(RULES)}")
    if isinstance(margin, str) and margin != "heldout":
        raise ValueError(f"margin must be a number or 'heldout', got '{margin}'")
    predictor = FunctionAccuracyPredictor(probe_inputs(data[0], probes, seed), kind, seed).fit(zoo, zoo_acc, runs)
    predicted = predictor.predict(pool)  # (B,)
    if rule == "nearest":
        return select_nearest(predicted, pool_target, per_target, last), predictor, 0.0
    margin = predictor.heldout_residual if margin == "heldout" else float(margin)
    return select_at_least(predicted, pool_target, per_target, margin, last), predictor, margin
