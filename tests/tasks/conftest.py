"""Tiny zoos shared by the task tests (built once per session, in seconds)."""
from __future__ import annotations

import pytest

from nngraph.zoo import ClassifierZooConfig, INRZooConfig, build_classifier_zoo, build_inr_zoo


@pytest.fixture(scope="session")
def inr_zoo(tmp_path_factory) -> str:
    """30 digits, one SIREN 2 -> 8 -> 8 -> 1 each, fitted for a few steps."""
    root = str(tmp_path_factory.mktemp("zoo-inr"))
    build_inr_zoo(root, INRZooConfig(max_images=30, inrs_per_image=1, hidden=[8, 8], max_steps=30, target_psnr=25,
                                     lr=5e-3, split=[0.5, 0.2, 0.3]), progress=False)
    return root


@pytest.fixture(scope="session")
def clf_zoo(tmp_path_factory) -> str:
    """10 small classifier runs of 1-2 epochs, one checkpoint each."""
    root = str(tmp_path_factory.mktemp("zoo-clf"))
    build_classifier_zoo(root, ClassifierZooConfig(num_runs=10, max_epochs=2, checkpoints=1, max_params=3000, split=[0.5, 0.2, 0.3]),
                         progress=False)
    return root
