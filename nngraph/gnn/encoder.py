"""The permutation-equivariant encoder of neural graphs."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .conv import NeuralGraphConv
from .edge_encoder import EdgeEncoder
from .kernel import MAX_KERNEL_BOX
from .node_encoder import NodeEncoder
from .readout import GraphReadout
from .segment import message_index


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

    def encode(self, batch) -> tuple[Tensor, Tensor]:
        r"""Node and edge embeddings after the last layer, in the order of ``batch.x`` / ``batch.edge_index``.

        Equivariant: relabelling hidden neurons of a source model permutes the rows accordingly.

        Returns:
            ``(h, e)``: node embeddings :math:`(N, H)` and edge embeddings :math:`(E, H)`.
        """
        h = self.node_encoder(batch)  # (N, H)
        e = self.edge_encoder(batch)  # (E, H)
        index = message_index(batch.edge_index, h.size(0))  # shared by all layers
        for conv in self.convs:
            h, e = conv(h, batch.edge_index, e, index)
        return h, e

    def forward(self, batch) -> Tensor:
        h, e = self.encode(batch)
        return self.readout(h, e, batch.edge_index, getattr(batch, "batch", None),
                            getattr(batch, "num_graphs", None), batch.node_type)  # (B, out_dim)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(out_dim={self.out_dim}, hidden_dim={self.hidden_dim}, "
                f"num_layers={self.num_layers}, probe_dim={self.probe_dim})")
