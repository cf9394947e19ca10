"""The permutation-equivariant encoder of neural graphs."""
from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from nngraph.blocks import is_blocked
from nngraph.schema import (NUM_ACTIVATIONS, NUM_EDGE_TYPES, NODE_FEATURE_DIM, NUM_NODE_KINDS, OP_CATEGORIES,
                            OP_CODE_DIM, NodeType)

from .conv import NeuralGraphConv
from .edge_encoder import EdgeEncoder
from .kernel import MAX_KERNEL_BOX
from .node_encoder import NodeEncoder
from .readout import GraphReadout
from .segment import message_index
from .stream import stream_forward


#: Integer fields checked against the number of embeddings of their table.
_RANGES = (("node_type", len(NodeType), "NodeType"), ("node_kind", NUM_NODE_KINDS, "NodeKind"),
           ("act", NUM_ACTIVATIONS, "Activation"), ("edge_type", NUM_EDGE_TYPES, "EdgeType"))
_FIX = "convert the model with nngraph.to_graph (see nngraph.schema for the fields)"


def check_graph(batch, dtype: torch.dtype, probe_dim: int = 0, finite: bool = True) -> None:
    """Raise a :class:`ValueError` (or :class:`TypeError` for a dtype) saying what is wrong with ``batch``
    and how to fix it, before the encoder would fail deep inside torch or silently read garbage.

    Checked once per forward (a few reductions over the node and edge lists, no per-layer cost):
    the fields exist, ``x`` / ``edge_attr`` / ``probe`` have the encoder's dtype, ``x`` has
    :data:`~nngraph.schema.NODE_FEATURE_DIM` columns, ``edge_index`` is ``(2, E)`` long with nodes in
    ``[0, N)``, the integer fields are within their tables, the kernels fill ``edge_attr`` exactly,
    and ``probe`` has ``probe_dim`` columns; with ``finite`` (the encoder's ``check_finite``, on by default),
    ``x``, ``edge_attr`` and ``probe`` hold no NaN or Inf (a model with broken weights would otherwise give NaN
    embeddings, or worse, finite garbage after a clamp).
    """
    missing = [k for k in ("x", "edge_index", "edge_attr", "edge_type", "node_type", "node_kind", "layer", "act",
                           "io_position") if getattr(batch, k, None) is None]
    if missing:
        raise ValueError(f"the graph has no {missing}; {_FIX}")
    x, edge_index, edge_attr = batch.x, batch.edge_index, batch.edge_attr
    for name, value in (("x", x), ("edge_attr", edge_attr)):
        if value.dtype != dtype:
            raise TypeError(f"graph.{name} is {value.dtype} but the encoder's parameters are {dtype}: convert "
                            f"one to the other (encoder.to({value.dtype}) or graph.{name} = graph.{name}.to({dtype}))")
    n = x.size(0)
    if x.dim() != 2 or x.size(1) != NODE_FEATURE_DIM:
        raise ValueError(f"graph.x has shape {tuple(x.shape)}, expected (N, {NODE_FEATURE_DIM}); {_FIX}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.dtype != torch.long:
        raise ValueError(f"graph.edge_index must be a (2, E) long tensor, got {tuple(edge_index.shape)} "
                         f"{edge_index.dtype}")
    if edge_index.numel():
        lo, hi = torch.aminmax(edge_index)
        if int(lo) < 0 or int(hi) >= n:
            raise ValueError(f"graph.edge_index refers to node {int(lo) if int(lo) < 0 else int(hi)} but the graph "
                             f"has {n} nodes (0 to {n - 1}); a batch must be made with nngraph.batch_graphs or a "
                             "PyG DataLoader, which offset every graph's nodes")
    for name, size, enum in _RANGES:
        value = getattr(batch, name)
        expected = edge_index.size(1) if name == "edge_type" else n
        if value.shape != (expected,):
            raise ValueError(f"graph.{name} has shape {tuple(value.shape)}, expected ({expected},); {_FIX}")
        if value.numel():
            lo, hi = torch.aminmax(value)
            if int(lo) < 0 or int(hi) >= size:
                bad = int(lo) if int(lo) < 0 else int(hi)
                raise ValueError(f"graph.{name} holds {bad}, outside 0..{size - 1} (nngraph.schema.{enum}); "
                                 "the graph comes from another nngraph version or was edited: reconvert it")
    kernel_shape = getattr(batch, "kernel_shape", None)
    rows = edge_index.size(1) if kernel_shape is None else int(kernel_shape.prod(-1).sum())
    if edge_attr.dim() != 2 or edge_attr.size(0) != rows:
        raise ValueError(f"graph.edge_attr has shape {tuple(edge_attr.shape)}, but the kernels of its "
                         f"{edge_index.size(1)} edges (kernel_shape) hold {rows} entries: expected ({rows}, 1); {_FIX}")
    if finite:
        for name in ("x", "edge_attr", "probe"):
            value = getattr(batch, name, None)
            if value is not None and value.numel() and not bool(torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value)).sum())
                raise ValueError(f"graph.{name} holds {bad} NaN or Inf entries (a model with non-finite weights?); "
                                 "the encoder refuses them. Set encoder.check_finite = False to encode them anyway")
    op_code = getattr(batch, "op_code", None)
    if op_code is not None and op_code.numel():
        if op_code.shape != (n, OP_CODE_DIM):
            raise ValueError(f"graph.op_code has shape {tuple(op_code.shape)}, expected ({n}, {OP_CODE_DIM}); {_FIX}")
        lo, hi = torch.aminmax(op_code[:, 0])
        if int(lo) < 0 or int(hi) >= OP_CATEGORIES:
            raise ValueError(f"graph.op_code[:, 0] holds {int(lo) if int(lo) < 0 else int(hi)}, outside "
                             f"0..{OP_CATEGORIES - 1}; the graph comes from another nngraph version or was edited")
    if probe_dim:
        probe = getattr(batch, "probe", None)
        if probe is None:
            raise ValueError(f"the encoder was built with probe_dim={probe_dim} but the graph has no 'probe'; "
                             "set data.probe = nngraph.probe_features(module, inputs)")
        if probe.shape != (n, probe_dim):
            raise ValueError(f"graph.probe has shape {tuple(probe.shape)}, the encoder expects ({n}, {probe_dim}) "
                             f"(probe_dim={probe_dim}): use as many probe inputs as the encoder was built with")


