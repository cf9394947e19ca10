"""Checkpoints as safetensors + JSON, written atomically (temp file in the same directory + ``os.replace``).

A checkpoint ``<dir>/<name>`` is two files: ``<name>.safetensors`` (every tensor: the model's state dict
under ``model/``, the optimizer's tensors under ``optim/``, RNG states under ``rng/``) and ``<name>.json``
(settings, counters and the optimizer's non-tensor state). No pickle anywhere, so loading a checkpoint
cannot run code.
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn
from nngraph.io import atomic_write

__all__ = ["atomic_write", "save_checkpoint", "load_checkpoint", "optimizer_to_flat", "optimizer_from_flat",
           "load_best_model"]


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


def save_checkpoint(directory: str, name: str, model: nn.Module, info: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Write ``<name>.safetensors`` (model, optimizer tensors, RNG) then ``<name>.json`` (``info`` + optimizer).

    The JSON is written last, so a checkpoint whose JSON exists is complete.
    """
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = dict(info)
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = optimizer_to_flat(optimizer)
        tensors.update(opt_tensors)
        tensors["rng/torch"] = torch.get_rng_state()
    atomic_write(os.path.join(directory, f"{name}.safetensors"), save(tensors))
    atomic_write(os.path.join(directory, f"{name}.json"), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def load_checkpoint(directory: str, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(tensors, info)`` of a complete checkpoint, or ``None`` if there is none."""
    meta_path = os.path.join(directory, f"{name}.json")
    if not os.path.exists(meta_path):
        return None
    with open(meta_path, encoding="utf-8") as f:
        info = json.load(f)
    return load_file(os.path.join(directory, f"{name}.safetensors")), info


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
