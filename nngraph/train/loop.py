"""The one training loop shared by every task.

``fit`` trains a model by minibatch gradient descent, evaluates it after every epoch, keeps the best
checkpoint, stops early, logs one JSON line per epoch and resumes where a killed run stopped.
Under ``torchrun`` it trains data-parallel (DDP, gloo on CPU): each process sees ``1/world`` of every
global batch, gradients are averaged, every process evaluates the whole validation set and rank 0's
metric decides early stopping for all, and only rank 0 writes files.

A task supplies two functions:

- ``loss_fn(model, batch) -> Tensor`` — the scalar training loss of a batch. It must call ``model(...)``
  (the forward of the possibly DDP-wrapped model), not a method of it, so that gradients are synchronised.
- ``eval_fn(model, loader) -> dict[str, float]`` — metrics on the validation loader (the plain model).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from nngraph.io import clean_stale_temps

from . import distributed as dist_utils
from .allocator import keep_freed_memory
from .checkpoint import load_checkpoint, model_state, optimizer_from_flat, save_checkpoint
from .metrics import MetricsLog, read_metrics

__all__ = ["TrainConfig", "FitResult", "fit", "seed_everything", "to_device", "make_loader"]


@dataclass
class TrainConfig:
    """Settings of :func:`fit`.

    Args:
        out_dir: where the run's checkpoints (``best``, ``last``) and ``metrics.jsonl`` go.
        epochs: maximum number of epochs.
        batch_size: the global batch size (split evenly over the processes).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        schedule: ``"constant"`` or ``"cosine"`` (decay to 0 over ``epochs``, after ``warmup`` epochs).
        warmup: epochs of linear warmup.
        grad_clip: clip the gradient norm at this value (``None``: no clipping).
        monitor: the metric of ``eval_fn`` that picks the best checkpoint and stops early.
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        patience: stop after this many epochs without improvement (``None``: never).
        seed: seeds the data order and every epoch's randomness (dropout, augmentation).
        device: ``"cpu"``, ``"cuda"``, ...
        resume: continue from ``out_dir/last`` if it exists.
        progress: show tqdm progress bars (rank 0 only).
        num_workers: DataLoader worker processes.
        keep_freed_memory: on the CPU, let glibc keep freed memory for reuse
            (:func:`~nngraph.train.keep_freed_memory`: fewer page faults per step, resident memory stays at
            its peak). It tunes ``mallopt`` for the whole process, so it is off unless asked for (the
            tasks ask for it).
    """

    out_dir: str
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup: int = 0
    grad_clip: float | None = 1.0
    monitor: str = "val_loss"
    mode: str = "min"
    patience: int | None = 10
    seed: int = 0
    device: str = "cpu"
    resume: bool = True
    progress: bool = True
    num_workers: int = 0
    keep_freed_memory: bool = False

    def __post_init__(self):
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"Could not resolve schedule {self.schedule!r} among choices ['constant', 'cosine']")


@dataclass
class FitResult:
    """What :func:`fit` returns; the model passed in holds the best checkpoint's weights afterwards."""

    best_epoch: int
    best_value: float
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    out_dir: str = ""


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (call before building the model)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def to_device(obj: Any, device: torch.device) -> Any:
    """Move a batch (PyG ``Batch``, tensor, or a list/tuple/dict of them) to ``device``."""
    if hasattr(obj, "to") and not isinstance(obj, nn.Module):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def make_loader(dataset: Dataset | Sequence, batch_size: int, shuffle: bool = False, sampler=None,
                num_workers: int = 0) -> DataLoader:
    """A PyG ``DataLoader`` (batches graphs, tensors, tuples of tensors alike)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, num_workers=num_workers)


def _lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch`` (a function of the epoch only, so resuming needs no state)."""
    if epoch < config.warmup:
        return config.lr * (epoch + 1) / (config.warmup + 1)
    if config.schedule == "constant":
        return config.lr
    span = max(config.epochs - config.warmup, 1)
    return 0.5 * config.lr * (1 + math.cos(math.pi * (epoch - config.warmup) / span))


