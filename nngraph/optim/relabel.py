"""A neural graph with its nodes and edges listed in a random order: the same graph, other labels.

An equivariant update network gives the same per-parameter update on the relabelled graph (up to the
order of floating-point sums); the learned optimizer's twin (``LearnedOptimizer(relabel=True)``) draws a
new labelling every step to show that its updates do not depend on the labels.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data

from nngraph.kernels import reorder_kernels

__all__ = ["NODE_FIELDS", "relabel_graph"]

#: The per-node fields of a neural graph (:mod:`nngraph.schema`), moved with their node.
NODE_FIELDS = ("x", "node_type", "node_kind", "io_position", "layer", "act", "act_args", "conv_args", "pool",
               "pool_args", "op_code", "norm_eps")


def relabel_graph(graph: Data, generator: torch.Generator | None = None) -> tuple[Data, Tensor, Tensor]:
    """``graph`` with node ``v`` renamed ``node_map[v]`` and its edges listed in a random order.

    Returns:
        ``(relabelled, node_map, entry_map)``: node ``v`` of ``graph`` is node ``node_map[v]`` of
        ``relabelled`` and its kernel entry (row of ``edge_attr``) ``r`` is entry ``entry_map[r]``.

    Shapes:
        - **node_map:** :math:`(N,)`; **entry_map:** :math:`(W,)`
    """
    n, e = int(graph.num_nodes), int(graph.edge_index.shape[1])
    node_map = torch.randperm(n, generator=generator)  # (N,) old -> new
    inverse = torch.empty_like(node_map)
    inverse[node_map] = torch.arange(n)  # new -> old
    order = torch.randperm(e, generator=generator)  # (E,): new edge j is old edge order[j]
    shapes = graph.kernel_shape
    num_entries = int(shapes.long().prod(1).sum())
    old_rows = reorder_kernels(torch.arange(num_entries).unsqueeze(1), shapes, order).view(-1)  # (W,): new -> old
    entry_map = torch.empty_like(old_rows)
    entry_map[old_rows] = torch.arange(num_entries)  # (W,): old -> new
    out = graph.clone()
    for key in NODE_FIELDS:
        if key in graph:
            out[key] = graph[key][inverse]
    out.edge_index = node_map[graph.edge_index[:, order]]  # (2, E)
    out.edge_type = graph.edge_type[order]
    out.kernel_shape = shapes[order]
    if "edge_attr" in graph:
        out.edge_attr = graph.edge_attr[old_rows]
    return out, node_map, entry_map
