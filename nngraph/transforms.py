"""PyG transforms on neural graphs: ``ZooDataset(root, transform=AddProbeFeatures(...))`` or on batches.

:class:`AddProbeFeatures` gives every graph ``probe`` :math:`(N, P)`, each neuron's value on ``P`` fixed
inputs (:func:`nngraph.probe_features`), computed from the graph itself: the graph's features are
written into a copy of the architecture's module (:func:`nngraph.from_graph`) and the inputs run through
it. Edited or augmented graphs therefore get the probe values of the function they now hold.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from .convert import from_graph, probe_features

__all__ = ["AddProbeFeatures"]


class AddProbeFeatures(BaseTransform):
    r"""Sets ``data.probe`` to each neuron's value on fixed probe inputs, for graphs of one architecture.

    Args:
        module (torch.nn.Module): a model of the graphs' architecture (its own weights are not used: each
            graph's are written into a copy).
        inputs (torch.Tensor or sequence of torch.Tensor): ``P`` probe inputs along dimension 0 (a tuple for
            several model inputs), e.g. coordinates :math:`(P, 2)` for SIRENs or images :math:`(P, C, H, W)`.
        append (bool): concatenate to an existing ``probe`` instead of replacing it. (default: :obj:`False`)

    Shapes:
        - **input:** a graph of ``to_graph(module)``'s structure with :math:`N` nodes
        - **output:** the same graph (a shallow copy) with ``probe`` :math:`(N, P)`, or
          :math:`(N, P_\text{old} + P)` with ``append``

    Raises:
        GraphMismatchError: if a graph is not of ``module``'s architecture.
    """

    def __init__(self, module: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], append: bool = False):
        if not isinstance(module, nn.Module):
            raise TypeError(f"AddProbeFeatures(module, inputs): module must be an nn.Module, got {type(module).__name__}")
        self.inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        if not self.inputs or any(not isinstance(t, torch.Tensor) or t.dim() == 0 for t in self.inputs):
            raise ValueError("AddProbeFeatures: inputs must be tensors with the probes along dimension 0")
        self.module = copy.deepcopy(module)
        self.append = append

    def forward(self, data: Data) -> Data:
        model = from_graph(data, self.module)  # a copy holding this graph's weights
        probe = probe_features(model, self.inputs).to(data.x.dtype)  # (N, P)
        out = copy.copy(data)
        old = getattr(data, "probe", None)
        out.probe = torch.cat([old, probe], dim=-1) if self.append and old is not None else probe  # (N, P_old + P)
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(probes={self.inputs[0].shape[0]}, append={self.append})"
