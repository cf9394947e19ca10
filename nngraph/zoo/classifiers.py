"""The classifier zoo: small classifiers of mixed architectures and hyperparameters on one image set.

Run ``r`` (id prefix ``clf-<r:05d>``) draws its architecture and hyperparameters from
``derive_seed(seed, "clf", r)``, trains, and stores a checkpoint at each of its ``checkpoint_epochs``
(ids ``clf-<r:05d>-e<epoch:03d>``). A run is one :class:`~nngraph.zoo.jobs.Unit`; all of its
checkpoints fall in the same split of the zoo. Training runs on one thread so results do not depend
on the machine's core count; use ``workers`` to train runs in parallel processes.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nngraph.zoo.images import ImageSet, load_images
from nngraph.zoo.jobs import Unit, building, run_units
from nngraph.zoo.seeds import derive_seed, random_split, stratified_split
from nngraph.zoo.specs import ACTIVATIONS, build_model, count_parameters
from nngraph.zoo.storage import write_config

__all__ = ["ClassifierZooConfig", "build_classifier_zoo", "sample_run", "train_run", "classifier_data",
           "evaluate"]


@dataclass
class ClassifierZooConfig:
    """Settings of a classifier zoo (all of them are stored in ``zoo.json``).

    Args:
        source: ``"digits"`` or an ``.npz`` path with ``images`` and ``labels``.
        resolution: images resized to ``resolution x resolution`` (``None``: native, 8x8 for digits).
        num_runs: training runs (architectures x hyperparameters).
        checkpoints: checkpoints stored per run, at evenly spaced epochs ending with the last one.
        max_epochs: upper end of the sampled epoch counts.
        max_params: architectures with more parameters are re-drawn.
        data_split: fraction of the images the classifiers train on (the rest is their test set).
        split: fractions of runs in the zoo's train / val / test.
        seed: global seed.
        families: sampling weight of each architecture family (``mlp``, ``cnn``, ``resnet``, ``vit``, ``gated``;
            :mod:`~nngraph.zoo.specs`). ``None``: ``mlp`` 0.35, ``cnn`` 0.35, ``resnet`` 0.3.
        kernel_sizes: convolution kernel sizes to draw from (``None``: 3 and 5).
        data_fractions: fractions of the training images a run trains on, drawn per run (``None``: all).
        first_run: index of the zoo's first run; the zoo holds runs ``first_run .. first_run + num_runs - 1``.
            A zoo with the same settings and ``first_run`` past another's last run holds new runs of the same
            distribution, trained and tested on the same images: more training models for that zoo
            (``split=[1, 0, 0]``) without changing its splits.
        The last four are stored in ``zoo.json`` only when set (zoos built before they existed resume), and
        a zoo without them draws exactly the runs it drew before.
    """

    source: str = "digits"
    resolution: int | None = None
    num_runs: int = 300
    checkpoints: int = 3
    max_epochs: int = 20
    max_params: int = 6000
    data_split: float = 0.7
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    seed: int = 0
    families: dict[str, float] | None = None
    kernel_sizes: list[int] | None = None
    data_fractions: list[float] | None = None
    first_run: int = 0

    @classmethod
    def wild(cls, **overrides) -> "ClassifierZooConfig":
        """A Wild-Park-style zoo of about 10,000 checkpoints: 2,800 runs of five families (MLPs, CNNs and
        residual CNNs with 3/5/7 kernels, patch transformers, gated MLPs), 4 checkpoints each, trained on
        10-100 % of the training images."""
        return cls(**{"num_runs": 2800, "checkpoints": 4, "max_params": 8000,
                      "families": {"mlp": 0.2, "cnn": 0.25, "resnet": 0.2, "vit": 0.15, "gated": 0.2},
                      "kernel_sizes": [3, 5, 7], "data_fractions": [0.1, 0.25, 0.5, 1.0], **overrides})

    @classmethod
    def small(cls, **overrides) -> "ClassifierZooConfig":
        """A zoo that builds in well under a minute: 24 runs of at most 8 epochs, 2 checkpoints each."""
        return cls(**{"num_runs": 24, "max_epochs": 8, "checkpoints": 2, **overrides})


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


#: Families :class:`ClassifierZooConfig` can draw, and the weights of a config that names none.
SAMPLED_FAMILIES = ("mlp", "cnn", "resnet", "vit", "gated")
DEFAULT_FAMILY_WEIGHTS = {"mlp": 0.35, "cnn": 0.35, "resnet": 0.3}


def _sample_spec(rng: random.Random, in_shape: list[int], num_classes: int,
                 config: "ClassifierZooConfig | None" = None) -> dict[str, Any]:
    weights = (config.families if config is not None and config.families else DEFAULT_FAMILY_WEIGHTS)
    unknown = sorted(set(weights) - set(SAMPLED_FAMILIES))
    if unknown:
        raise ValueError(f"Could not resolve families {unknown} among choices {list(SAMPLED_FAMILIES)}")
    family = rng.choices(list(weights), weights=list(weights.values()))[0]
    if family == "vit":
        return _sample_vit(rng, in_shape, num_classes)
    act = rng.choice(sorted(ACTIVATIONS))
    base = {"family": family, "in_shape": in_shape, "num_classes": num_classes, "act": act,
            "dropout": rng.choice([0.0, 0.0, 0.1, 0.3])}
    if family == "mlp":
        depth = rng.randint(1, 3)
        return {**base, "hidden": [rng.choice([8, 16, 24, 32, 48]) for _ in range(depth)],
                "norm": rng.choice(["none", "batch", "layer"])}
    if family == "gated":
        return {"family": "gated", "in_shape": in_shape, "num_classes": num_classes, "act": act,
                "dim": rng.choice([8, 16, 24, 32]), "hidden": rng.choice([8, 16, 32, 48]), "depth": rng.randint(1, 3)}
    norm = rng.choice(["none", "batch"])
    head = rng.choice(["gap", "flatten"])
    k = rng.choice((config.kernel_sizes if config is not None and config.kernel_sizes else [3, 5]))
    if family == "cnn":
        depth = rng.randint(1, 3)
        strides = [rng.choice([1, 2])] + [2] * (depth - 1)
        return {**base, "channels": [rng.choice([4, 8, 12, 16]) for _ in range(depth)], "strides": strides,
                "kernel_size": k, "norm": norm, "head": head}
    return {**base, "width": rng.choice([4, 6, 8, 12]), "blocks": rng.randint(1, 2),
            "stem_stride": rng.choice([1, 2]), "kernel_size": k, "norm": norm, "head": head}


def _sample_vit(rng: random.Random, in_shape: list[int], num_classes: int) -> dict[str, Any]:
    patches = [p for p in (2, 4) if in_shape[1] % p == 0 and in_shape[2] % p == 0] or [1]
    dim = rng.choice([8, 12, 16, 24, 32])
    return {"family": "vit", "in_shape": in_shape, "num_classes": num_classes, "patch": rng.choice(patches),
            "dim": dim, "depth": rng.randint(1, 2), "heads": rng.choice([h for h in (1, 2, 4) if dim % h == 0]),
            "mlp_ratio": rng.choice([1, 2]), "act": rng.choice(["relu", "gelu"]), "dropout": rng.choice([0.0, 0.1])}


def sample_hparams(rng: random.Random, config, seed: int, adam_lr=(1e-4, 3e-2), sgd_lr=(1e-3, 3e-1),
                   init_scale=(0.25, 4.0)) -> dict[str, Any]:
    """The training hyperparameters of one run, drawn from ``rng`` in a fixed order (optimizer, learning rate
    from the optimizer's log-uniform range, epochs up to ``config.max_epochs``, weight decay, batch size, the
    factor on the initial weights, label noise), with up to ``config.checkpoints`` checkpoint epochs spread
    evenly and ending with the last one; ``seed`` seeds the run's training. Shared by the classifier and the
    recurrent zoos, whose runs differ in their spec and ranges only."""
    optimizer = rng.choice(["adam", "sgd"])
    lr = _log_uniform(rng, *adam_lr) if optimizer == "adam" else _log_uniform(rng, *sgd_lr)
    epochs = rng.randint(1, config.max_epochs)
    n_ckpt = min(config.checkpoints, epochs)
    return {
        "optimizer": optimizer,
        "lr": lr,
        "weight_decay": rng.choice([0.0, _log_uniform(rng, 1e-5, 1e-1)]),
        "batch_size": rng.choice([32, 64, 128]),
        "epochs": epochs,
        "checkpoint_epochs": sorted({max(1, round(epochs * (c + 1) / n_ckpt)) for c in range(n_ckpt)}),
        "init_scale": _log_uniform(rng, *init_scale),
        "label_noise": rng.choice([0.0, rng.uniform(0.0, 0.8)]),
        "seed": seed,
    }


def sample_run(config: ClassifierZooConfig, run: int, in_shape: list[int], num_classes: int) -> dict[str, Any]:
    """The architecture spec and hyperparameters of run ``run`` (a function of the seed and ``run`` only).

    Returns:
        ``{"spec": ..., "hparams": ...}``.
    """
    rng = random.Random(derive_seed(config.seed, "clf", run))
    while True:
        spec = _sample_spec(rng, in_shape, num_classes, config)
        if count_parameters(spec) <= config.max_params:
            break
    hparams = sample_hparams(rng, config, derive_seed(config.seed, "clf-train", run))
    if config.data_fractions:  # drawn last: zoos without the option draw what they drew before
        hparams["data_fraction"] = rng.choice(config.data_fractions)
    return {"spec": spec, "hparams": hparams}


def classifier_data(config: ClassifierZooConfig) -> tuple[ImageSet, torch.Tensor]:
    """The images and a ``(N,)`` bool mask of the classifiers' training images (the rest are test)."""
    images = load_images(config.source, config.resolution)
    names = stratified_split(images.labels, [config.data_split, 0.0, 1.0 - config.data_split], config.seed)
    return images, torch.tensor([n == "train" for n in names])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of a classifier in eval mode on ``x: (N, C, H, W)``, ``y: (N,)``."""
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    for s in range(0, len(x), batch_size):
        logits = model(x[s:s + batch_size])  # (b, classes)
        loss += F.cross_entropy(logits, y[s:s + batch_size], reduction="sum").item()
        correct += int((logits.argmax(-1) == y[s:s + batch_size]).sum())
    model.train(was_training)
    return correct / len(x), loss / len(x)


def train_run(run_config: dict[str, Any], x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
              y_test: torch.Tensor, num_classes: int) -> list[tuple[dict[str, Any], dict[str, torch.Tensor]]]:
    """Train one run; returns ``(metrics, state_dict)`` at each checkpoint epoch.

    The metrics are ``epoch, train_acc`` (clean labels), ``train_loss`` (mean loss of the epoch on the
    noisy labels the model was trained on), ``test_acc``, ``test_loss``.
    """
    spec, hp = run_config["spec"], run_config["hparams"]
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(hp["seed"])
        model = build_model(spec)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.mul_(hp["init_scale"])
        g = torch.Generator().manual_seed(hp["seed"])
        if hp.get("data_fraction", 1.0) < 1.0:  # the run's subset of the training images
            keep = torch.randperm(len(x_train), generator=g)[: max(2, round(hp["data_fraction"] * len(x_train)))]
            x_train, y_train = x_train[keep], y_train[keep]
        y_noisy = y_train.clone()
        flip = torch.rand(len(y_train), generator=g) < hp["label_noise"]
        y_noisy[flip] = torch.randint(0, num_classes, (int(flip.sum()),), generator=g)
        if hp["optimizer"] == "adam":
            opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        else:
            opt = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=0.9, weight_decay=hp["weight_decay"])
        bs = hp["batch_size"]
        for epoch in range(1, hp["epochs"] + 1):
            model.train()
            order = torch.randperm(len(x_train), generator=g)
            total, count = 0.0, 0
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                if len(idx) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                    continue  # BatchNorm cannot train on a batch of one
                loss = F.cross_entropy(model(x_train[idx]), y_noisy[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            if epoch in hp["checkpoint_epochs"]:
                train_acc, _ = evaluate(model, x_train, y_train)
                test_acc, test_loss = evaluate(model, x_test, y_test)
                train_loss = total / max(count, 1)
                metrics = {"epoch": epoch, "train_acc": train_acc, "test_acc": test_acc,
                           "train_loss": train_loss if math.isfinite(train_loss) else None,
                           "test_loss": test_loss if math.isfinite(test_loss) else None}
                out.append((metrics, {k: v.detach().clone() for k, v in model.state_dict().items()}))
    return out


class RunTrainer:
    """Picklable unit computation of a zoo of training runs (so runs can train in worker processes): run
    ``unit.index`` drawn by ``sample(config, run, in_shape, num_classes)``, trained by :func:`train_run`, one
    manifest entry per checkpoint (ids ``<prefix>-<run:05d>-e<epoch:03d>``, ``family`` the spec's
    ``family_key``). ``run_split[run]`` is the split of run ``run`` (a list, or a dict when the runs do not
    start at 0). Shared by the classifier and the recurrent zoos."""

    def __init__(self, config, run_split, sample=None, prefix: str = "clf", family_key: str = "family"):
        self.config = config
        self.run_split = run_split
        self.sample = sample or sample_run
        self.prefix, self.family_key = prefix, family_key
        self._data = None

    def __call__(self, unit: Unit):
        if self._data is None:
            images, train_mask = classifier_data(self.config)
            self._data = (images.images[train_mask], images.labels[train_mask],
                          images.images[~train_mask], images.labels[~train_mask], images.num_classes)
        x_tr, y_tr, x_te, y_te, num_classes = self._data
        run = unit.index
        rc = self.sample(self.config, run, list(x_tr.shape[1:]), num_classes)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            checkpoints = train_run(rc, x_tr, y_tr, x_te, y_te, num_classes)
        finally:
            torch.set_num_threads(threads)
        results = []
        for metrics, state in checkpoints:
            epoch = metrics["epoch"]
            entry = {"id": f"{self.prefix}-{run:05d}-e{epoch:03d}", "index": run * 1000 + epoch, "run": run,
                     "family": rc["spec"][self.family_key], "spec": rc["spec"], "hparams": rc["hparams"],
                     "final": epoch == rc["hparams"]["epochs"], "split": self.run_split[run],
                     "num_params": sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked")),
                     **metrics}
            results.append((entry, state))
        return results


def run_model_ids(config: ClassifierZooConfig, run: int, in_shape: list[int], num_classes: int) -> tuple[str, ...]:
    epochs = sample_run(config, run, in_shape, num_classes)["hparams"]["checkpoint_epochs"]
    return tuple(f"clf-{run:05d}-e{e:03d}" for e in epochs)


def build_classifier_zoo(out: str, config: ClassifierZooConfig | None = None, shard=None,
                         max_models: int | None = None, progress: bool = True, workers: int = 1) -> int:
    """Build (or continue building) a classifier zoo in ``out``; returns the number of models stored now.

    Args:
        out: the zoo directory (created if needed).
        config: the settings. (default: :class:`ClassifierZooConfig` ``()``)
        shard: ``"i/n"`` to train only every n-th run.
        max_models: stop after storing this many checkpoints.
        progress: show a progress bar.
        workers: processes training runs in parallel (each on one thread).

    Raises:
        ZooError: if another process is building the same shard in ``out`` (:func:`~nngraph.zoo.jobs.building`).
    """
    with building(out, shard):
        return _build_classifier_zoo(out, config, shard, max_models, progress, workers)


def _build_classifier_zoo(out: str, config: ClassifierZooConfig | None = None, shard=None,
                          max_models: int | None = None, progress: bool = True, workers: int = 1) -> int:
    """build_classifier_zoo under the build lock."""
    config = config or ClassifierZooConfig()
    images, _ = classifier_data(config)
    in_shape, num_classes = list(images.images.shape[1:]), images.num_classes
    settings = {"kind": "classifier", "version": 1, **dataclasses.asdict(config),
                "data_fingerprint": images.fingerprint, "in_shape": in_shape, "num_classes": num_classes}
    for key in ("families", "kernel_sizes", "data_fractions"):
        if settings[key] is None:
            del settings[key]  # not set: zoo.json as before the option existed
    if config.first_run < 0:
        raise ValueError(f"first_run must be >= 0, got {config.first_run}")
    if not config.first_run:
        del settings["first_run"]
    os.makedirs(out, exist_ok=True)
    write_config(out, settings)
    runs = range(config.first_run, config.first_run + config.num_runs)
    run_split = dict(zip(runs, random_split(config.num_runs, config.split, config.seed)))  # run -> split
    units = [Unit(r, run_model_ids(config, r, in_shape, num_classes)) for r in runs]
    return run_units(out, units, RunTrainer(config, run_split), shard=shard, max_models=max_models,
                     progress=progress, desc="classifier checkpoints", workers=workers)
