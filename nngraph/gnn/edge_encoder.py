"""Initial edge embeddings of a neural graph."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from nngraph.schema import NUM_EDGE_TYPES

from .compat import load_appended_rows
from .kernel import MAX_KERNEL_BOX, KernelLinear
from .utils import make_mlp


class EdgeEncoder(nn.Module):
    r"""Embeds every edge from its kernel, of any shape, and its type.

    .. math::
        \mathbf{e}^{(0)}_{uv} = \mathrm{MLP}\big(\mathbf{W}^{\top}\operatorname{pad}_{B_{\max}}(\mathbf{w}_{uv})
        + \mathbf{e}_{\text{type}(uv)}\big)

    The kernel map is a :class:`~nngraph.gnn.kernel.KernelLinear`: it equals a linear map on the
    kernel zero-padded into ``max_kernel_box``, so 1x1 weights (an ``nn.Linear`` weight is a 1x1
    kernel), 3x3 and 7x7 kernels of one batch share one embedding space.

    Args:
        hidden_dim (int): embedding width.
        max_kernel_box (tuple[int, int, int]): largest kernel box accepted. (default: :obj:`(3, 7, 7)`)
        act (str): activation of the MLP. (default: :obj:`"silu"`)

    Shapes:
        - **input:** ``edge_attr`` :math:`(W, 1)`, ``edge_type`` :math:`(E,)`, ``kernel_shape`` :math:`(E, 3)`
        - **output:** :math:`(E, \text{hidden\_dim})`
    """

    def __init__(self, hidden_dim: int, max_kernel_box: Sequence[int] = MAX_KERNEL_BOX, act: str = "silu"):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.kernel = KernelLinear(hidden_dim, max_kernel_box)
        self.emb_type = nn.Embedding(NUM_EDGE_TYPES, hidden_dim)
        self.mlp = make_mlp(hidden_dim, hidden_dim, hidden_dim, act)
        self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        load_appended_rows(self, state_dict, prefix, ("emb_type",))  # checkpoints of older formats
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_parameters(self):
        self.kernel.reset_parameters()
        # as large as the kernel map of a unit-sized weight (uniform(-1, 1): std 3 ** -0.5), not 1.7x larger
        nn.init.normal_(self.emb_type.weight, std=3 ** -0.5)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, data) -> Tensor:
        """Embeds the edges of ``data``."""
        e = self.kernel(data.edge_attr, getattr(data, "kernel_shape", None))  # (E, H)
        return self.mlp(e + self.emb_type(data.edge_type))  # (E, H)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_dim}, max_kernel_box={self.kernel.max_kernel_box})"
