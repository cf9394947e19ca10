"""Sign-flip and positive-scale augmentation: the symmetries of activations that the graph does not capture.

For an odd activation (``sin``, ``tanh``), negating a hidden neuron's incoming weights and bias together
with its outgoing weights leaves the network's function unchanged. On a neural graph: draw ``s_v = +-1``
for every flippable neuron (``s_v = 1`` for the rest), multiply every edge by ``s_src * s_dst`` (an edge
between two flipped neurons keeps its sign), every bias by ``s_v``, and probe features by ``s_v``.

For a positively homogeneous activation (``relu``, ``leaky_relu``: ``f(s z) = s f(z)`` for ``s > 0``),
multiplying a hidden neuron's incoming weights and bias by ``s`` and dividing its outgoing weights by ``s``
does the same (the symmetry ScaleGMN builds in): every edge is multiplied by ``s_dst / s_src``.
"""
from __future__ import annotations

import copy
import math

import torch
from torch_geometric.transforms import BaseTransform

from .. import schema
from ..blocks import is_blocked, materialize
from ..kernels import expand_to_entries

__all__ = ["ODD_ACTIVATIONS", "HOMOGENEOUS_ACTIVATIONS", "SignFlip", "apply_scales", "apply_signs", "flippable_nodes",
           "positive_scale", "scalable_nodes", "sign_flip", "symmetry_augment"]

ODD_ACTIVATIONS = (schema.Activation.SINE, schema.Activation.TANH)
#: ``f(s z) = s f(z)`` for every ``s > 0`` (``relu6``, ``hardtanh`` and ``threshold`` clip at a constant: not these)
HOMOGENEOUS_ACTIVATIONS = (schema.Activation.RELU, schema.Activation.LEAKY_RELU)
_FLIPPABLE_KINDS = (schema.NodeKind.LINEAR, schema.NodeKind.CONV)
#: poolings that commute with negation (linear in the value: picks of positions too); max, min and Lp
#: poolings do not
_ODD_POOLS = (schema.Pool.NONE, schema.Pool.AVG, schema.Pool.ADAPTIVE_AVG, schema.Pool.MEAN, schema.Pool.SUM,
              schema.Pool.SELECT, schema.Pool.SLICE, schema.Pool.FLIP, schema.Pool.ROLL, schema.Pool.REORDER)


def _symmetric_nodes(graph, activations, pools) -> torch.Tensor:
    """``(N,)`` bool: hidden linear/conv neurons with one of ``activations``, every pooling in ``pools``,
    touched only by weight edges."""
    act_ok = torch.zeros_like(graph.act, dtype=torch.bool)
    for a in activations:
        act_ok |= graph.act == int(a)
    kind_ok = torch.zeros_like(act_ok)
    for k in _FLIPPABLE_KINDS:
        kind_ok |= graph.node_kind == int(k)
    ok = act_ok & kind_ok & (graph.node_type == int(schema.NodeType.HIDDEN))
    if "pool" in graph:
        pool_ok = torch.zeros_like(graph.pool, dtype=torch.bool)  # (N, MAX_POOLS)
        for kind in pools:
            pool_ok |= graph.pool == int(kind)
        ok &= pool_ok.all(-1)
    if is_blocked(graph):  # every node a structural block holds, without listing the weights' edges
        for block in graph.edge_blocks.blocks:
            if block.edge_type != int(schema.EdgeType.WEIGHT):
                ok[block.src] = False
                ok[block.dst] = False
        return ok
    structural = graph.edge_index[:, graph.edge_type != int(schema.EdgeType.WEIGHT)].reshape(-1)  # (2 * E_s,)
    ok[structural] = False
    return ok


def flippable_nodes(graph) -> torch.Tensor:
    """``(N,)`` bool: hidden linear/conv neurons with an odd activation, touched only by weight edges.

    Neurons that feed a residual sum, a norm or any other identity edge are left alone, and so are
    neurons whose value is max-, min- or Lp-pooled (``max(-v) = -min(v)``): negating them would change
    the function.
    """
    return _symmetric_nodes(graph, ODD_ACTIVATIONS, _ODD_POOLS)


#: every pooling commutes with a positive scale (max, min and Lp too); a score offset is an attention record
_HOMOGENEOUS_POOLS = tuple(p for p in schema.Pool if p != schema.Pool.SCORE_OFFSET)


def scalable_nodes(graph) -> torch.Tensor:
    """``(N,)`` bool: hidden linear/conv neurons with a positively homogeneous activation
    (:data:`HOMOGENEOUS_ACTIVATIONS`), touched only by weight edges (not feeding a residual sum, a norm, a
    gate or an attention score, which a scale would change)."""
    return _symmetric_nodes(graph, HOMOGENEOUS_ACTIVATIONS, _HOMOGENEOUS_POOLS)


