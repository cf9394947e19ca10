"""Flattening ``(B, C, *S) -> (B, C * prod(S))``: the neurons stay the channels, each spanning the positions ``S``.

A helper, not a converter (it registers nothing): ``nn.Flatten`` (:mod:`~nngraph.convert.structural`) and the
reshapes of :mod:`~nngraph.convert.movement` both flatten with it, so it sits below them.
"""
from __future__ import annotations

from .errors import UnsupportedError, describe
from .values import TensorValue

__all__ = ["flatten_channels"]


def flatten_channels(ctx, node, x: TensorValue) -> TensorValue:
    """``(B, C, *S) -> (B, C * prod(S))``: the neurons stay the channels, each spanning positions ``S``."""
    shape = ctx.shape_of(node)
    if x.nodes is None:  # flattening a model input: every feature becomes an input neuron
        return TensorValue(nodes=None, shape=shape, axis=len(shape) - 1, source=x.source, pending=x.pending)
    if tuple(shape) == tuple(x.shape):
        return x
    if x.axis != 1 or x.spatial or len(shape) != 2 or shape[0] != x.shape[0]:
        raise UnsupportedError(
            f"{describe(node)} reshapes {tuple(x.shape)} (neurons on axis {x.axis}) into {tuple(shape)}; only "
            "flattening (B, C, *spatial) into (B, C * prod(spatial)) is supported"
        )
    spatial = tuple(x.shape[2:])
    if all(s == 1 for s in spatial):  # (B, C, 1, 1) after global pooling: one value per neuron
        spatial = ()
    return x.with_(shape=shape, axis=1, spatial=spatial)
