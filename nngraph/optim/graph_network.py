r"""The equivariant update network of :class:`~nngraph.optim.LearnedOptimizer`: message passing over the
model's neural graph, with the optimizer's features on every node and kernel entry."""
from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from nngraph.gnn import KernelLinear, NeuralGraphConv, NodeEdgeHead, NodeEncoder
from nngraph.gnn.kernel import MAX_KERNEL_BOX
from nngraph.gnn.utils import make_act
from nngraph.schema import NODE_FEATURE_DIM, NUM_EDGE_TYPES

from .features import DEFAULT_BETAS, Segments, num_features
from .output import StepOutput
from .placement import GraphPlacement
from .relabel import NODE_FIELDS

__all__ = ["GraphUpdateNetwork"]


class GraphUpdateNetwork(nn.Module):
    r"""Per-entry steps from the optimizer's features, read in the context of the whole neural graph.

    The features of every entry (:func:`~nngraph.optim.features.entry_features`) plus a channel marking
    trainable entries, :math:`C' = C + 1` channels, are placed on the graph (:class:`GraphPlacement`): a
    node carries :math:`5 \times C'` (one row per column of ``x``), an edge its kernel of :math:`C'`
    channels. Nodes are embedded by a :class:`~nngraph.gnn.NodeEncoder` (the structure: kinds, types,
    layers, positions of inputs and outputs, operations; its ``x`` is the per-tensor normalised weights)
    plus a linear map of their features; edges by one :class:`~nngraph.gnn.KernelLinear` per channel
    (every kernel shape in one space) plus an embedding of their type:

    .. math::
        \mathbf{h}_v = \mathrm{NodeEncoder}(v) + \mathbf{W}_n \mathbf{f}_v, \qquad
        \mathbf{e}_{uv} = \mathrm{MLP}\Big(\tfrac{1}{\sqrt{C'}}\textstyle\sum_c \mathbf{K}_c^\top
            \operatorname{pad}(\mathbf{f}^{(c)}_{uv}) + \mathbf{e}_{\text{type}(uv)}\Big)

    ``num_layers`` :class:`~nngraph.gnn.NeuralGraphConv` layers pass messages both ways along every edge;
    a :class:`~nngraph.gnn.NodeEdgeHead` with ``context_dim`` outputs gives every slot (node column, kernel
    entry) a context vector :math:`\mathbf{z}_i`, and a :class:`StepOutput` turns each entry's features and
    context into its step. Every operation acts per node, per edge, per entry or as a symmetric
    aggregation, so relabelling the model's hidden neurons permutes the steps in the same way.

    Args:
        betas (sequence of float): momentum timescales of the features.
            (default: :data:`~nngraph.optim.features.DEFAULT_BETAS`)
        hidden_dim (int): width of node and edge embeddings. (default: :obj:`32`)
        num_layers (int): message-passing layers. (default: :obj:`2`)
        context_dim (int): width of every entry's context. (default: :obj:`8`)
        output_dim (int): width of the per-entry MLP of :class:`StepOutput`. (default: :obj:`32`)
        init_lr (float): initial step size. (default: :obj:`1e-3`)
        max_log_scale (float): bound of the log of the per-entry step factor (:class:`StepOutput`).
            (default: :obj:`1.0`)
        max_kernel_box (tuple[int, int, int]): largest kernel accepted. (default: :obj:`(3, 7, 7)`)
        act (str): activation throughout. (default: :obj:`"silu"`)
        rule, min_log_scale, max_additive, progress: how the outputs shape the step (:class:`StepOutput`).
            (default: :obj:`"rescaled"`, :obj:`None`, :obj:`0.5`, :obj:`False`)
        role_offsets (bool): a learned step size per role of an entry in the graph (:class:`StepOutput`; the roles
            come from the graph, :func:`~nngraph.optim.roles.entry_roles`). (default: :obj:`False`)

    Shapes:
        - **input:** features :math:`(P, C)`, their :class:`~nngraph.optim.features.Segments`, the model's graph
          (structure fields of :mod:`nngraph.schema`)
          and the :class:`GraphPlacement` of the :math:`P` entries; with ``progress``, the fraction of the run done
          :math:`(P,)` or a scalar
        - **output:** the step :math:`(P,)`
    """

    kind = "graph"

    def __init__(self, betas: Sequence[float] = DEFAULT_BETAS, hidden_dim: int = 32, num_layers: int = 2,
                 context_dim: int = 8, output_dim: int = 32, init_lr: float = 1e-3, max_log_scale: float = 1.0,
                 max_kernel_box: Sequence[int] = MAX_KERNEL_BOX, act: str = "silu", rule: str = "rescaled",
                 min_log_scale: float | None = None, max_additive: float = 0.5, progress: bool = False,
                 role_offsets: bool = False):
        super().__init__()
        self.betas = tuple(float(b) for b in betas)
        self.config = dict(betas=list(self.betas), hidden_dim=hidden_dim, num_layers=num_layers,
                           context_dim=context_dim, output_dim=output_dim, init_lr=init_lr,
                           max_log_scale=max_log_scale, max_kernel_box=[int(v) for v in max_kernel_box], act=act,
                           rule=rule, min_log_scale=min_log_scale, max_additive=max_additive, progress=progress,
                           role_offsets=role_offsets)
        self.in_channels = num_features(len(self.betas)) + 1
        self.node_encoder = NodeEncoder(hidden_dim, act=act)
        self.node_features = nn.Linear(NODE_FEATURE_DIM * self.in_channels, hidden_dim)
        self.edge_kernels = nn.ModuleList(KernelLinear(hidden_dim, max_kernel_box) for _ in range(self.in_channels))
        self.edge_type = nn.Embedding(NUM_EDGE_TYPES, hidden_dim)
        self.edge_mlp = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), make_act(act), nn.Linear(hidden_dim, hidden_dim))
        self.convs = nn.ModuleList(NeuralGraphConv(hidden_dim, act=act) for _ in range(num_layers))
        self.head = NodeEdgeHead(hidden_dim, NODE_FEATURE_DIM, max_kernel_box, init_scale=1.0, act=act,
                                 num_outputs=context_dim)
        self.output = StepOutput(self.betas, context_dim, output_dim, init_lr, max_log_scale, act=act, rule=rule,
                                 min_log_scale=min_log_scale, max_additive=max_additive, progress=progress,
                                 role_offsets=role_offsets)

    def embed(self, graph, node_table: Tensor, edge_table: Tensor) -> tuple[Tensor, Tensor]:
        """Node and edge embeddings ``(N, H)``, ``(E, H)`` from the per-slot tables ``(N, 5, C')`` and ``(W, C')``."""
        dtype = node_table.dtype
        fields = {k: graph[k] for k in NODE_FIELDS if k in graph and k != "x"}
        fields = {k: v.to(dtype) if v.is_floating_point() else v for k, v in fields.items()}
        nodes = SimpleNamespace(x=node_table[:, :, 0], **fields)  # the graph of per-tensor normalised weights
        h = self.node_encoder(nodes) + self.node_features(node_table.reshape(node_table.shape[0], -1))  # (N, H)
        kernel_shape = graph.kernel_shape
        e = sum(k(edge_table[:, c:c + 1], kernel_shape) for c, k in enumerate(self.edge_kernels))  # (E, H)
        e = self.edge_mlp(e / math.sqrt(self.in_channels) + self.edge_type(graph.edge_type))  # (E, H)
        return h, e

    def forward(self, features: Tensor, segments: Segments, graph, placement: GraphPlacement,
                progress: Tensor | None = None) -> Tensor:
        # record_function: the stages the step-overhead benchmark profiles (benchmarks/bench_optim.py)
        with record_function("lopt.embed"):
            mask = features.new_ones(features.shape[0], 1)  # (P, 1): the trainable entries
            node_table, edge_table = placement.scatter(torch.cat([features, mask], dim=1))  # (N, 5, C'), (W, C')
            h, e = self.embed(graph, node_table, edge_table)
        with record_function("lopt.message_passing"):
            for conv in self.convs:
                h, e = conv(h, graph.edge_index, e)
        with record_function("lopt.head"):
            node_ctx, edge_ctx = self.head(h, e, graph.kernel_shape, edge_table.shape[0])  # (N, D * 5), (W, D)
            node_ctx = node_ctx.view(h.shape[0], -1, NODE_FEATURE_DIM).transpose(1, 2)  # (N, D, 5) -> (N, 5, D)
            context = placement.gather(node_ctx, edge_ctx)  # (P, D)
        with record_function("lopt.output"):
            roles = placement.roles(graph) if self.output.role_offsets else None  # (P, 3)
            return self.output(features, segments, context, progress, roles)  # (P,)

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(hidden_dim={c['hidden_dim']}, num_layers={c['num_layers']}, "
                f"context_dim={c['context_dim']}, betas={self.betas})")