def sign_flip(graph, p: float = 0.5, generator: torch.Generator | None = None, fixed_columns: int = 0):
    """A copy of ``graph`` (a ``Data`` or a ``Batch``) with each flippable neuron negated with probability ``p``
    (``fixed_columns``: as :func:`apply_scales`).

    Shapes:
        - ``x`` :math:`(N, F)`, ``edge_attr`` :math:`(W, 1)`, ``probe`` :math:`(N, P)` keep their shapes.
    """
    ok = flippable_nodes(graph)
    draw = torch.rand(ok.shape, generator=generator, device="cpu").to(ok.device) < p
    sign = torch.where(ok & draw, -1.0, 1.0).to(graph.x.dtype)  # (N,)
    return apply_scales(graph, sign, fixed_columns)


def positive_scale(graph, max_factor: float = 2.0, generator: torch.Generator | None = None, fixed_columns: int = 0):
    """A copy of ``graph`` with each :func:`scalable_nodes` neuron scaled by ``s``, ``log s`` uniform in
    ``[-log max_factor, log max_factor]`` (:func:`apply_scales`, with ``fixed_columns``).

    Shapes:
        - ``x`` :math:`(N, F)`, ``edge_attr`` :math:`(W, 1)`, ``probe`` :math:`(N, P)` keep their shapes.
    """
    if max_factor < 1.0:
        raise ValueError(f"max_factor must be at least 1, got {max_factor}")
    ok = scalable_nodes(graph)
    log_s = (torch.rand(ok.shape, generator=generator, device="cpu").to(ok.device) * 2 - 1) * math.log(max_factor)
    scale = torch.where(ok, log_s.exp(), 1.0).to(graph.x.dtype)  # (N,)
    return apply_scales(graph, scale, fixed_columns)


def symmetry_augment(graph, p: float = 0.5, max_factor: float = 2.0, generator: torch.Generator | None = None,
                     fixed_columns: int = 0):
    """Both symmetries at once: :func:`sign_flip` of the odd neurons and :func:`positive_scale` of the
    positively homogeneous ones (the two sets do not overlap)."""
    return positive_scale(sign_flip(graph, p, generator, fixed_columns), max_factor, generator, fixed_columns)


def apply_signs(graph, sign: torch.Tensor):
    """A copy of ``graph`` with neuron ``v`` multiplied by ``sign[v]`` (``+-1``): :func:`apply_scales`. A
    function-preserving symmetry only where ``sign`` is ``-1`` on :func:`flippable_nodes` alone.

    Shapes:
        - ``sign`` :math:`(N,)`; ``x``, ``edge_attr``, ``probe`` keep their shapes.
    """
    return apply_scales(graph, sign)


def apply_scales(graph, scale: torch.Tensor, fixed_columns: int = 0):
    """A copy of ``graph`` with neuron ``v`` multiplied by ``scale[v]`` (non-zero): its bias and probe features
    by ``scale[v]``, every edge by ``scale[dst] / scale[src]`` (``scale[src] * scale[dst]`` for signs).
    Function-preserving only where ``scale`` is ``-1`` on :func:`flippable_nodes` or positive on
    :func:`scalable_nodes`, and 1 elsewhere. The last ``fixed_columns`` columns of ``probe`` are not values of
    the neurons (positional features a twin reads, which stay with the node's position) and are left alone.

    Shapes:
        - ``scale`` :math:`(N,)`; ``x``, ``edge_attr``, ``probe`` keep their shapes.
    """
    graph = materialize(graph)
    src, dst = graph.edge_index
    out = copy.copy(graph)  # shallow: shares the untouched tensors
    factor = expand_to_entries(scale[dst] / scale[src], graph.kernel_shape, graph.edge_attr.size(0))  # (W,)
    out.edge_attr = graph.edge_attr * factor.unsqueeze(-1).to(graph.edge_attr.dtype)  # (W, 1): every kernel entry
    x = graph.x.clone()
    x[:, schema.BIAS] = x[:, schema.BIAS] * scale.to(x.dtype)
    out.x = x
    if getattr(graph, "probe", None) is not None:
        moving = graph.probe.shape[1] - fixed_columns
        factor = scale.unsqueeze(-1).to(graph.probe.dtype)  # (N, 1)
        out.probe = torch.cat([graph.probe[:, :moving] * factor, graph.probe[:, moving:]], dim=1)  # (N, P)
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
