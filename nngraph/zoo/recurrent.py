"""The recurrent classifier zoo: RNN / LSTM / GRU classifiers that read an image row by row.

The scikit-learn digits (8x8) are sequences of 8 rows of 8 features; run ``r`` (id prefix
``rnn-<r:05d>``) draws its cell (``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``), width, depth, direction,
readout and hyperparameters from ``derive_seed(seed, "rnn", r)``, trains, and stores a checkpoint at each
of its ``checkpoint_epochs`` (ids ``rnn-<r:05d>-e<epoch:03d>``). The zoo is a classifier zoo (its manifest
has ``test_acc``; ``kind`` is ``"classifier"``), so accuracy prediction reads it as it reads
:mod:`nngraph.zoo.classifiers`' zoos; every entry's ``family`` is its cell, for per-cell results and
held-out cells. Models are :class:`~nngraph.zoo.blocks.SequenceClassifier` (spec family ``rnn``).
Training and storage are :mod:`nngraph.zoo.classifiers`' (one thread per run, resumable units).
"""
from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from nngraph.zoo.classifiers import RunTrainer, classifier_data, sample_hparams
from nngraph.zoo.jobs import Unit, building, run_units
from nngraph.zoo.seeds import derive_seed, random_split
from nngraph.zoo.blocks import CELLS
from nngraph.zoo.specs import count_parameters
from nngraph.zoo.storage import write_config

__all__ = ["RecurrentZooConfig", "build_recurrent_zoo", "sample_recurrent_run"]


@dataclass
class RecurrentZooConfig:
    """Settings of a recurrent classifier zoo (all of them are stored in ``zoo.json``).

    Args:
        source: ``"digits"`` or an ``.npz`` path with ``images`` and ``labels`` (rows are the steps).
        resolution: images resized to ``resolution x resolution`` (``None``: native, 8x8 for digits).
        num_runs: training runs (architectures x hyperparameters).
        checkpoints: checkpoints stored per run, at evenly spaced epochs ending with the last one.
        max_epochs: upper end of the sampled epoch counts.
        max_params: architectures with more parameters are re-drawn.
        cells: the cells runs draw from.
        data_split: fraction of the images the classifiers train on (the rest is their test set).
        split: fractions of runs in the zoo's train / val / test.
        seed: global seed.
        first_run: index of the zoo's first run; the zoo holds runs ``first_run .. first_run + num_runs - 1``.
            A zoo with the same settings and ``first_run`` past another's last run holds new runs of the same
            distribution, trained and tested on the same images: more training models for that zoo
            (``split=[1, 0, 0]``) without changing its splits. Stored in ``zoo.json`` only when set, so zoos
            built before it existed resume.
    """

    source: str = "digits"
    resolution: int | None = None
    num_runs: int = 300
    checkpoints: int = 3
    max_epochs: int = 20
    max_params: int = 6000
    cells: list[str] = field(default_factory=lambda: sorted(CELLS))
    data_split: float = 0.7
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    seed: int = 0
    first_run: int = 0

    @classmethod
    def small(cls, **overrides) -> "RecurrentZooConfig":
        """A small zoo: 24 runs of at most 8 epochs, 2 checkpoints each."""
        return cls(**{"num_runs": 24, "max_epochs": 8, "checkpoints": 2, **overrides})


def _sample_spec(rng: random.Random, config: RecurrentZooConfig, in_shape: list[int], num_classes: int) -> dict:
    layers = rng.choice([1, 1, 2])
    return {"family": "rnn", "in_shape": in_shape, "num_classes": num_classes, "cell": rng.choice(sorted(config.cells)),
            "hidden": rng.choice([8, 12, 16, 24, 32]), "num_layers": layers, "bidirectional": rng.random() < 0.3,
            "readout": rng.choice(["last", "h_n"]), "dropout": rng.choice([0.0, 0.0, 0.1]) if layers > 1 else 0.0}


def sample_recurrent_run(config: RecurrentZooConfig, run: int, in_shape: list[int], num_classes: int) -> dict[str, Any]:
    """The architecture spec and hyperparameters of run ``run`` (a function of the seed and ``run`` only).

    Returns:
        ``{"spec": ..., "hparams": ...}``, hyperparameters as :func:`nngraph.zoo.classifiers.train_run` reads them.
    """
    unknown = sorted(set(config.cells) - set(CELLS))
    if unknown or not config.cells:
        raise ValueError(f"Could not resolve cells {unknown or config.cells} among choices {sorted(CELLS)}")
    rng = random.Random(derive_seed(config.seed, "rnn", run))
    while True:
        spec = _sample_spec(rng, config, in_shape, num_classes)
        if count_parameters(spec) <= config.max_params:
            break
    # recurrent weights: a narrower range of initial scales than the CNNs'
    hparams = sample_hparams(rng, config, derive_seed(config.seed, "rnn-train", run), adam_lr=(3e-4, 3e-2),
                             sgd_lr=(3e-3, 3e-1), init_scale=(0.5, 2.0))
    return {"spec": spec, "hparams": hparams}


def _model_ids(config: RecurrentZooConfig, run: int, in_shape: list[int], num_classes: int) -> tuple[str, ...]:
    epochs = sample_recurrent_run(config, run, in_shape, num_classes)["hparams"]["checkpoint_epochs"]
    return tuple(f"rnn-{run:05d}-e{e:03d}" for e in epochs)


def build_recurrent_zoo(out: str, config: RecurrentZooConfig | None = None, shard=None,
                        max_models: int | None = None, progress: bool = True, workers: int = 1) -> int:
    """Build (or continue building) a recurrent classifier zoo in ``out``; returns the number of models
    stored now. Arguments as :func:`~nngraph.zoo.classifiers.build_classifier_zoo`.

    Raises:
        ZooError: if another process is building the same shard in ``out`` (:func:`~nngraph.zoo.jobs.building`).
    """
    with building(out, shard):
        config = config or RecurrentZooConfig()
        images, _ = classifier_data(config)
        in_shape, num_classes = list(images.images.shape[1:]), images.num_classes
        settings = {"kind": "classifier", "architectures": "recurrent", "version": 1, **dataclasses.asdict(config),
                    "data_fingerprint": images.fingerprint, "in_shape": in_shape, "num_classes": num_classes}
        if config.first_run < 0:
            raise ValueError(f"first_run must be >= 0, got {config.first_run}")
        if not config.first_run:
            del settings["first_run"]  # not set: zoo.json as before the option existed
        os.makedirs(out, exist_ok=True)
        write_config(out, settings)
        runs = range(config.first_run, config.first_run + config.num_runs)
        run_split = dict(zip(runs, random_split(config.num_runs, config.split, config.seed)))  # run -> split
        units = [Unit(r, _model_ids(config, r, in_shape, num_classes)) for r in runs]
        trainer = RunTrainer(config, run_split, sample_recurrent_run, "rnn", "cell")
        return run_units(out, units, trainer, shard=shard, max_models=max_models,
                         progress=progress, desc="recurrent checkpoints", workers=workers)
