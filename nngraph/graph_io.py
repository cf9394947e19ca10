"""Graph files: a neural graph as plain tensors in a safetensors file (or a ``.pt`` read with
``weights_only=True``), blocked graphs with their edge blocks (:mod:`nngraph.blocks`).

A safetensors file is written by streaming (no second copy of the graph in memory) and atomically; read back,
its tensors are memory-mapped, so a graph larger than memory is read piecewise: the
block-by-block encoder touches one chunk of ``edge_attr`` at a time.
"""
from __future__ import annotations

import io
import json

import torch
from torch_geometric.data import Data

from .blocks import EdgeBlocks, is_blocked
from .io import atomic_path, atomic_write

__all__ = ["load_graph", "save_graph"]

_BLOCKS = "edge_blocks"


def save_graph(graph: Data, path: str) -> None:
    """Write ``graph`` to ``path`` (``.safetensors``, else a ``.pt`` that ``torch.load(weights_only=True)`` reads),
    atomically: readers see the old file or the whole new one."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in graph.items() if torch.is_tensor(v)}
    tensors["num_nodes"] = torch.tensor(int(graph.num_nodes))
    if is_blocked(graph):
        tensors.update(graph.edge_blocks.state(_BLOCKS))
    spec = getattr(graph, "input_spec", None)
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata={"format": "nngraph", "input_spec": json.dumps(spec)})
    else:
        buffer = io.BytesIO()
        torch.save({**tensors, "input_spec": spec}, buffer)
        atomic_write(path, buffer.getvalue())


def load_graph(path: str) -> Data:
    """A graph written by :func:`save_graph` (or ``nngraph convert``) as a :class:`~torch_geometric.data.Data`.

    From a safetensors file the tensors are views of the memory-mapped file (what ``safe_open`` gives), read
    from disk as they are touched: a graph larger than memory can be encoded with
    :func:`nngraph.gnn.stream_forward`."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            fields = {k: f.get_tensor(k) for k in f.keys()}
            metadata = f.metadata() or {}
        spec = json.loads(metadata.get("input_spec", "null"))
    else:
        fields = torch.load(path, weights_only=True)
        spec = fields.pop("input_spec", None)
    num_nodes = int(fields.pop("num_nodes"))
    blocks = None
    if f"{_BLOCKS}.table" in fields:
        blocks = EdgeBlocks.from_state({k: fields.pop(k) for k in (f"{_BLOCKS}.table", f"{_BLOCKS}.nodes")}, _BLOCKS)
    data = Data(**fields)
    data.num_nodes = num_nodes
    if blocks is not None:
        data.edge_blocks = blocks
    if spec is not None:
        data.input_spec = spec
    return data

