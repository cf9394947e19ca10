"""Linear maps between edge kernels of any size and feature vectors.

Every edge of a neural graph carries its kernel at its own size (see :mod:`nngraph.schema`):
``kernel_shape[e]`` is its ``(depth, height, width)`` and its entries are consecutive rows of
``edge_attr``. A batch may mix 1x1 weights, 3x3 and 7x7 kernels and flattened spatial maps.

Both maps here own one weight per position of a fixed ``max_kernel_box`` and treat a kernel of
shape ``s`` as if it were zero-padded, centred, into that box: they use only the positions ``s``
covers, without materialising the padding. Edges are grouped by kernel shape and every group is
one matrix product, so the cost is ``K_s = prod(s)`` per edge. When every kernel of a batch is 1x1
(MLPs, SIRENs) the map is one ``(E, 1) @ (1, H)`` product.

Centring: a kernel of size ``k`` sits at offset ``(m - k) // 2`` inside a box of size ``m`` (for
even sizes the extra zero goes after the kernel).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nngraph.kernels import kernel_groups

#: Default largest kernel box the GNN accepts: 3D kernels up to 3x7x7 (ResNet stems are 7x7).
MAX_KERNEL_BOX = (3, 7, 7)


def _check_rows(edge_attr: Tensor, kernel_shape: Tensor | None) -> None:
    if edge_attr.dim() != 2 or edge_attr.size(1) != 1:
        raise ValueError(
            f"edge_attr of shape {tuple(edge_attr.shape)}: neural graphs store every kernel entry as a row, "
            "(W, 1), with kernel_shape (E, 3); convert the models again with nngraph.to_graph")
    if kernel_shape is None:
        return
    if kernel_shape.dim() != 2 or kernel_shape.size(1) != 3:
        raise ValueError(f"kernel_shape must be (E, 3), got {tuple(kernel_shape.shape)}")


def centred_positions(kernel_box: Sequence[int], max_kernel_box: Sequence[int],
                      device: torch.device | None = None) -> Tensor:
    r"""Flat (C-order) indices into ``max_kernel_box`` of every position of a kernel of shape
    ``kernel_box`` centred in it.

    Shapes:
        - **output:** :math:`(K,)` long, :math:`K = \prod \text{kernel\_box}`
    """
    if any(k > m for k, m in zip(kernel_box, max_kernel_box)):
        raise ValueError(
            f"a kernel of shape {tuple(kernel_box)} does not fit into max_kernel_box {tuple(max_kernel_box)}; "
            "construct the encoder with a larger max_kernel_box")
    axes = [torch.arange(k, device=device) + (m - k) // 2 for k, m in zip(kernel_box, max_kernel_box)]
    d, h, w = torch.meshgrid(*axes, indexing="ij")  # each (kd, kh, kw)
    _, mh, mw = max_kernel_box
    return ((d * mh + h) * mw + w).reshape(-1)  # (K,)


class _BoxWeight(nn.Module):
    """Holds a ``(prod(max_kernel_box), channels)`` weight and slices it for a given box."""

    def __init__(self, channels: int, max_kernel_box: Sequence[int]):
        super().__init__()
        self.channels = channels
        self.max_kernel_box = tuple(int(v) for v in max_kernel_box)
        self.weight = nn.Parameter(torch.empty(math.prod(self.max_kernel_box), channels))
        self._positions: dict[tuple, Tensor] = {}

    def sliced(self, box: tuple[int, int, int]) -> Tensor:
        key = (box, self.weight.device)
        pos = self._positions.get(key)
        if pos is None:
            pos = centred_positions(box, self.max_kernel_box, self.weight.device)
            self._positions[key] = pos
        if pos.numel() == self.weight.size(0):
            return self.weight  # (K_max, C), the box is the max box
        return self.weight.index_select(0, pos)  # (K, C)


class KernelLinear(_BoxWeight):
    r"""Linear map from an edge kernel of any shape to ``out_channels`` features.

    .. math::
        \mathbf{y}_{uv} = \mathbf{W}^{\top} \operatorname{pad}_{B_{\max}}(\mathbf{w}_{uv}) + \mathbf{b}

    Args:
        out_channels (int): output width.
        max_kernel_box (tuple[int, int, int]): largest box accepted. (default: :obj:`(3, 7, 7)`)
        bias (bool): learn an additive bias. (default: :obj:`True`)

    Shapes:
        - **input:** kernel entries ``edge_attr`` :math:`(W, 1)`, ``kernel_shape`` :math:`(E, 3)`
          (:obj:`None`: every kernel is 1x1, :math:`W = E`)
        - **output:** :math:`(E, \text{out\_channels})`
    """

    def __init__(self, out_channels: int, max_kernel_box: Sequence[int] = MAX_KERNEL_BOX, bias: bool = True):
        super().__init__(out_channels, max_kernel_box)
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # Scaled as if every kernel had one entry: most edges are 1x1 and must not be drowned.
        nn.init.uniform_(self.weight, -1.0, 1.0)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, edge_attr: Tensor, kernel_shape: Tensor | None) -> Tensor:
        _check_rows(edge_attr, kernel_shape)
        if kernel_shape is None or edge_attr.size(0) == kernel_shape.size(0):  # every kernel is 1x1
            out = edge_attr @ self.sliced((1, 1, 1))  # (E, out_channels)
        else:
            flat = edge_attr.view(-1)  # (W,)
            out = edge_attr.new_empty(kernel_shape.size(0), self.channels)  # (E, out_channels)
            for shape, edges, rows in kernel_groups(kernel_shape, edge_attr.size(0)):
                out.index_copy_(0, edges, flat[rows] @ self.sliced(shape))  # (E_s, K_s) @ (K_s, C)
        return out if self.bias is None else out + self.bias

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(max_kernel_box={self.max_kernel_box}, out_channels={self.channels})"


class KernelDecoder(_BoxWeight):
    r"""Linear map from ``in_channels`` edge features to ``out_channels`` kernels of the edge's own shape.

    The transpose of :class:`KernelLinear`: output channel :math:`j` is the centre block, of the edge's
    ``kernel_shape``, of a kernel predicted in ``max_kernel_box``; it is laid out as the graph's
    ``edge_attr`` (one row per kernel entry), so ``edge_attr + delta[:, j:j + 1]`` is an edited graph.

    .. math::
        \mathbf{w}^{(j)}_{uv} = \operatorname{crop}_{s(uv)}\big(\mathbf{W}^{(j)} \mathbf{h}_{uv}
            + \mathbf{b}^{(j)}\big)

    Args:
        in_channels (int): input width.
        max_kernel_box (tuple[int, int, int]): largest box accepted. (default: :obj:`(3, 7, 7)`)
        bias (bool): learn an additive bias. (default: :obj:`True`)
        out_channels (int): kernels predicted per edge. (default: :obj:`1`)

    ``weight`` is :math:`(\prod B_{\max}, \text{out\_channels} \cdot \text{in\_channels})` (row: a box
    position; columns: :math:`\mathbf{W}^{(j)}` of each channel :math:`j` in turn) and ``bias``
    :math:`(\prod B_{\max} \cdot \text{out\_channels},)` (position-major); with one output channel they
    are the :math:`(\prod B_{\max}, \text{in\_channels})` matrix and the :math:`(\prod B_{\max},)` vector.

    Shapes:
        - **input:** edge features :math:`(E, \text{in\_channels})`, ``kernel_shape`` :math:`(E, 3)`
          (:obj:`None`: every kernel is 1x1), the number :math:`W` of kernel entries
        - **output:** :math:`(W, \text{out\_channels})`
    """

    def __init__(self, in_channels: int, max_kernel_box: Sequence[int] = MAX_KERNEL_BOX, bias: bool = True,
                 out_channels: int = 1):
        if out_channels < 1:
            raise ValueError(f"out_channels must be at least 1, got {out_channels}")
        super().__init__(in_channels * out_channels, max_kernel_box)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.bias = nn.Parameter(torch.empty(self.weight.size(0) * out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _bias(self, shape: tuple[int, int, int]) -> Tensor | None:
        """``(K_s * out_channels,)``, position-major: the bias at the positions of a kernel of ``shape``."""
        if self.bias is None:
            return None
        pos = self._positions.get((shape, self.weight.device))
        if pos is None or pos.numel() * self.out_channels == self.bias.numel():
            return self.bias
        if self.out_channels == 1:
            return self.bias.index_select(0, pos)  # (K_s,)
        return self.bias.view(-1, self.out_channels).index_select(0, pos).reshape(-1)  # (K_s * out_channels,)

    def _weight(self, shape: tuple[int, int, int]) -> Tensor:
        """``(K_s * out_channels, in_channels)``, position-major: the weight at the positions of ``shape``."""
        return self.sliced(shape).reshape(-1, self.in_channels)  # (K_s, C_out * C_in) -> (K_s * C_out, C_in)

    def forward(self, edge_feat: Tensor, kernel_shape: Tensor | None, num_entries: int | None = None) -> Tensor:
        if kernel_shape is not None and num_entries is None:
            num_entries = int(kernel_shape.long().prod(1).sum())
        if kernel_shape is None or num_entries == kernel_shape.size(0):  # every kernel is 1x1
            out = edge_feat @ self._weight((1, 1, 1)).t()  # (E, out_channels)
            bias = self._bias((1, 1, 1))  # (out_channels,)
            return out if bias is None else out + bias
        out = edge_feat.new_empty(num_entries, self.out_channels)  # (W, out_channels)
        for shape, edges, rows in kernel_groups(kernel_shape, num_entries):
            k = edge_feat[edges] @ self._weight(shape).t()  # (E_s, K_s * out_channels), position-major
            bias = self._bias(shape)
            k = k if bias is None else k + bias
            out.index_copy_(0, rows.reshape(-1), k.reshape(-1, self.out_channels))  # (E_s * K_s, out_channels)
        return out  # (W, out_channels)

    def __repr__(self) -> str:
        extra = "" if self.out_channels == 1 else f", out_channels={self.out_channels}"
        return (f"{self.__class__.__name__}(in_channels={self.in_channels}, "
                f"max_kernel_box={self.max_kernel_box}{extra})")
