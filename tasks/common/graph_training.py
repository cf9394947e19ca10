"""Training a graph-level predictor (classification or regression) with the shared loop."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from nngraph.train import FitResult, TrainConfig, fit, make_loader, seed_everything

from .features import max_kernel_shape
from .scaling import GraphScaler
from .metrics import monitor_for, validation_metrics
from .models import GraphPredictor

__all__ = ["train_graph_predictor", "predict_graphs"]


def _outputs(model: nn.Module, batch, kind: str) -> torch.Tensor:
    out = model(batch)  # (B, out_dim)
    return out.squeeze(-1) if kind == "regression" else out


def _loss(out: torch.Tensor, y: torch.Tensor, kind: str, reduction: str = "mean") -> torch.Tensor:
    if kind == "classification":
        return nn.functional.cross_entropy(out, y, reduction=reduction)
    return nn.functional.mse_loss(out, y.to(out.dtype), reduction=reduction)


def train_graph_predictor(train_graphs: list, val_graphs: list, kind: str, out_dir: str, scaler: GraphScaler,
                          out_dim: int, hidden_dim: int = 32, num_layers: int = 3, probe_dim: int = 0,
                          augment: Callable | None = None, epochs: int = 20, batch_size: int = 32,
                          lr: float = 1e-3, weight_decay: float = 5e-4, dropout: float = 0.0, warmup: int = 0,
                          patience: int | None = 10, seed: int = 0, device: str = "cpu", progress: bool = True,
                          settings: dict | None = None,
                          kernel_box: tuple[int, int, int] | None = None,
                          model_factory: Callable | None = None) -> tuple[GraphPredictor, FitResult]:
    """Train a :class:`GraphPredictor`; ``kind`` is ``"classification"`` (monitors ``val_acc``) or
    ``"regression"`` (monitors ``val_loss``). ``augment`` (a batch -> batch function) is applied to
    training batches only. ``warmup``: epochs of linear learning-rate warmup before the cosine decay.
    ``kernel_box``: the largest kernel the encoder must embed (default: that of the training and
    validation graphs; give the test graphs' too when they hold architectures training does not). ``model_factory``:
    ``box -> predictor``, called after seeding, to train another predictor (e.g. a
    :class:`~tasks.inr_classification.learned_probes.LearnedProbePredictor`) than the :class:`GraphPredictor` of the settings."""
    seed_everything(seed)
    box = kernel_box or max_kernel_shape(list(train_graphs) + list(val_graphs))  # sizes the encoder's max_kernel_box
    if model_factory is None:
        model = GraphPredictor(scaler, out_dim, hidden_dim, num_layers, probe_dim, dropout, box)
    else:
        model = model_factory(box)

    def loss_fn(m, batch):
        if augment is not None:
            batch = augment(batch)
        return _loss(_outputs(m, batch, kind), batch.y, kind)

    def eval_fn(m, loader):
        total, correct, n = 0.0, 0, 0
        for batch in loader:
            batch = batch.to(device)
            out = _outputs(m, batch, kind)
            total += float(_loss(out, batch.y, kind, "sum"))
            if kind == "classification":
                correct += int((out.argmax(-1) == batch.y).sum())
            n += batch.num_graphs
        return validation_metrics(total, correct, n, kind)

    monitor, mode = monitor_for(kind)
    config = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         warmup=warmup,
                         monitor=monitor, mode=mode, patience=patience, seed=seed, device=device, progress=progress,
                         keep_freed_memory=True)  # glibc keeps freed edge tensors for reuse
    run_settings = {"model": "graph_predictor", "kind": kind, "out_dim": out_dim, "hidden_dim": hidden_dim,
                    "num_layers": num_layers, "probe_dim": probe_dim, "kernel_box": list(box), "dropout": dropout,
                    "augment": getattr(augment, "__name__", None), "n_train": len(train_graphs), **(settings or {})}
    result = fit(model, train_graphs, val_graphs, loss_fn, eval_fn, config, run_settings)
    return model, result


@torch.no_grad()
def predict_graphs(model: nn.Module, graphs: list, kind: str, batch_size: int = 64, device: str = "cpu") -> torch.Tensor:
    """Outputs on ``graphs``: ``(M, C)`` logits for classification, ``(M,)`` values for regression."""
    model.eval()
    outs = [_outputs(model, b.to(device), kind).cpu() for b in make_loader(graphs, batch_size)]
    return torch.cat(outs)
