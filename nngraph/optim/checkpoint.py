"""Update networks to and from a file, and the meta-trained networks shipped with nngraph.

Two formats, both read without running pickled code:

- ``.safetensors`` (what :func:`save_network` writes for that suffix, and what is shipped): the weights as
  tensors, the format / kind / config as JSON in the file's metadata;
- any other suffix: one ``torch.save`` dict of plain values and tensors, read with
  ``torch.load(weights_only=True)``.

Both are written atomically. :func:`shipped_checkpoint` is the path of the meta-trained network of a kind
inside the package (``nngraph/optim/checkpoints/``), which :class:`~nngraph.optim.LearnedOptimizer` and
:class:`~nngraph.optim.PerParameterMLPOptimizer` load when given no checkpoint.
"""
from __future__ import annotations

import io
import json
import os
import pickle

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

from nngraph.errors import CheckpointError
from nngraph.io import atomic_write

from .graph_network import GraphUpdateNetwork
from .mlp_network import PerParameterUpdateNetwork

__all__ = ["FORMAT", "NETWORKS", "SHIPPED", "load_network", "network_from_dict", "network_to_dict", "save_network",
           "shipped_checkpoint"]

FORMAT = "nngraph.optim/1"
#: The update networks by the ``kind`` a checkpoint names.
NETWORKS = {cls.kind: cls for cls in (GraphUpdateNetwork, PerParameterUpdateNetwork)}
#: The shipped meta-trained network of every kind, a file of ``nngraph/optim/checkpoints/``.
SHIPPED = {"graph": "graph.safetensors", "mlp": "mlp.safetensors"}


def shipped_checkpoint(kind: str) -> str:
    """The path of the meta-trained update network of ``kind`` shipped in the package.

    Raises:
        KeyError: one line, for a kind without a shipped network.
    """
    if kind not in SHIPPED:
        raise KeyError(f"no shipped learned optimizer of kind {kind!r}; Could not resolve it among choices "
                       f"{sorted(SHIPPED)}")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", SHIPPED[kind])


def network_to_dict(network: nn.Module) -> dict:
    """``{"format", "kind", "config", "state_dict"}``: what :func:`network_from_dict` rebuilds ``network`` from."""
    if getattr(network, "kind", None) not in NETWORKS:
        raise TypeError(f"{type(network).__name__} is no update network of nngraph.optim (choices: "
                        f"{sorted(c.__name__ for c in NETWORKS.values())})")
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    return {"format": FORMAT, "kind": network.kind, "config": dict(network.config), "state_dict": state}


def network_from_dict(record: dict, where: str = "the checkpoint") -> nn.Module:
    """The update network a :func:`network_to_dict` record describes.

    Raises:
        CheckpointError: one line, for a record of another format or kind, or weights that do not fit.
    """
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a learned-optimizer checkpoint (no format {FORMAT!r}); write one with "
                              "nngraph.optim.save_network")
    kind = record.get("kind")
    if kind not in NETWORKS:
        raise CheckpointError(f"{where} holds an update network of kind {kind!r}; Could not resolve it among choices "
                              f"{sorted(NETWORKS)}")
    try:
        network = NETWORKS[kind](**record["config"])
        floats = [v.dtype for v in record["state_dict"].values() if v.is_floating_point()]
        network.to(floats[0] if floats else torch.float32)  # the saved precision (float64 in tests)
        network.load_state_dict(record["state_dict"])
    except (TypeError, KeyError, RuntimeError, AttributeError) as err:
        first = str(err).strip().split("\n")[0]
        raise CheckpointError(f"{where}: its {kind} update network does not load ({first})") from None
    return network


def _is_safetensors(path) -> bool:
    return str(path).endswith(".safetensors")


def save_network(network: nn.Module, path: str | os.PathLike) -> None:
    """Write ``network`` to ``path`` atomically (a reader sees the old file or the whole new one); a path ending
    in ``.safetensors`` gets a safetensors file, any other a ``torch.save`` file."""
    record = network_to_dict(network)
    if _is_safetensors(path):
        metadata = {"format": FORMAT, "kind": record["kind"], "config": json.dumps(record["config"])}
        data = save_safetensors({k: v.contiguous() for k, v in record["state_dict"].items()}, metadata=metadata)
    else:
        buffer = io.BytesIO()
        torch.save(record, buffer)
        data = buffer.getvalue()
    atomic_write(str(path), data)


def _read_safetensors(path: str) -> dict:
    """The :func:`network_to_dict` record of a safetensors file of :func:`save_network`."""
    try:
        with safe_open(path, "pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        config = json.loads(metadata.get("config", "null"))
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        first = str(err).strip().split("\n")[0]
        raise CheckpointError(f"{path} is not a learned-optimizer safetensors file ({first})") from None
    return {"format": metadata.get("format"), "kind": metadata.get("kind"), "config": config, "state_dict": state}


def load_network(checkpoint: str | os.PathLike | dict, kind: str | None = None) -> nn.Module:
    """The update network in ``checkpoint`` (a path, or a record of :func:`network_to_dict`), on the CPU.

    Args:
        kind: the kind the caller needs (``"graph"`` or ``"mlp"``); ``None`` takes either.

    Raises:
        FileNotFoundError: one line, for a missing file.
        CheckpointError: one line, for a file that is no such checkpoint (or holds pickled objects, which
            ``weights_only=True`` refuses), or of another kind.
    """
    where = "the checkpoint" if isinstance(checkpoint, dict) else str(checkpoint)
    if isinstance(checkpoint, dict):
        record = checkpoint
    else:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"no learned-optimizer checkpoint at {checkpoint}")
        if _is_safetensors(checkpoint):
            record = _read_safetensors(str(checkpoint))
        else:
            try:
                record = torch.load(checkpoint, map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
                first = str(err).strip().split("\n")[0]
                raise CheckpointError(f"{where} is not a learned-optimizer checkpoint torch.load(weights_only=True) "
                                      f"can read ({first})") from None
    network = network_from_dict(record, where)
    if kind is not None and network.kind != kind:
        raise CheckpointError(f"{where} holds a {network.kind!r} update network, this optimizer needs a {kind!r} one "
                              f"({'LearnedOptimizer' if network.kind == 'graph' else 'PerParameterMLPOptimizer'} "
                              "reads it)")
    return network
