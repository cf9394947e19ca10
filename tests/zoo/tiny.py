"""Tiny zoo settings shared by the zoo and data tests (each builds in about a second)."""
from nngraph.zoo import ClassifierZooConfig, INRZooConfig


def tiny_inr(**overrides) -> INRZooConfig:
    """12 INRs: 6 digits x 2 inits, 8x8 images, fitted in chunks of 4."""
    settings = dict(max_images=6, inrs_per_image=2, resolution=8, hidden=[8, 8], target_psnr=25.0,
                    max_steps=80, lr=2e-3, chunk_size=4, seed=3)
    return INRZooConfig(**{**settings, **overrides})


def tiny_classifiers(**overrides) -> ClassifierZooConfig:
    """5 runs of at most 2 epochs with up to 2 checkpoints each."""
    settings = dict(num_runs=5, max_epochs=2, checkpoints=2, max_params=3000, seed=5)
    return ClassifierZooConfig(**{**settings, **overrides})


def checksums(zoo) -> dict[str, str]:
    return {e["id"]: e["sha256"] for e in zoo.entries}


def tiny_recurrent(**overrides):
    """4 recurrent runs of at most 2 epochs with up to 2 checkpoints each."""
    from nngraph.zoo import RecurrentZooConfig

    settings = dict(num_runs=4, max_epochs=2, checkpoints=2, max_params=3000, seed=7)
    return RecurrentZooConfig(**{**settings, **overrides})