def as_graph_fields(batch, edge_index: Tensor | None, edge_attr: Tensor | None, batch_index: Tensor | None,
                    fields: dict[str, Tensor]):
    """``batch`` itself, or, when it is the node-feature tensor ``x``, an object holding ``x`` and the other
    tensors under the names of :mod:`nngraph.schema` (what the encoder reads)."""
    if not isinstance(batch, Tensor):
        if edge_index is not None or edge_attr is not None or batch_index is not None or fields:
            raise TypeError("give the encoder a batch, or its tensors (x, edge_index, edge_attr, batch, **fields), "
                            "not both")
        return batch
    if edge_index is None or edge_attr is None:
        raise TypeError("with a tensor x the encoder needs edge_index and edge_attr too: "
                        "encoder(x, edge_index, edge_attr, batch, node_type=..., ...)")
    graph = SimpleNamespace(x=batch, edge_index=edge_index, edge_attr=edge_attr, **fields)
    if batch_index is not None:
        graph.batch = batch_index
    return graph


class NeuralGraphEncoder(nn.Module):
    r"""Encodes a batch of neural graphs (:mod:`nngraph.schema`) into one vector per graph.

    Node and edge features are embedded (:class:`NodeEncoder`, :class:`EdgeEncoder`), updated by
    ``num_layers`` :class:`NeuralGraphConv` layers that pass messages along both directions of every
    edge and update the edges, and pooled by an invariant :class:`GraphReadout`:

    .. math::
        (\mathbf{H}^{(\ell+1)}, \mathbf{E}^{(\ell+1)}) = \mathrm{Conv}_\ell(\mathbf{H}^{(\ell)}, \mathbf{E}^{(\ell)}),
        \qquad \mathbf{y}_G = \mathrm{Readout}(\mathbf{H}^{(L)}, \mathbf{E}^{(L)})

    Relabelling the hidden neurons of a source model relabels its graph's nodes; the graph-level
    output is invariant to that and :meth:`encode` is equivariant. A batch may mix any architectures:
    every edge's kernel is embedded at its own size (it must fit in ``max_kernel_box``).

    Messages and aggregations are fused autograd ops over the edge list (:mod:`nngraph.gnn.segment`).
    Time and memory grow with the number of edges (weights), never with
    :math:`N^2`.

    For per-weight predictions (e.g. weight deltas), use :meth:`encode` with a
    :class:`~nngraph.gnn.NodeEdgeHead`::

        h, e = encoder.encode(batch)
        dx, de = head(h, e, batch.kernel_shape, batch.edge_attr.size(0))  # (N, 5), (W, 1)

    Args:
        out_dim (int): width of the graph-level output.
        hidden_dim (int): width of node and edge embeddings. (default: :obj:`64`)
        num_layers (int): message-passing layers. (default: :obj:`4`)
        probe_dim (int): width of ``data.probe`` (:func:`~nngraph.convert.probe_features`), 0 for none.
            (default: :obj:`0`)
        max_kernel_box (tuple[int, int, int]): largest kernel box accepted. (default: :obj:`(3, 7, 7)`)
        num_io_embeddings (int): learned embeddings per input / output neuron index (indices wrap
            around beyond). (default: :obj:`1024`)
        max_layers (int): learned embeddings of ``layer`` (deeper layers share the last).
            (default: :obj:`256`)
        aggregators (sequence of str): PNA-style aggregators of every layer, any of ``"mean"``,
            ``"max"``, ``"min"``, ``"std"``. (default: :obj:`("mean", "max", "std")`)
        act (str): activation used throughout. (default: :obj:`"silu"`)
        dropout (float): dropout on node and edge updates. (default: :obj:`0.0`)
        readout_by_type (bool): pool input, hidden and output neurons separately
            (:class:`GraphReadout` ``by_type``). (default: :obj:`True`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` (or one :class:`~torch_geometric.data.Data`)
          of :math:`B` neural graphs with :math:`N` nodes and :math:`E` edges in total
        - **output:** :math:`(B, \text{out\_dim})`; :meth:`encode` gives :math:`(N, H)` and :math:`(E, H)`
    """

    def __init__(self, out_dim: int, hidden_dim: int = 64, num_layers: int = 4, probe_dim: int = 0,
                 aggregators: Sequence[str] = ("mean", "max", "std"),
                 max_kernel_box: Sequence[int] = MAX_KERNEL_BOX, num_io_embeddings: int = 1024,
                 max_layers: int = 256, act: str = "silu", dropout: float = 0.0, readout_by_type: bool = True):
        super().__init__()
        self.out_dim = out_dim
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.probe_dim = probe_dim
        self.check_finite = True  # refuse NaN / Inf features (check_graph); a plain attribute, off at one's own risk
        self.node_encoder = NodeEncoder(hidden_dim, num_io_embeddings, max_layers, probe_dim, act)
        self.edge_encoder = EdgeEncoder(hidden_dim, max_kernel_box, act)
        self.convs = nn.ModuleList(NeuralGraphConv(hidden_dim, aggregators, act, dropout) for _ in range(num_layers))
        self.readout = GraphReadout(hidden_dim, out_dim, act, by_type=readout_by_type)

    def reset_parameters(self):
        self.node_encoder.reset_parameters()
        self.edge_encoder.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        self.readout.reset_parameters()

    def encode(self, batch, edge_index: Tensor | None = None, edge_attr: Tensor | None = None,
               batch_index: Tensor | None = None, **fields: Tensor) -> tuple[Tensor, Tensor]:
        r"""Node and edge embeddings after the last layer, in the order of ``batch.x`` / ``batch.edge_index``.

        Equivariant: relabelling hidden neurons of a source model permutes the rows accordingly.
        Takes a batch, or its tensors as in :meth:`forward`.

        Returns:
            ``(h, e)``: node embeddings :math:`(N, H)` and edge embeddings :math:`(E, H)`.
        """
        batch = as_graph_fields(batch, edge_index, edge_attr, batch_index, fields)
        if is_blocked(batch):
            raise ValueError("the graph is blocked (graph.edge_blocks, a large model): its edge embeddings are "
                             "E x H and are not made; nngraph.gnn.stream_encode gives its node embeddings, "
                             "nngraph.blocks.materialize(graph) the plain graph if it fits in memory")
        check_graph(batch, self.param_dtype(), self.probe_dim, finite=self.check_finite)
        h = self.node_encoder(batch)  # (N, H)
        e = self.edge_encoder(batch)  # (E, H)
        index = message_index(batch.edge_index, h.size(0))  # shared by all layers
        for conv in self.convs:
            h, e = conv(h, batch.edge_index, e, index)
        return h, e

    def forward(self, batch, edge_index: Tensor | None = None, edge_attr: Tensor | None = None,
                batch_index: Tensor | None = None, **fields: Tensor) -> Tensor:
        r"""One vector per graph: ``encoder(batch)``, or the batch's tensors in the order of PyG's
        ``BasicGNN`` (for :func:`torch_geometric.nn.summary`, tracing and compilation)::

            encoder(b.x, b.edge_index, b.edge_attr, b.batch, node_type=b.node_type, node_kind=b.node_kind,
                    layer=b.layer, act=b.act, io_position=b.io_position, edge_type=b.edge_type,
                    kernel_shape=b.kernel_shape)  # + probe, act_args, conv_args, pool, pool_args, op_code if present

        Args:
            batch: a :class:`~torch_geometric.data.Batch` / :class:`~torch_geometric.data.Data`, or ``x``
                :math:`(N, 5)`.
            edge_index, edge_attr, batch_index: :math:`(2, E)`, :math:`(W, 1)` and the graph of every node
                :math:`(N,)` (``None``: one graph), with a tensor ``x`` only.
            **fields: the graph's other fields (:mod:`nngraph.schema`), with a tensor ``x`` only.

        Returns:
            :math:`(B, \text{out\_dim})`
        """
        batch = as_graph_fields(batch, edge_index, edge_attr, batch_index, fields)
        if is_blocked(batch):  # a large model's graph: read block by block, without gradients
            if self.training and torch.is_grad_enabled():
                raise ValueError("a blocked graph (graph.edge_blocks) is encoded block by block without gradients: "
                                 "call encoder.eval() (or torch.no_grad()), or train on graphs that fit in memory")
            return stream_forward(self, batch)  # (1, out_dim)
        h, e = self.encode(batch)
        return self.readout(h, e, batch.edge_index, getattr(batch, "batch", None),
                            getattr(batch, "num_graphs", None), batch.node_type)  # (B, out_dim)

    def param_dtype(self) -> torch.dtype:
        """The dtype of the encoder's parameters (the dtype graphs must have)."""
        return self.node_encoder.lin_x.weight.dtype

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(out_dim={self.out_dim}, hidden_dim={self.hidden_dim}, "
                f"num_layers={self.num_layers}, probe_dim={self.probe_dim})")
