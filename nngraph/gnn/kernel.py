"""Size-agnostic linear maps between edge kernels and feature vectors.

Every edge of a neural graph carries a kernel zero-padded around its centre into the graph's
``kernel_box`` (see :mod:`nngraph.schema`). Graphs batched together share one box, but the same
kernel may arrive padded into a ``(1, 3, 3)`` box in one batch and a ``(1, 5, 5)`` box in another.

Both maps here own one weight per position of a fixed, larger ``max_kernel_box`` and, for a given
``kernel_box``, use only the positions that box covers once it is centred in ``max_kernel_box``.
That is exactly a linear map applied to the kernel zero-padded into ``max_kernel_box``, without
materialising the padding: the same kernel gives the same result in every box, and the cost is
``K = prod(kernel_box)`` per edge rather than ``prod(max_kernel_box)``.

Centring follows the schema: a kernel of size ``k`` sits at offset ``(m - k) // 2`` inside a box of
size ``m`` (for even sizes the extra zero goes after the kernel).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: Default largest kernel box the GNN accepts: 3D kernels up to 3x7x7 (ResNet stems are 7x7).
MAX_KERNEL_BOX = (3, 7, 7)


def box_tuple(kernel_box: Tensor | Sequence[int] | None, kernel_size: int) -> tuple[int, int, int]:
    r"""Reads the ``(depth, height, width)`` box shared by the graphs of a batch.

    Args:
        kernel_box (Tensor or sequence, optional): ``batch.kernel_box``, shape :math:`(B, 3)` or
            :math:`(3,)`. If :obj:`None`, only ``kernel_size == 1`` is accepted (box ``(1, 1, 1)``).
        kernel_size (int): the width :math:`K` of ``edge_attr``, checked against the box.
    """
    if kernel_box is None:
        if kernel_size != 1:
            raise ValueError(
                f"edge_attr has {kernel_size} columns but the graph has no 'kernel_box'; "
                "build graphs with nngraph.to_graph or set data.kernel_box = torch.tensor([[d, h, w]])")
        return (1, 1, 1)
    if isinstance(kernel_box, Tensor):
        kb = kernel_box.reshape(-1, 3)  # (B, 3)
        if kb.size(0) > 1 and not bool((kb == kb[:1]).all()):
            raise ValueError(
                "graphs in one batch have different kernel boxes "
                f"{sorted(set(map(tuple, kb.tolist())))}; pad them to one box with nngraph.batch_graphs")
        box = tuple(int(v) for v in kb[0].tolist())
    else:
        box = tuple(int(v) for v in kernel_box)
    if len(box) != 3 or math.prod(box) != kernel_size:
        raise ValueError(f"kernel_box {box} does not match edge_attr width {kernel_size}")
    return box  # type: ignore[return-value]


def centred_positions(kernel_box: Sequence[int], max_kernel_box: Sequence[int],
                      device: torch.device | None = None) -> Tensor:
    r"""Flat (C-order) indices into ``max_kernel_box`` of every position of ``kernel_box`` centred in it.

    Shapes:
        - **output:** :math:`(K,)` long, :math:`K = \prod \text{kernel\_box}`
    """
    if any(k > m for k, m in zip(kernel_box, max_kernel_box)):
        raise ValueError(
            f"kernel_box {tuple(kernel_box)} does not fit into max_kernel_box {tuple(max_kernel_box)}; "
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
    r"""Linear map from an edge kernel to ``out_channels`` features, independent of the padding box.

    .. math::
        \mathbf{y}_{uv} = \mathbf{W}^{\top} \operatorname{pad}_{B_{\max}}(\mathbf{w}_{uv}) + \mathbf{b}

    Args:
        out_channels (int): output width.
        max_kernel_box (tuple[int, int, int]): largest box accepted. (default: :obj:`(3, 7, 7)`)
        bias (bool): learn an additive bias. (default: :obj:`True`)

    Shapes:
        - **input:** edge kernels :math:`(E, K)`, kernel box :math:`(B, 3)` or :math:`(3,)`
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

    def forward(self, edge_attr: Tensor, kernel_box: Tensor | Sequence[int] | None) -> Tensor:
        box = box_tuple(kernel_box, edge_attr.size(-1))
        out = edge_attr @ self.sliced(box)  # (E, out_channels)
        return out if self.bias is None else out + self.bias

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(max_kernel_box={self.max_kernel_box}, out_channels={self.channels})"


class KernelDecoder(_BoxWeight):
    r"""Linear map from ``in_channels`` edge features to a kernel in the batch's box.

    The transpose of :class:`KernelLinear`: the output is the centre block of a kernel predicted in
    ``max_kernel_box``, so a kernel's prediction does not depend on the box it is padded into.

    .. math::
        \mathbf{w}_{uv} = \operatorname{crop}_{B}\big(\mathbf{W} \mathbf{h}_{uv} + \mathbf{b}\big)

    Args:
        in_channels (int): input width.
        max_kernel_box (tuple[int, int, int]): largest box accepted. (default: :obj:`(3, 7, 7)`)
        bias (bool): learn an additive bias. (default: :obj:`True`)

    Shapes:
        - **input:** edge features :math:`(E, \text{in\_channels})`, kernel box :math:`(B, 3)` or :math:`(3,)`
        - **output:** :math:`(E, K)`
    """

    def __init__(self, in_channels: int, max_kernel_box: Sequence[int] = MAX_KERNEL_BOX, bias: bool = True):
        super().__init__(in_channels, max_kernel_box)
        self.bias = nn.Parameter(torch.empty(self.weight.size(0))) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, edge_feat: Tensor, kernel_box: Tensor | Sequence[int] | None, kernel_size: int) -> Tensor:
        box = box_tuple(kernel_box, kernel_size)
        weight = self.sliced(box)  # (K, in_channels)
        out = edge_feat @ weight.t()  # (E, K)
        if self.bias is None:
            return out
        pos = self._positions.get((box, self.weight.device))
        bias = self.bias if pos is None or pos.numel() == self.bias.numel() else self.bias.index_select(0, pos)
        return out + bias  # (E, K)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(in_channels={self.channels}, max_kernel_box={self.max_kernel_box})"
