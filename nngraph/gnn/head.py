"""Equivariant per-node and per-edge head: predicts a delta for every bias and weight."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nngraph.schema import NODE_FEATURE_DIM

from .kernel import MAX_KERNEL_BOX, KernelDecoder
from .utils import make_act


class NodeEdgeHead(nn.Module):
    r"""Maps node and edge embeddings to deltas for ``data.x`` and ``data.edge_attr``.

    As in the INR-editing model of `Kofinas et al. (ICLR 2024) <https://arxiv.org/abs/2403.12143>`_,
    both outputs are multiplied by a learnable scale :math:`s` initialised at ``init_scale`` (0.01), so
    an untrained head barely moves the weights:

    .. math::
        \Delta\mathbf{x}_v = s \cdot \mathbf{W}_2^{n}\,\sigma(\mathbf{W}_1^{n}\mathbf{h}_v)
        \qquad
        \Delta\mathbf{w}_{uv} = s \cdot \operatorname{crop}_{s(uv)}\big(
            \mathbf{W}_2^{e}\,\sigma(\mathbf{W}_1^{e}\mathbf{e}_{uv})\big)

    The edge output is a :class:`~nngraph.gnn.kernel.KernelDecoder`: a kernel is predicted in
    ``max_kernel_box`` and cropped to each edge's ``kernel_shape``, laid out as the batch's
    ``edge_attr`` (one row per kernel entry). Applied per node and per edge, the head is
    equivariant. Add the deltas to the graph (``x + dx``, ``edge_attr + de``) and read the weights
    back with the converter's ``from_graph``; entries that hold no parameter (identity edges,
    absent norm columns) should be masked by the task.

    With ``num_outputs`` :math:`k > 1` the head predicts :math:`k` deltas per parameter (the output
    ensembles of `Dayan, Eitan & Maron (ICML 2026)`: the edited model is the mean of the :math:`k` models
    ``x + dx_j``, ``edge_attr + de_j``). Only the last layers widen (:math:`\mathbf{W}_2^n`,
    :math:`\mathbf{W}_2^e`); delta :math:`j` of node :math:`v` is ``dx.view(N, k, node_out_dim)[v, j]``
    and of kernel entry :math:`r` is ``de[r, j]``. With :math:`k = 1` the parameters, their
    initialisation and the outputs are those of the single-output head.

    Args:
        hidden_dim (int): width :math:`H` of node and edge embeddings.
        node_out_dim (int): width of the node delta. (default: :obj:`5`, the columns of ``data.x``)
        max_kernel_box (tuple[int, int, int]): largest kernel box accepted. (default: :obj:`(3, 7, 7)`)
        init_scale (float): initial value of the learnable output scale. (default: :obj:`0.01`)
        act (str): activation. (default: :obj:`"silu"`)
        num_outputs (int): deltas :math:`k` predicted per parameter. (default: :obj:`1`)
        head_dim (int, optional): width of the head's hidden layers. (default: :obj:`hidden_dim`)

    Shapes:
        - **input:** nodes :math:`(N, H)`, edges :math:`(E, H)`, ``kernel_shape`` :math:`(E, 3)`, the
          number :math:`W` of rows of ``edge_attr`` (optional)
        - **output:** node deltas :math:`(N, k \cdot \text{node\_out\_dim})` (delta-major), edge deltas
          :math:`(W, k)`; for :math:`k = 1` these are :math:`(N, \text{node\_out\_dim})` and
          :math:`(W, 1)`, laid out as ``x`` and ``edge_attr``
    """

    def __init__(self, hidden_dim: int, node_out_dim: int = NODE_FEATURE_DIM,
                 max_kernel_box: Sequence[int] = MAX_KERNEL_BOX, init_scale: float = 0.01, act: str = "silu",
                 num_outputs: int = 1, head_dim: int | None = None):
        super().__init__()
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be at least 1, got {num_outputs}")
        head_dim = hidden_dim if head_dim is None else head_dim
        if head_dim < 1:
            raise ValueError(f"head_dim must be at least 1, got {head_dim}")
        self.hidden_dim = hidden_dim
        self.node_out_dim = node_out_dim
        self.init_scale = init_scale
        self.num_outputs = num_outputs
        self.head_dim = head_dim
        self.node_mlp = nn.Sequential(nn.Linear(hidden_dim, head_dim), make_act(act),
                                      nn.Linear(head_dim, node_out_dim * num_outputs))
        self.edge_lin = nn.Linear(hidden_dim, head_dim)
        self.edge_act = make_act(act)
        self.edge_out = KernelDecoder(head_dim, max_kernel_box, out_channels=num_outputs)
        self.scale = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.node_mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        self.edge_lin.reset_parameters()
        self.edge_out.reset_parameters()
        nn.init.constant_(self.scale, self.init_scale)

    def forward(self, x: Tensor, edge_attr: Tensor, kernel_shape: Tensor | None,
                num_entries: int | None = None) -> tuple[Tensor, Tensor]:
        dx = self.node_mlp(x)  # (N, k * node_out_dim)
        de = self.edge_out(self.edge_act(self.edge_lin(edge_attr)), kernel_shape, num_entries)  # (W, k)
        return self.scale * dx, self.scale * de

    def __repr__(self) -> str:
        extra = "" if self.num_outputs == 1 else f", num_outputs={self.num_outputs}"
        extra += "" if self.head_dim == self.hidden_dim else f", head_dim={self.head_dim}"
        return (f"{self.__class__.__name__}({self.hidden_dim}, node_out_dim={self.node_out_dim}, "
                f"max_kernel_box={self.edge_out.max_kernel_box}, init_scale={self.init_scale}{extra})")
