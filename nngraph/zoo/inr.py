"""The INR zoo: several SIRENs per image, each from its own random initialisation.

Model ``index = image * inrs_per_image + replica`` has id ``inr-<index:07d>`` and the seed
``derive_seed(seed, "inr", index)``. INRs are fitted in chunks of ``chunk_size`` consecutive
indices (a chunk is one :class:`~nngraph.zoo.jobs.Unit`), so sharding and resumption give the same
weights. Splits are made by image and stratified by class: every INR of an image is in its split.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field

import torch
from safetensors.torch import save

from nngraph.zoo.images import ImageSet, coordinate_grid, load_images
from nngraph.zoo.jobs import Unit, building, run_units
from nngraph.zoo.seeds import derive_seed, stratified_split
from nngraph.zoo.siren import INIT_SCHEMES, fit_sirens, siren_state_dict
from nngraph.zoo.specs import siren_spec
from nngraph.io import atomic_write
from nngraph.zoo.storage import sha256_bytes, sha256_file, write_config

__all__ = ["INRZooConfig", "build_inr_zoo", "zoo_images", "IMAGES_FILE", "SPLIT_SCOPES"]

#: Over which images an INR zoo draws its splits (:class:`INRZooConfig` ``split_scope``).
SPLIT_SCOPES = ("zoo", "source")

IMAGES_FILE = "images.safetensors"


@dataclass
class INRZooConfig:
    """Settings of an INR zoo (all of them are stored in ``zoo.json``).

    Args:
        source: ``"digits"`` or an ``.npz`` path with ``images`` and ``labels``.
        resolution: images are resized to ``resolution x resolution`` (bilinear).
        hidden: hidden widths of the SIREN ``2 -> hidden... -> C``.
        w0: SIREN frequency factor.
        inrs_per_image: independently initialised INRs fitted to each image.
        max_images: use only the first ``max_images`` images (``None``: all).
        split_scope: ``"zoo"``: the splits are drawn over the zoo's own images; ``"source"``: over every
            image of ``source``, then cut to the first ``max_images``, so the zoo's test images are test
            images of the zoo of all images with the same ``split`` and ``seed`` (a model trained on that
            zoo can be evaluated on this one's test split without having seen its images). ``zoo.json``
            holds it only when it is not ``"zoo"``.
        target_psnr: an INR stops training once its PSNR (dB, pixels in [0, 1]) reaches this.
        max_steps: Adam steps after which an INR stops regardless.
        lr: Adam learning rate.
        split: fractions of images in train / val / test.
        seed: global seed; every INR's seed derives from it and the INR's index.
        chunk_size: INRs fitted together in one batch (part of the result: keep it when resuming).
        init: initialisation scheme, ``"siren"`` or ``"dwsnets"`` (:func:`~nngraph.zoo.siren.init_siren`).
            ``zoo.json`` holds it only when it is not ``"siren"`` (zoos built before it existed still resume).
    """

    source: str = "digits"
    resolution: int = 16
    hidden: list[int] = field(default_factory=lambda: [32, 32])
    w0: float = 30.0
    inrs_per_image: int = 4
    max_images: int | None = None
    split_scope: str = "zoo"
    target_psnr: float = 45.0
    max_steps: int = 500
    lr: float = 1e-3
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    seed: int = 0
    chunk_size: int = 512
    init: str = "siren"

    @classmethod
    def small(cls, **overrides) -> "INRZooConfig":
        """A zoo that builds in well under a minute: 200 images, 2 INRs each."""
        return cls(**{"max_images": 200, "inrs_per_image": 2, **overrides})


def zoo_images(config: INRZooConfig) -> ImageSet:
    """The images an INR zoo is fitted to (after resizing and ``max_images``)."""
    images, _ = _images_and_splits(config)
    return images


def _images_and_splits(config: INRZooConfig) -> tuple[ImageSet, list[str]]:
    """The zoo's images and the split of each image (see ``split_scope``)."""
    if config.split_scope not in SPLIT_SCOPES:
        raise ValueError(f"Could not resolve split_scope {config.split_scope!r} among choices {list(SPLIT_SCOPES)}")
    images = load_images(config.source, config.resolution)
    source_splits = stratified_split(images.labels, config.split, config.seed)
    if config.max_images is not None:
        n = config.max_images
        images = dataclasses.replace(images, images=images.images[:n].contiguous(), labels=images.labels[:n])
        source_splits = source_splits[:n]
    if config.split_scope == "source":
        return images, source_splits
    return images, stratified_split(images.labels, config.split, config.seed)


def build_inr_zoo(out: str, config: INRZooConfig | None = None, shard=None, max_models: int | None = None,
                  progress: bool = True, device: str | torch.device = "cpu") -> int:
    """Build (or continue building) an INR zoo in ``out``; returns the number of INRs stored now.

    Args:
        out: the zoo directory (created if needed).
        config: the settings. (default: :class:`INRZooConfig` ``()``)
        shard: ``"i/n"`` to build only every n-th chunk.
        max_models: stop after storing this many INRs.
        progress: show a progress bar.
        device: where to fit (the weights are stored on CPU).

    A resumed build checks ``images.safetensors`` against the source's images and rewrites it (with a
    warning) if it was truncated or changed.

    Raises:
        ZooError: if another process is building the same shard in ``out`` (:func:`~nngraph.zoo.jobs.building`).
    """
    with building(out, shard):
        return _build_inr_zoo(out, config, shard, max_models, progress, device)


def _build_inr_zoo(out: str, config: INRZooConfig | None = None, shard=None, max_models: int | None = None,
                   progress: bool = True, device: str | torch.device = "cpu") -> int:
    """build_inr_zoo under the build lock."""
    config = config or INRZooConfig()
    if config.init not in INIT_SCHEMES:
        raise ValueError(f"Could not resolve init scheme {config.init!r} among choices {list(INIT_SCHEMES)}")
    images, split_of_image = _images_and_splits(config)
    n_img, channels = images.images.shape[0], images.images.shape[1]
    spec = siren_spec(2, config.hidden, channels, config.w0)
    settings = {"kind": "inr", "version": 1, **dataclasses.asdict(config), "spec": spec,
                "data_fingerprint": images.fingerprint, "num_images": n_img,
                "num_models": n_img * config.inrs_per_image}
    if config.init == "siren":
        del settings["init"]  # the default before the option existed: keeps older zoo.json files valid
    if config.split_scope == "zoo":
        del settings["split_scope"]  # likewise
    os.makedirs(out, exist_ok=True)
    write_config(out, settings)
    images_path = os.path.join(out, IMAGES_FILE)
    data = save({"images": images.images, "labels": images.labels})  # the same bytes for the same images
    if not os.path.exists(images_path):
        atomic_write(images_path, data)
    elif not os.path.isfile(images_path) or sha256_file(images_path) != sha256_bytes(data):  # damaged: restored
        warnings.warn(f"{images_path} was damaged (not the images of the zoo's source); rewritten from "
                      f"{config.source}", stacklevel=3)
        atomic_write(images_path, data)

    k = config.inrs_per_image
    total = n_img * k
    units = [Unit(u, tuple(f"inr-{i:07d}" for i in range(s, min(s + config.chunk_size, total))))
             for u, s in enumerate(range(0, total, config.chunk_size))]
    coords = coordinate_grid(config.resolution, config.resolution)  # (P, 2)
    targets_all = images.images.flatten(2).transpose(1, 2)  # (N, C, H, W) -> (N, P, C)

    def compute(unit: Unit):
        start = unit.index * config.chunk_size
        index = torch.arange(start, start + len(unit.model_ids))  # (B,)
        image = index // k
        seeds = [derive_seed(config.seed, "inr", int(i)) for i in index]
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        fit = fit_sirens(spec, coords, targets_all[image].to(device), gens, config.target_psnr,
                         config.max_steps, config.lr, init=config.init)
        params = [p.cpu() for p in fit.params]
        results = []
        for b, i in enumerate(index.tolist()):
            img = int(image[b])
            entry = {"id": unit.model_ids[b], "index": i, "family": "siren", "spec": spec,
                     "label": int(images.labels[img]), "image_index": img, "replica": i % k,
                     "split": split_of_image[img], "seed": seeds[b],
                     "psnr": round(float(fit.psnr[b]), 4), "steps": int(fit.steps[b])}
            results.append((entry, siren_state_dict(params, b)))
        return results

    return run_units(out, units, compute, shard=shard, max_models=max_models, progress=progress, desc="INRs")
