"""The cross-fitted gradient-boosting prior of the ``hybrid*`` rows, cached in the run directory.

Every hybrid variant that has a prior stands on the same one: gradient boosting on the probe images' outputs,
cross-fitted by training run (:func:`nngraph.probing.cross_fit`: ``folds`` fits on the training folds and one on
every training model). On the wild zoo that is six fits of ~7,000 models, about 1.5 minutes, which every method
and every restart of a run paid again. :func:`gbm_prior` stores the three predictions under
``<run>/cache/gbm_prior-<key hash>.npz`` (plain arrays, written atomically, read with ``allow_pickle=False``) and
reads them back when the key is the same.

The key is what the prior is a function of: the probe outputs of the training, validation and predicted models
(by their SHA-256: a different zoo, probe setting or seed's probe images gives other outputs), the models' ids per
split and the training targets and run groups (the split), the seed (the folds' draw and the trees' randomness),
the boosting iterations and the number of folds. A stored file is used only when the key stored in it equals the
key asked for; anything else is computed again and the file replaced.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Sequence

import numpy as np
import torch

from nngraph.io import atomic_path
from nngraph.probing import cross_fit

from ..common.baselines import gradient_boosting

__all__ = ["FOLDS", "cached_arrays", "gbm_prior", "prior_key"]

FOLDS = 5


def _digest(*arrays) -> str:
    """SHA-256 of the arrays' dtypes, shapes and bytes (C order)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def prior_key(feats: Sequence, y, groups: Sequence, ids: Sequence[Sequence[str]], seed: int, gbm_iters: int,
              probe_inputs: int, folds: int = FOLDS) -> dict:
    """The key of a prior: a JSON-able dict of everything :func:`gbm_prior` computes it from.

    Args:
        feats: the ``(M_k, K * C)`` probe outputs of the training, validation and predicted models.
        y: ``(M_train,)`` the training targets; ``groups``: ``(M_train,)`` their training runs.
        ids: the models' ids, one list per split (as ``feats``).
        seed, gbm_iters, probe_inputs, folds: the run's settings.
    """
    return {"features": _digest(*feats), "targets": _digest(np.asarray(y, dtype=float)),
            "groups": hashlib.sha256(json.dumps([str(g) for g in groups]).encode()).hexdigest(),
            "ids": hashlib.sha256(json.dumps([list(map(str, s)) for s in ids]).encode()).hexdigest(),
            "sizes": [int(len(f)) for f in feats], "seed": int(seed), "gbm_iters": int(gbm_iters),
            "probe_inputs": int(probe_inputs), "folds": int(folds)}


def cached_arrays(directory: str, name: str, key: dict, compute: Callable[[], Sequence[np.ndarray]]
                  ) -> list[np.ndarray]:
    """``compute()``'s arrays, read from ``<directory>/<name>-<hash of key>.npz`` when that file holds ``key``,
    else computed and written there atomically (plain arrays and the key as JSON text: no pickles)."""
    text = json.dumps(key, sort_keys=True)
    path = os.path.join(directory, f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz")
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) == text:
                    return [stored[f"a{i}"] for i in range(int(stored["count"]))]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable: computed again and replaced below
    arrays = [np.asarray(a) for a in compute()]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, key=np.array(text), count=np.array(len(arrays)), **{f"a{i}": a for i, a in enumerate(arrays)})
    return arrays


def gbm_prior(feats: Sequence[torch.Tensor], y, groups: Sequence, ids: Sequence[Sequence[str]], seed: int,
              gbm_iters: int, probe_inputs: int, cache_dir: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient boosting on the probe outputs, cross-fitted by training run (:data:`FOLDS` folds): ``(oof, val,
    pred)``, the out-of-fold predictions of the training models ``(M_train,)`` and the full fit's of the
    validation ``(M_val,)`` and predicted models ``(M_pred,)``; cached in ``cache_dir`` (``None``: not cached).

    Args:
        feats: ``[train, val, pred]`` probe outputs, ``(M_k, K * C)`` each.
        y: ``(M_train,)`` the training targets; ``groups``: ``(M_train,)`` their training runs.
        ids: the models' ids per split (part of the key).
        seed, gbm_iters: the folds' draw and the trees' seed; boosting iterations.
        probe_inputs: the number of probe images (part of the key).
    """
    def compute():
        gbm = lambda xf, yf, xp: gradient_boosting(xf, yf, xp, "regression", seed, gbm_iters)  # noqa: E731
        oof, (p_val, p_pred) = cross_fit(gbm, feats[0], torch.tensor(np.asarray(y), dtype=torch.float), groups,
                                         [feats[1], feats[2]], folds=FOLDS, seed=seed)
        return oof, p_val, p_pred

    if cache_dir is None:
        return tuple(compute())
    key = prior_key(feats, y, groups, ids, seed, gbm_iters, probe_inputs)
    return tuple(cached_arrays(cache_dir, "gbm_prior", key, compute))