def _better(value: float, best: float | None, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


#: TrainConfig fields that do not change the result, so a run resumes whatever they are (``out_dir``:
#: a moved or copied run directory resumes).
_UNSTORED = ("out_dir", "progress", "keep_freed_memory", "resume")


def _settings_json(settings: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(settings, default=str))


def _stored_settings(config: TrainConfig, settings: dict[str, Any] | None) -> dict[str, Any]:
    """The settings a checkpoint stores and a resumed run must match."""
    out = _settings_json({"train": dataclasses.asdict(config), **(settings or {})})
    for key in _UNSTORED:
        out["train"].pop(key, None)
    return out


def _same_settings(stored: Any, settings: dict[str, Any]) -> bool:
    """Whether a checkpoint's settings match, ignoring the fields :data:`_UNSTORED` (older runs stored them)."""
    if not isinstance(stored, dict) or not isinstance(stored.get("train"), dict):
        return False
    stored = {**stored, "train": {k: v for k, v in stored["train"].items() if k not in _UNSTORED}}
    return stored == settings


def _differences(stored: Any, settings: dict[str, Any]) -> list[str]:
    """The names of the settings (``train.lr``, ``model``, ...) in which a checkpoint's differ from ``settings``."""
    if not isinstance(stored, dict):
        return []
    out = []
    for key in sorted(set(stored) | set(settings)):
        a, b = stored.get(key), settings.get(key)
        if key == "train" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"train.{k}" for k in sorted(set(a) | set(b)) if k not in _UNSTORED and a.get(k) != b.get(k)]
        elif a != b:
            out.append(key)
    return out


def _extends(stored: Any, settings: dict[str, Any]) -> bool:
    """Whether ``settings`` are a checkpoint's with only ``epochs`` raised (a finished run continued)."""
    if not isinstance(stored, dict) or not isinstance(stored.get("train"), dict):
        return False
    old, new = stored["train"].get("epochs"), settings["train"]["epochs"]
    if not isinstance(old, int) or new <= old:
        return False
    return _same_settings({**stored, "train": {**stored["train"], "epochs": new}}, settings)


