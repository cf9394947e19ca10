"""Checkpoints as safetensors + JSON that commit as one unit and carry checksums.

A checkpoint ``<dir>/<name>`` is two files: ``<name>.safetensors`` (every tensor: the model's state dict
under ``model/``, the optimizer's tensors under ``optim/``) and ``<name>.json``
(settings, counters and the optimizer's non-tensor state). No pickle anywhere, so loading a checkpoint
cannot run code.

The JSON is the commit record: it holds the sha256 of the tensors file it belongs to
(``tensors_sha256``) and of its own content (``checksum``). Saving writes the tensors to
``<name>.next.safetensors``, then the JSON, then renames the tensors into place, each step atomic. A
kill before the JSON leaves the old pair intact; a kill after it leaves a JSON whose tensors are in
``.next``, which loading finds by checksum and the next save renames into place. So a loaded pair always
belongs together, and a corrupted byte in either file raises :class:`~nngraph.errors.CheckpointError`
naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from nngraph.errors import CheckpointError
from nngraph.io import atomic_write, replace

__all__ = ["atomic_write", "save_checkpoint", "load_checkpoint", "optimizer_to_flat", "optimizer_from_flat",
           "load_best_model"]

#: Keys of the JSON that belong to the checkpoint format, not to the caller's ``info``.
_FORMAT_KEYS = ("tensors_sha256", "checksum")


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``optim/<param>/<key>``) and JSON-able rest."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim/{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_to_flat`: load the optimizer's state in place."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split("/", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _paths(directory: str, name: str) -> tuple[str, str, str]:
    """``(tensors, pending tensors, json)`` paths of checkpoint ``name``."""
    return tuple(os.path.join(directory, f"{name}{suffix}")
                 for suffix in (".safetensors", ".next.safetensors", ".json"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _content_checksum(meta: dict[str, Any]) -> str:
    """sha256 of the JSON without its ``checksum`` (keys sorted, so it survives a JSON round trip)."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return _sha256(json.dumps(body, sort_keys=True).encode())


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _finish_pending(directory: str, name: str) -> None:
    """Rename the tensors of the committed JSON into place if a kill stopped a save just before that."""
    tensors_path, pending_path, meta_path = _paths(directory, name)
    if not os.path.exists(pending_path) or not os.path.exists(meta_path):
        return
    try:
        meta = _read_meta(meta_path)
    except CheckpointError:
        return  # leave a corrupted JSON for load_checkpoint to report
    if meta.get("tensors_sha256") == _sha256(_read(pending_path) or b""):
        replace(pending_path, tensors_path)


def save_checkpoint(directory: str, name: str, model: nn.Module, info: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Write checkpoint ``name``: the model (and optimizer tensors) plus ``info`` (and the optimizer's
    JSON-able state), as one unit (see the module docstring).

    Raises:
        ValueError: if ``info`` uses a key of the format (``tensors_sha256``, ``checksum``).
    """
    clash = [k for k in _FORMAT_KEYS if k in info]
    if clash:
        raise ValueError(f"info must not use the checkpoint's own keys {clash}")
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = dict(info)
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = optimizer_to_flat(optimizer)
        tensors.update(opt_tensors)
    data = save(tensors)
    meta["tensors_sha256"] = _sha256(data)
    meta["checksum"] = _content_checksum(meta)
    tensors_path, pending_path, meta_path = _paths(directory, name)
    _finish_pending(directory, name)
    atomic_write(pending_path, data)
    atomic_write(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    replace(pending_path, tensors_path)


def _read_meta(path: str) -> dict[str, Any]:
    """The checked JSON of a checkpoint; :class:`CheckpointError` naming ``path`` if it is unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a checkpoint's JSON ({err}); the file is corrupted") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a checkpoint's JSON (a {type(meta).__name__}, not an object)")
    if "checksum" in meta and meta["checksum"] != _content_checksum(meta):
        raise CheckpointError(f"{path} fails its checksum: the file is corrupted or was edited")
    return meta


def _matching_tensors(directory: str, name: str, meta: dict[str, Any]) -> bytes:
    """The bytes of the tensors file the JSON belongs to (in place, or pending after a kill)."""
    tensors_path, pending_path, meta_path = _paths(directory, name)
    data = _read(tensors_path)
    expected = meta.get("tensors_sha256")
    if expected is None:  # written before checksums existed
        if data is None:
            raise CheckpointError(f"{tensors_path} is missing, but {meta_path} exists")
        return data
    if data is not None and _sha256(data) == expected:
        return data
    pending = _read(pending_path)
    if pending is not None and _sha256(pending) == expected:
        return pending
    if data is None:
        raise CheckpointError(f"{tensors_path} is missing, but {meta_path} exists")
    raise CheckpointError(f"{tensors_path} fails its checksum: its sha256 is {_sha256(data)[:12]}..., "
                          f"{meta_path} says {expected[:12]}...; the file is corrupted or belongs to another "
                          "checkpoint (delete the run directory, or train with resume=False, to start over)")


def load_checkpoint(directory: str, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(tensors, info)`` of checkpoint ``name``, or ``None`` if there is none.

    Raises:
        CheckpointError: naming the file if either file is corrupted, truncated or missing, or the two
            do not belong together.
    """
    tensors_path, _, meta_path = _paths(directory, name)
    if not os.path.exists(meta_path):
        return None
    meta = _read_meta(meta_path)
    data = _matching_tensors(directory, name, meta)
    try:
        tensors = load(data)
    except SafetensorError as err:
        raise CheckpointError(f"{tensors_path} is not a safetensors file ({err}); the file is corrupted") from None
    return tensors, {k: v for k, v in meta.items() if k not in _FORMAT_KEYS}


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint's tensors."""
    return {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}


def load_best_model(directory: str, model: nn.Module, name: str = "best") -> dict[str, Any]:
    """Load the best checkpoint of a run into ``model`` (in place); returns its JSON (settings, metrics)."""
    found = load_checkpoint(directory, name)
    if found is None:
        raise FileNotFoundError(f"no checkpoint {name!r} in {directory}; train first (nngraph.train.fit)")
    tensors, info = found
    model.load_state_dict(model_state(tensors))
    return info
