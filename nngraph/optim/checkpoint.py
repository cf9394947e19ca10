"""Update networks to and from a file: one ``torch.save`` dict of plain values and tensors, read with
``torch.load(weights_only=True)`` (no pickled code can run) and written atomically."""
from __future__ import annotations

import io
import os
import pickle

import torch
from torch import nn

from nngraph.errors import CheckpointError
from nngraph.io import atomic_write

from .graph_network import GraphUpdateNetwork
from .mlp_network import PerParameterUpdateNetwork

__all__ = ["FORMAT", "NETWORKS", "load_network", "network_from_dict", "network_to_dict", "save_network"]

FORMAT = "nngraph.optim/1"
#: The update networks by the ``kind`` a checkpoint names.
NETWORKS = {cls.kind: cls for cls in (GraphUpdateNetwork, PerParameterUpdateNetwork)}


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


def save_network(network: nn.Module, path: str) -> None:
    """Write ``network`` to ``path`` atomically (a reader sees the old file or the whole new one)."""
    buffer = io.BytesIO()
    torch.save(network_to_dict(network), buffer)
    atomic_write(path, buffer.getvalue())


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
        try:
            record = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
            first = str(err).strip().split("\n")[0]
            raise CheckpointError(f"{where} is not a learned-optimizer checkpoint torch.load(weights_only=True) can "
                                  f"read ({first})") from None
    network = network_from_dict(record, where)
    if kind is not None and network.kind != kind:
        raise CheckpointError(f"{where} holds a {network.kind!r} update network, this optimizer needs a {kind!r} one "
                              f"({'LearnedOptimizer' if network.kind == 'graph' else 'PerParameterMLPOptimizer'} "
                              "reads it)")
    return network
