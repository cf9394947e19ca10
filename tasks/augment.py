"""Sign-flip augmentation: the symmetry of odd activations that the graph does not capture.

For an odd activation (``sin``, ``tanh``), negating a hidden neuron's incoming weights and bias together
with its outgoing weights leaves the network's function unchanged. On a neural graph: draw ``s_v = +-1``
for every flippable neuron (``s_v = 1`` for the rest), multiply every edge by ``s_src * s_dst`` (an edge
between two flipped neurons keeps its sign), every bias by ``s_v``, and probe features by ``s_v``.
"""
from __future__ import annotations

import copy

import torch
from torch_geometric.transforms import BaseTransform

from nngraph import schema
from nngraph.kernels import expand_to_entries

__all__ = ["ODD_ACTIVATIONS", "SignFlip", "apply_signs", "flippable_nodes", "sign_flip"]

ODD_ACTIVATIONS = (schema.Activation.SINE, schema.Activation.TANH)
_FLIPPABLE_KINDS = (schema.NodeKind.LINEAR, schema.NodeKind.CONV)
#: poolings that commute with negation (linear in the value: picks of positions too); max, min and Lp
#: poolings do not
_ODD_POOLS = (schema.Pool.NONE, schema.Pool.AVG, schema.Pool.ADAPTIVE_AVG, schema.Pool.MEAN, schema.Pool.SUM,
              schema.Pool.SELECT, schema.Pool.SLICE, schema.Pool.FLIP, schema.Pool.ROLL, schema.Pool.REORDER)


def flippable_nodes(graph) -> torch.Tensor:
    """``(N,)`` bool: hidden linear/conv neurons with an odd activation, touched only by weight edges.

    Neurons that feed a residual sum, a norm or any other identity edge are left alone, and so are
    neurons whose value is max-, min- or Lp-pooled (``max(-v) = -min(v)``): negating them would change
    the function.
    """
    odd = torch.zeros_like(graph.act, dtype=torch.bool)
    for a in ODD_ACTIVATIONS:
        odd |= graph.act == int(a)
    kind_ok = torch.zeros_like(odd)
    for k in _FLIPPABLE_KINDS:
        kind_ok |= graph.node_kind == int(k)
    ok = odd & kind_ok & (graph.node_type == int(schema.NodeType.HIDDEN))
    if "pool" in graph:
        linear_pools = torch.zeros_like(graph.pool, dtype=torch.bool)  # (N, MAX_POOLS)
        for kind in _ODD_POOLS:
            linear_pools |= graph.pool == int(kind)
        ok &= linear_pools.all(-1)
    structural = graph.edge_index[:, graph.edge_type != int(schema.EdgeType.WEIGHT)].reshape(-1)  # (2 * E_s,)
    ok[structural] = False
    return ok


def sign_flip(graph, p: float = 0.5, generator: torch.Generator | None = None):
    """A copy of ``graph`` (a ``Data`` or a ``Batch``) with each flippable neuron negated with probability ``p``.

    Shapes:
        - ``x`` :math:`(N, F)`, ``edge_attr`` :math:`(W, 1)`, ``probe`` :math:`(N, P)` keep their shapes.
    """
    ok = flippable_nodes(graph)
    draw = torch.rand(ok.shape, generator=generator, device="cpu").to(ok.device) < p
    sign = torch.where(ok & draw, -1.0, 1.0).to(graph.x.dtype)  # (N,)
    return apply_signs(graph, sign)


def apply_signs(graph, sign: torch.Tensor):
    """A copy of ``graph`` with neuron ``v`` multiplied by ``sign[v]`` (``+-1``): its bias, its probe
    features, and every edge by ``sign[src] * sign[dst]``. A function-preserving symmetry only where
    ``sign`` is ``-1`` on :func:`flippable_nodes` alone.

    Shapes:
        - ``sign`` :math:`(N,)`; ``x``, ``edge_attr``, ``probe`` keep their shapes.
    """
    src, dst = graph.edge_index
    out = copy.copy(graph)  # shallow: shares the untouched tensors
    factor = expand_to_entries(sign[src] * sign[dst], graph.kernel_shape, graph.edge_attr.size(0))  # (W,)
    out.edge_attr = graph.edge_attr * factor.unsqueeze(-1).to(graph.edge_attr.dtype)  # (W, 1): every kernel entry
    x = graph.x.clone()
    x[:, schema.BIAS] = x[:, schema.BIAS] * sign.to(x.dtype)
    out.x = x
    if getattr(graph, "probe", None) is not None:
        out.probe = graph.probe * sign.unsqueeze(-1).to(graph.probe.dtype)  # (N, P)
    return out


class SignFlip(BaseTransform):
    """:func:`sign_flip` as a PyG transform (``ZooDataset(transform=SignFlip())``, or on batches).

    Args:
        p (float): probability of negating each flippable neuron. (default: :obj:`0.5`)
        generator (torch.Generator, optional): the random draws' source. (default: :obj:`None`)
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p, self.generator = p, generator

    def forward(self, data):
        return sign_flip(data, self.p, self.generator)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p})"
