"""Learned probes: the probe inputs are parameters, trained with the encoder (after ProbeGen, Kahana et al., 2025).

Probe features (every neuron's value on ``P`` inputs) are fixed inputs chosen by hand elsewhere (the INR's
pixel grid). Here they start at those inputs and move with the encoder's gradient: every forward computes the
batch's probe features from the graphs' own features (:func:`nngraph.batched_probe_features`, vectorised,
differentiable in the inputs), so a sign-flipped or relabelled graph gets its own model's features.
ProbeGen generates the probes with a small network; free inputs are the simplest member of that family.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

import nngraph

from .models import GraphPredictor
from .scaling import GraphScaler

__all__ = ["LearnedProbePredictor"]


class LearnedProbePredictor(GraphPredictor):
    """A :class:`GraphPredictor` whose ``probe`` features come from trainable probe inputs.

    Args:
        scaler, out_dim, hidden_dim, num_layers, dropout, kernel_box: as :class:`GraphPredictor`.
        template: a model of the graphs' one architecture (its values are not used; kept out of the
            parameters and the state dict).
        init_inputs: the probes' starting values, ``(P, *in_shape)``.

    Shapes:
        - input: a batch of graphs of ``template``'s architecture; ``probe`` is computed, not read.
        - output: :math:`(B, out\\_dim)`
    """

    def __init__(self, scaler: GraphScaler, out_dim: int, template: nn.Module, init_inputs: torch.Tensor,
                 hidden_dim: int = 32, num_layers: int = 3, dropout: float = 0.0, kernel_box=(1, 1, 1)):
        super().__init__(scaler, out_dim, hidden_dim, num_layers, init_inputs.shape[0], dropout, kernel_box)
        self._template = (copy.deepcopy(template).eval().requires_grad_(False),)  # a tuple: not a submodule
        self.probe_inputs = nn.Parameter(init_inputs.detach().clone().to(torch.get_default_dtype()))

    def forward(self, batch) -> torch.Tensor:
        batch = copy.copy(batch)  # shallow: the caller's batch keeps its own probe
        template = self._template[0].to(self.probe_inputs.device)
        batch.probe = nngraph.batched_probe_features(batch, template, self.probe_inputs)  # (N, P)
        return super().forward(batch)
