"""Seeds and splits that depend only on the global seed, never on sharding or resumption."""
from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "generator", "stratified_split", "random_split"]

SPLITS = ("train", "val", "test")


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed from the global seed and any keys (e.g. ``("inr", model_index)``)."""
    text = repr((int(seed),) + tuple(keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, *keys) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def _cut(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Split ``n`` items into ``len(fractions)`` counts by largest remainder."""
    raw = [f * n for f in fractions]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])[: n - sum(counts)]:
        counts[i] += 1
    return counts


def stratified_split(labels: torch.Tensor, fractions=(0.7, 0.1, 0.2), seed: int = 0) -> list[str]:
    """Assign each item (e.g. each image) to ``train``/``val``/``test``, per class, fixed by ``seed``.

    Args:
        labels: ``(N,)`` class of each item.
        fractions: fractions of train, val, test (normalised to sum to 1).

    Returns:
        A list of ``N`` split names.
    """
    total = float(sum(fractions))
    fractions = tuple(f / total for f in fractions)
    out = [""] * len(labels)
    for c in sorted(set(labels.tolist())):
        members = (labels == c).nonzero().flatten()
        order = members[torch.randperm(len(members), generator=generator(seed, "split", c))]
        start = 0
        for name, count in zip(SPLITS, _cut(len(order), fractions)):
            for i in order[start:start + count].tolist():
                out[i] = name
            start += count
    return out


def random_split(n: int, fractions=(0.7, 0.1, 0.2), seed: int = 0) -> list[str]:
    """Assign ``n`` groups (e.g. training runs) to ``train``/``val``/``test``, fixed by ``seed``."""
    return stratified_split(torch.zeros(n, dtype=torch.long), fractions, seed)
