"""Symmetries of any converted model as a library feature: sample them, apply them, align models by them.

A model's neural graph knows its permutation symmetries exactly (:attr:`nngraph.convert.Layout.symmetries`:
hidden neurons, attention heads and norm groups as blocks, tied spaces), for every architecture the converter
handles; odd and positively homogeneous activations add sign flips and positive scales of some neurons.

- :mod:`~nngraph.symmetry.permute`: :func:`random_permutation` (``(N,)`` old node -> new node),
  :func:`permute_model` (a model relabelled: the same function), :class:`RandomPermutation` (a PyG transform);
- :mod:`~nngraph.symmetry.scale`: :func:`sign_flip`, :func:`positive_scale`, :func:`symmetry_augment` and
  :class:`SignFlip` on graphs and batches, where they keep the function;
- :mod:`~nngraph.symmetry.match`: :func:`align` (a model relabelled, and flipped where that is a symmetry, to
  match a reference: weight matching, or activation matching with ``data``), :func:`align_graph` /
  :func:`align_all` on graphs;
- :mod:`~nngraph.symmetry.activations`: :func:`neuron_samples` (every neuron's values over inputs and positions,
  what activation matching correlates);
- :mod:`~nngraph.symmetry.rotate`: :func:`rotate_heads` (attention heads reordered and rotated towards a
  reference's: the continuous symmetry of queries, keys and values that permutations leave out);
- :mod:`~nngraph.symmetry.merge`: :func:`merge` (a weighted average after alignment),
  :func:`interpolation_barrier` and :func:`plot_barrier` (the loss on the path between two models).
"""
from __future__ import annotations

from .activations import neuron_samples
from .match import align, align_all, align_graph, weight_matching
from .merge import interpolate, interpolation_barrier, merge, plot_barrier, reset_norms
from .permute import RandomPermutation, permute_model, random_permutation
from .rotate import rotate_heads
from .scale import (
    HOMOGENEOUS_ACTIVATIONS,
    ODD_ACTIVATIONS,
    SignFlip,
    apply_scales,
    apply_signs,
    flippable_nodes,
    positive_scale,
    scalable_nodes,
    sign_flip,
    symmetry_augment,
)

__all__ = [
    "HOMOGENEOUS_ACTIVATIONS",
    "ODD_ACTIVATIONS",
    "RandomPermutation",
    "SignFlip",
    "align",
    "align_all",
    "align_graph",
    "apply_scales",
    "apply_signs",
    "flippable_nodes",
    "interpolate",
    "interpolation_barrier",
    "merge",
    "neuron_samples",
    "permute_model",
    "plot_barrier",
    "positive_scale",
    "random_permutation",
    "reset_norms",
    "rotate_heads",
    "scalable_nodes",
    "sign_flip",
    "symmetry_augment",
    "weight_matching",
]
