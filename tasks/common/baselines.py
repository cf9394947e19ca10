"""Baselines on fixed-length vectors (flattened weights, weight statistics, pixels): a small MLP trained with
the shared loop, and scikit-learn gradient boosting."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nngraph.train import FitResult, TrainConfig, fit, seed_everything

from .metrics import monitor_for, validation_metrics
from .models import VectorMLP

__all__ = ["flat_weights", "fit_vector_mlp", "predict_vectors", "gradient_boosting"]


def flat_weights(models) -> torch.Tensor:
    """``(M, num_params)``: every model's parameters flattened, in ``named_parameters()`` order."""
    return torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models])


def _pairs(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i], y[i]) for i in range(len(x))]


def fit_vector_mlp(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                   kind: str, out_dir: str, epochs: int = 50, hidden=(128, 128), dropout: float = 0.1,
                   lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 64, seed: int = 0,
                   progress: bool = False, patience: int | None = 20) -> tuple[VectorMLP, FitResult]:
    """Train a :class:`VectorMLP` with :func:`nngraph.train.fit`.

    Args:
        x_*: ``(M, D)`` features; y_*: ``(M,)`` class indices (``kind="classification"``), ``(M,)`` floats
            (``"regression"``) or ``(M, T)`` targets (``"vector"``, MSE on every output).
    """
    if kind not in ("classification", "regression", "vector"):
        raise ValueError(f"Could not resolve kind {kind!r} among choices ['classification', 'regression', 'vector']")
    seed_everything(seed)
    out_dim = int(y_train.max()) + 1 if kind == "classification" else (1 if y_train.dim() == 1 else y_train.shape[1])
    mean, std = x_train.mean(0), x_train.std(0)
    std = torch.where(std < 1e-4, torch.ones_like(std), std)  # features constant in training (e.g. padding)
    model = VectorMLP(x_train.shape[1], out_dim, hidden, dropout, mean, std)

    def outputs(m, x):
        out = m(x)
        return out.squeeze(-1) if kind == "regression" else out

    def loss_fn(m, batch):
        x, y = batch
        out = outputs(m, x)
        return nn.functional.cross_entropy(out, y) if kind == "classification" else nn.functional.mse_loss(out, y)

    def eval_fn(m, loader):
        losses, correct, n = 0.0, 0, 0
        for x, y in loader:
            out = outputs(m, x)
            if kind == "classification":
                losses += float(nn.functional.cross_entropy(out, y, reduction="sum"))
                correct += int((out.argmax(-1) == y).sum())
            else:
                losses += float(nn.functional.mse_loss(out, y, reduction="sum")) / (1 if y.dim() == 1 else y.shape[1])
            n += len(y)
        return validation_metrics(losses, correct, n, kind)

    monitor, mode = monitor_for(kind)
    config = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         monitor=monitor, mode=mode, patience=patience, seed=seed, progress=progress,
                         keep_freed_memory=True)  # glibc keeps freed edge tensors for reuse
    result = fit(model, _pairs(x_train, y_train), _pairs(x_val, y_val), loss_fn, eval_fn, config,
                 settings={"model": "vector_mlp", "kind": kind, "in_dim": x_train.shape[1], "hidden": list(hidden),
                           "dropout": dropout, "n_train": len(x_train)})
    return model, result


@torch.no_grad()
def predict_vectors(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Outputs of ``model`` on ``(M, D)`` inputs, in eval mode."""
    model.eval()
    return torch.cat([model(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])


def gradient_boosting(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, kind: str,
                      seed: int = 0, max_iter: int = 200) -> np.ndarray:
    """Predictions of scikit-learn's histogram gradient boosting (class labels or regression values)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if kind == "classification" else HistGradientBoostingRegressor
    leaf = max(2, min(20, len(x_train) // 10))  # the default 20 is a constant predictor on tiny zoos
    model = cls(max_iter=max_iter, random_state=seed, early_stopping=False, min_samples_leaf=leaf)
    model.fit(x_train.numpy(), y_train.numpy())
    return model.predict(x_test.numpy())
