"""Regression metrics of accuracy prediction: Kendall's tau and R², overall and per group."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["kendall_tau", "r2", "per_group_tau", "validation_metrics", "monitor_for"]


def kendall_tau(true: Sequence[float], pred: Sequence[float]) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``); NaN for fewer than two models or constant predictions."""
    from scipy.stats import kendalltau

    if len(true) < 2:
        return float("nan")
    return float(kendalltau(np.asarray(true), np.asarray(pred)).statistic)


def r2(true: Sequence[float], pred: Sequence[float]) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``."""
    t, p = np.asarray(true, dtype=float), np.asarray(pred, dtype=float)
    ss_tot = float(((t - t.mean()) ** 2).sum())
    return float("nan") if ss_tot == 0 else 1.0 - float(((t - p) ** 2).sum()) / ss_tot


def per_group_tau(true: Sequence[float], pred: Sequence[float], groups: Sequence[str]) -> dict[str, float]:
    """Kendall's tau within every group (e.g. architecture family)."""
    t, p, g = np.asarray(true), np.asarray(pred), np.asarray(groups)
    return {name: kendall_tau(t[g == name], p[g == name]) for name in sorted(set(g.tolist()))}


def validation_metrics(total_loss: float, correct: int, n: int, kind: str) -> dict[str, float]:
    """``val_loss`` (mean over ``n`` items) and, for classification, ``val_acc``."""
    metrics = {"val_loss": total_loss / n}
    if kind == "classification":
        metrics["val_acc"] = correct / n
    return metrics


def monitor_for(kind: str) -> tuple[str, str]:
    """The metric early stopping and best checkpoints follow, and whether higher or lower is better."""
    return ("val_acc", "max") if kind == "classification" else ("val_loss", "min")
