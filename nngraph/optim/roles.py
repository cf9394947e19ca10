r"""The role of every parameter entry in its model's neural graph, from what the graph already records.

An entry's role is three indices, each read from the graph's structure fields (:mod:`nngraph.schema`):

- **where**: for a kernel entry its edge's :class:`~nngraph.schema.EdgeType` (a weight, a recurrent weight, ...);
  for a node entry ``NUM_EDGE_TYPES + column`` (bias, norm gain, norm bias, ...);
- **from**: the :class:`~nngraph.schema.NodeKind` of the edge's source (an input feature, a token, a normalised
  or attended value, ...); ``NUM_NODE_KINDS`` (none) for a node entry;
- **to**: the kind of the edge's target (a linear or conv neuron, an attention query / key / value dimension, an
  embedding dimension, ...); for a node entry the kind of its node.

So the attention in-projection (to QUERY / KEY / VALUE), a conv kernel (to CONV), a recurrent weight (RECURRENT
edges), an embedding (from TOKEN), a LayerNorm gain (column ``norm_weight`` of a NORM node) and a bias differ in
at least one index, whatever the architecture. Every index is a node kind or an edge type, which relabelling a
model's hidden neurons leaves unchanged: an entry keeps its role under any relabelling.
"""
from __future__ import annotations

import torch
from torch import Tensor

from nngraph.kernels import entry_edges
from nngraph.schema import NODE_FEATURE_DIM, NUM_EDGE_TYPES, NUM_NODE_KINDS

__all__ = ["ROLE_SIZES", "entry_roles"]

#: The number of values of each role index: (where, from, to).
ROLE_SIZES = (NUM_EDGE_TYPES + NODE_FEATURE_DIM, NUM_NODE_KINDS + 1, NUM_NODE_KINDS)


def entry_roles(graph, read_slots: Tensor) -> Tensor:
    """The role of the entries read from ``read_slots`` (slots ``0 .. 5N - 1`` node features in row-major order,
    ``5N + r`` row ``r`` of ``edge_attr``; :class:`~nngraph.optim.GraphPlacement`) of ``graph``.

    Shapes:
        - **graph:** a neural graph of :math:`N` nodes (``node_kind``, ``edge_index``, ``edge_type``,
          ``kernel_shape``); **read_slots:** :math:`(P,)` long
        - **output:** :math:`(P, 3)` long, the columns (where, from, to), each below its :data:`ROLE_SIZES`
    """
    kinds = graph.node_kind.long()  # (N,)
    node_slots = kinds.shape[0] * NODE_FEATURE_DIM
    slots = read_slots.to(kinds.device)
    on_node = slots < node_slots  # (P,)
    node = (slots // NODE_FEATURE_DIM).clamp_max(kinds.shape[0] - 1)  # (P,): meaningful on node entries
    column = slots % NODE_FEATURE_DIM  # (P,)
    row = (slots - node_slots).clamp_min(0)  # (P,): meaningful on kernel entries
    shape = graph.kernel_shape
    edges = entry_edges(shape, int(shape.long().prod(1).sum()))  # (W,): the edge of every kernel entry
    edge = edges[row] if edges.numel() else row  # (P,)
    if graph.edge_type.numel():
        edge_type, source, target = graph.edge_type.long()[edge], graph.edge_index[0][edge], graph.edge_index[1][edge]
    else:  # no edges: every entry is a node entry
        edge_type = source = target = torch.zeros_like(slots)
    where = torch.where(on_node, NUM_EDGE_TYPES + column, edge_type)  # (P,)
    from_kind = torch.where(on_node, torch.full_like(slots, NUM_NODE_KINDS), kinds[source])  # (P,)
    to_kind = torch.where(on_node, kinds[node], kinds[target])  # (P,)
    return torch.stack([where, from_kind, to_kind], dim=1)  # (P, 3)