def fit(model: nn.Module, train_set: Dataset | Sequence, val_set: Dataset | Sequence,
        loss_fn: Callable[[nn.Module, Any], torch.Tensor],
        eval_fn: Callable[[nn.Module, DataLoader], dict[str, float]],
        config: TrainConfig, settings: dict[str, Any] | None = None) -> FitResult:
    """Train ``model`` on ``train_set``, evaluating on ``val_set`` after every epoch.

    Files in ``config.out_dir``: ``best.safetensors`` + ``best.json`` (weights and settings/metrics of the
    best epoch), ``last.*`` (weights, optimizer and counters to resume from), ``metrics.jsonl``.
    Rerunning with the same settings after a kill continues from the last finished epoch; a run that
    finished is not trained again, unless ``epochs`` is raised: then it continues to the new count in the
    same ``out_dir`` (a run stopped early by ``patience`` stays stopped; the cosine schedule continues
    from the current epoch at the new length). Other different settings raise ``ValueError``.

    Args:
        model: the model; it is moved to ``config.device``.
        train_set, val_set: datasets whose items a PyG ``DataLoader`` batches.
        loss_fn: ``(model, batch) -> scalar loss``; must call ``model(...)``.
        eval_fn: ``(model, loader) -> {"val_loss": ..., ...}``; must return ``config.monitor``.
        config: :class:`TrainConfig`.
        settings: JSON-able description of the task and model, stored with every checkpoint.

    Returns:
        :class:`FitResult`; ``model`` holds the best weights.

    Raises:
        FloatingPointError: when a batch's loss or gradient norm is not finite; the step is not taken, so
            the weights stay finite, and ``last`` holds the last finished epoch.
    """
    start = time.perf_counter()
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"fit needs non-empty training and validation sets (got {len(train_set)} and "
                         f"{len(val_set)} items); give the zoo more models or a larger validation fraction")
    device = torch.device(config.device)
    if config.keep_freed_memory and device.type == "cpu":
        keep_freed_memory()
    distributed = dist_utils.setup(device)
    world, rank = dist_utils.world_size(), dist_utils.rank()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {world} processes")
    settings = _stored_settings(config, settings)
    if dist_utils.is_main():
        clean_stale_temps(config.out_dir)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    log = MetricsLog(os.path.join(config.out_dir, "metrics.jsonl"))

    state = _resume(config, settings, model, optimizer, log)

    train_model: nn.Module = model
    if distributed:
        train_model = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    train_loader = make_loader(train_set, config.batch_size // world, sampler=sampler,
                               num_workers=config.num_workers)
    val_loader = make_loader(val_set, config.batch_size, num_workers=config.num_workers)
    show = config.progress and dist_utils.is_main()

    epoch = state["epoch"]
    while not state["finished"] and epoch < config.epochs:
        sampler.set_epoch(epoch)
        torch.manual_seed(config.seed * 100_003 + epoch * 1009 + rank)  # dropout, augmentation
        lr = _lr_at(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loss = _train_epoch(train_model, model, train_loader, loss_fn, optimizer, config, device,
                                  desc=f"epoch {epoch + 1}/{config.epochs}", show=show)

        model.eval()
        with torch.no_grad():
            metrics = eval_fn(model, val_loader)
        metrics = dist_utils.broadcast({k: float(v) for k, v in metrics.items()})
        if config.monitor not in metrics:
            raise KeyError(f"eval_fn returned {sorted(metrics)}, which lacks the monitored {config.monitor!r}")
        epoch += 1
        value = metrics[config.monitor]
        improved = _better(value, state["best_value"], config.mode)
        if improved:
            state.update(best_value=value, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        stop = config.patience is not None and state["bad_epochs"] >= config.patience
        state.update(epoch=epoch, finished=stop or epoch >= config.epochs)
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, **metrics,
               "seconds": round(time.perf_counter() - start, 3)}
        if dist_utils.is_main():
            log.append(row)
            if improved:
                save_checkpoint(config.out_dir, "best", model, {"settings": settings, "epoch": epoch, "metrics": row})
            save_checkpoint(config.out_dir, "last", model, {"settings": settings, **state}, optimizer)
            if show:
                tqdm.write(f"epoch {epoch}: train_loss {train_loss:.4f} "
                           + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        dist_utils.barrier()

    best = load_checkpoint(config.out_dir, "best")
    if best is not None:
        model.load_state_dict(model_state(best[0]))
    history = read_metrics(log.path)
    return FitResult(best_epoch=state["best_epoch"], best_value=state["best_value"], epochs_run=state["epoch"],
                     history=history, seconds=time.perf_counter() - start, out_dir=config.out_dir)


def _resume(config: TrainConfig, settings: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
            log: MetricsLog) -> dict[str, Any]:
    """The loop's counters, from ``out_dir/last`` (loaded into ``model`` and ``optimizer``) when it holds
    this run, fresh otherwise; ``ValueError`` if it holds a run with other settings."""
    state = {"epoch": 0, "best_value": None, "best_epoch": 0, "bad_epochs": 0, "finished": False}
    found = load_checkpoint(config.out_dir, "last") if config.resume else None
    if found is not None:
        tensors, info = found
        extend = not _same_settings(info.get("settings"), settings) and _extends(info.get("settings"), settings)
        if not extend and not _same_settings(info.get("settings"), settings):
            changed = ", ".join(_differences(info.get("settings"), settings)) or "its format"
            raise ValueError(f"{config.out_dir} holds a run with other settings ({changed}); a finished run "
                             "continues only with a larger epochs and nothing else changed; use another out_dir or "
                             "delete it to start over")
        model.load_state_dict(model_state(tensors))
        optimizer_from_flat(optimizer, tensors, info["optimizer"])
        state = {k: info[k] for k in state}
        if extend and (config.patience is None or state["bad_epochs"] < config.patience):
            state["finished"] = False
    elif dist_utils.is_main() and os.path.exists(log.path):
        os.remove(log.path)  # a fresh run
    if dist_utils.is_main() and found is not None:
        log.truncate(state["epoch"])
    dist_utils.barrier()
    return state


def _train_epoch(train_model: nn.Module, model: nn.Module, loader: DataLoader, loss_fn: Callable,
                 optimizer: torch.optim.Optimizer, config: TrainConfig, device: torch.device, desc: str,
                 show: bool) -> float:
    """One pass over ``loader`` (``train_model`` is ``model`` or its DDP wrapper); the mean loss over
    every process.

    Raises:
        FloatingPointError: when a batch's loss or gradient norm is not finite (before the optimizer step).
    """
    train_model.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=desc, disable=not show, leave=False, dynamic_ncols=True)
    for batch in bar:
        batch = to_device(batch, device)
        loss = loss_fn(train_model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # the norm of the gradients averaged over every process: a NaN on one process reaches all of them
        # here, so every process stops together (a check of the local loss alone would hang the others)
        max_norm = math.inf if config.grad_clip is None else config.grad_clip  # inf: only measure the norm
        norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        value = float(loss.detach())
        if not (math.isfinite(value) and math.isfinite(float(norm))):
            raise FloatingPointError(
                f"{desc}, batch {count + 1}: training loss {value}, gradient norm {float(norm)}; stopped before "
                f"the step, so no weights are non-finite ({config.out_dir}/last holds the last finished epoch, "
                "if any). "
                "Usual causes: inputs of huge or non-finite magnitude (scale them), or too high a learning rate")
        optimizer.step()
        total += value
        count += 1
        bar.set_postfix(loss=f"{total / count:.4f}")
    return dist_utils.all_mean(total / max(count, 1))
