"""Converting a model straight from its checkpoint: the weights stay in the file, only the graph is in memory.

A model of 1B parameters and its graph need twice its bytes when the model is loaded first. Here the model is
built with its parameters on the meta device (:func:`parameters_on_meta`: no memory, no initialisation; buffers
such as rotary tables are made as usual), then :func:`load_mapped` gives it the tensors of a safetensors file as
memory-mapped views (no copy: the pages are read from the file when the trace and ``to_graph`` read them, and the
page cache can drop them again). ``to_graph`` then writes the graph, the only copy of the weights in the process's
own memory.

Example:
    >>> with parameters_on_meta():
    ...     model = LlamaForCausalLM(config)
    >>> model = load_mapped(model, "model.safetensors")
    >>> graph = nngraph.to_graph(model, (ids,))
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
from torch import nn

__all__ = ["parameters_on_meta", "load_mapped"]


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Within the block, every parameter a module registers is put on the meta device (its values are never
    allocated nor initialised); buffers are made as usual. Fill the model with :func:`load_mapped`."""
    original = nn.Module.register_parameter

    def register(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(self, name, param)
        if param is not None and param.device.type != "meta":
            self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def load_mapped(module: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """``module`` with its parameters and persistent buffers replaced by memory-mapped tensors of the safetensors
    file ``path`` (nothing is copied). Names under which one parameter is shared (tied embeddings) all get the
    tensor saved under any of them.

    Args:
        module: the model, typically built under :func:`parameters_on_meta`.
        path: a ``.safetensors`` file with the model's state dict.
        strict: raise on tensors of the file the model has no place for (missing ones always raise).

    Returns:
        ``module`` itself, in eval mode.

    Raises:
        ValueError: in one line, for missing or (with ``strict``) unexpected names, or a shape that differs.
    """
    from safetensors import safe_open

    groups: dict[int, list[str]] = {}  # one parameter or buffer object -> every name it goes by
    owners = {}
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for kind in ("_parameters", "_buffers"):
            for name, tensor in getattr(sub, kind).items():
                if tensor is None or (kind == "_buffers" and name in sub._non_persistent_buffers_set):
                    continue
                full = f"{prefix}.{name}" if prefix else name
                groups.setdefault(id(tensor), []).append(full)
                owners[full] = (sub, kind, name, tensor)
    with safe_open(os.fspath(path), framework="pt") as f:
        keys = set(f.keys())
        unexpected = sorted(keys - owners.keys())
        if strict and unexpected:
            raise ValueError(f"{os.fspath(path)} holds {len(unexpected)} tensors the model has no place for: "
                             f"{', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        missing = sorted(names[0] for names in groups.values() if not keys.intersection(names))
        if missing:
            raise ValueError(f"{os.fspath(path)} lacks {len(missing)} tensors of the model: "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        for names in groups.values():
            saved = f.get_tensor(next(n for n in names if n in keys))  # a view of the mapped file
            value = nn.Parameter(saved, requires_grad=False) if owners[names[0]][1] == "_parameters" else saved
            for full in names:  # the same object under every tied name
                sub, kind, name, old = owners[full]
                if tuple(saved.shape) != tuple(old.shape):
                    raise ValueError(f"{full}: shape {tuple(saved.shape)} in {os.fspath(path)}, the model has "
                                     f"{tuple(old.shape)}")
                getattr(sub, kind)[name] = value
    return module.eval()
