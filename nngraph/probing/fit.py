"""Training a :class:`~nngraph.probing.ProbeGen` on a zoo with the shared loop (checkpoints, resume)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nngraph.train import FitResult, TrainConfig, fit

from .probegen import ProbeGen

__all__ = ["fit_probegen"]


def _targets(values) -> torch.Tensor:
    y = torch.as_tensor(values, dtype=torch.get_default_dtype())
    return y.reshape(len(y), -1)  # (M,) or (M, out_dim) -> (M, out_dim)


def fit_probegen(model: ProbeGen, train_models: Sequence[nn.Module], train_targets, val_models: Sequence[nn.Module],
                 val_targets, out_dir: str, epochs: int = 100, batch_size: int = 32, lr: float = 1e-3,
                 weight_decay: float = 5e-4, patience: int | None = 20, seed: int = 0, progress: bool = False,
                 settings: dict[str, Any] | None = None) -> FitResult:
    """Train ``model`` (generator and reader, end to end) to predict ``train_targets`` of ``train_models``.

    The loss is the squared error in units of the training targets' spread (``model``'s ``target_mean`` and
    ``target_std`` are set here, from ``train_targets``); the checkpoint of the best validation loss is kept.
    Runs through :func:`nngraph.train.fit`: atomic checkpoints in ``out_dir``, a killed run resumes from its
    last finished epoch (build ``model`` the same way, after the same seed), a finished one is not trained
    again, other settings are refused. The probed models stay on the CPU, untouched.

    Args:
        model: an untrained :class:`ProbeGen`.
        train_models, val_models: the probed models.
        train_targets, val_targets: ``(M,)`` or ``(M, out_dim)`` values to predict.
        out_dir: the run's directory.
        epochs, batch_size, lr, weight_decay, patience, seed, progress: as :class:`nngraph.train.TrainConfig`.
        settings: more JSON-able settings stored with the checkpoints (and compared on resume).

    Returns:
        :class:`nngraph.train.FitResult`; ``model`` holds the best weights.
    """
    out_dim = model.target_mean.numel()
    y_train, y_val = _targets(train_targets), _targets(val_targets)  # (M, out_dim)
    for name, models, y in (("train", train_models, y_train), ("val", val_models, y_val)):
        if len(models) != len(y) or y.shape[-1] != out_dim:
            raise ValueError(f"{len(models)} {name} models but targets of shape {tuple(y.shape)}; the model predicts "
                             f"{out_dim} value(s) per model")
    std = y_train.std(dim=0, unbiased=False) if len(y_train) > 1 else torch.ones(out_dim)
    with torch.no_grad():
        model.target_mean.copy_(y_train.mean(dim=0))
        model.target_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def items(y):
        return [(torch.tensor(i), y[i]) for i in range(len(y))]

    def loss_fn(m, batch):
        index, y = batch  # (B,), (B, out_dim)
        pred = m([train_models[i] for i in index.tolist()])  # (B, out_dim)
        return nn.functional.mse_loss(pred / model.target_std, y / model.target_std)

    def eval_fn(m, loader):
        total, n = 0.0, 0
        for index, y in loader:
            pred = m.predict([val_models[i] for i in index.tolist()])  # (B, out_dim)
            total += float(((pred - y) / m.target_std).pow(2).mean(-1).sum())
            n += len(y)
        return {"val_loss": total / n}

    config = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         monitor="val_loss", mode="min", patience=patience, seed=seed, progress=progress)
    described = {"model": "probegen", "probes": model.generator.num_probes,
                 "in_shape": list(model.generator.start.shape[1:]), "num_outputs": model.num_outputs,
                 "output": model.output, "out_dim": out_dim, "n_train": len(train_models),
                 "parameters": sum(p.numel() for p in model.parameters()), **(settings or {})}
    return fit(model, items(y_train), items(y_val), loss_fn, eval_fn, config, settings=described)
