"""Sampling and applying permutation symmetries of any converted model."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..convert import build_layout
from ..convert.layout import Layout

__all__ = ["RandomPermutation", "permute_model", "random_permutation"]


def random_permutation(layout: Layout, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(N,)``: a random symmetry of ``layout``'s model as a node relabelling (old node ``i`` -> ``perm[i]``),
    composed over every symmetry group."""
    return layout.random_node_permutation(generator)


def permute_model(model: nn.Module, perm: torch.Tensor, example_inputs: Sequence[torch.Tensor] | None = None,
                  layout: Layout | None = None) -> nn.Module:
    """A copy of ``model`` whose hidden neurons are relabelled by ``perm`` (a symmetry: the same function)."""
    layout = layout or build_layout(model, _tuple(example_inputs))
    return layout.from_graph(layout.permute_graph(layout.to_graph(model), perm), model)


class RandomPermutation:
    """PyG transform: a graph relabelled by a fresh random symmetry of its model at every call (augmentation).

    Args:
        layout: the layout of the graphs' architecture (:func:`nngraph.build_layout`).
        generator: random source (default: torch's global one).
    """

    def __init__(self, layout: Layout, generator: torch.Generator | None = None):
        self.layout, self.generator = layout, generator

    def __call__(self, graph):
        return self.layout.permute_graph(graph, self.layout.random_node_permutation(self.generator))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.layout.symmetries)} symmetry groups)"


def _tuple(example_inputs):
    return (example_inputs,) if isinstance(example_inputs, torch.Tensor) else example_inputs
