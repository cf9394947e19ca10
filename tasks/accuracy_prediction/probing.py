"""The functional baseline ("vanilla probing"): a classifier described by its outputs on fixed probe inputs.

Each model is run on the same ``K`` images (drawn once from the images its zoo's classifiers trained on); its
``K x C`` softmax outputs, flattened, are the features a plain MLP or gradient boosting regresses the test
accuracy from. It reads the function, not the weights: the rival ProbeGen reports as strong.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from nngraph.zoo import ClassifierZooConfig, Zoo
from nngraph.zoo.classifiers import classifier_data

__all__ = ["zoo_images", "probe_images", "output_features"]


def zoo_images(zoo_root: str, needed_for: str = "the probing baseline"):
    """``(images, train)``: the zoo's :class:`~nngraph.zoo.images.ImageSet` and a ``(N,)`` bool mask of the
    classifiers' training images (the rest are their test images).

    Raises:
        ValueError: naming ``needed_for``, if the zoo was not built by ``nngraph.zoo classifiers`` (its images
            are unknown).
    """
    config = Zoo(zoo_root).config
    names = {f.name for f in dataclasses.fields(ClassifierZooConfig)}
    if config.get("kind") != "classifier" or "data_split" not in config:
        raise ValueError(f"{zoo_root}: {needed_for} needs the images the zoo's classifiers trained on; "
                         "only zoos built by 'nngraph.zoo classifiers' record them")
    return classifier_data(ClassifierZooConfig(**{k: v for k, v in config.items() if k in names}))


def probe_images(zoo_root: str, num: int, seed: int = 0) -> torch.Tensor:
    """``(num, C, H, W)``: images the zoo's classifiers trained on, the same for every model (fixed by ``seed``).

    Raises:
        ValueError: if the zoo was not built by ``nngraph.zoo classifiers`` (its images are unknown).
    """
    images, train = zoo_images(zoo_root)
    pool = train.nonzero().flatten()  # (N_train,)
    pick = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:num]]
    return images.images[pick]  # (num, C, H, W)


@torch.no_grad()
def output_features(models: Sequence[nn.Module], inputs: torch.Tensor) -> torch.Tensor:
    """``(M, K * C)``: each model's softmax outputs on ``inputs`` ``(K, ...)``, in eval mode; a model whose
    outputs are not finite (diverged) reads as uniform."""
    rows = []
    for model in models:
        was_training = model.training
        model.eval()
        probs = torch.softmax(model(inputs).float(), dim=-1)  # (K, C)
        model.train(was_training)
        rows.append(torch.nan_to_num(probs, nan=1.0 / probs.shape[-1]).reshape(-1))
    return torch.stack(rows)
