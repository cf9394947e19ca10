"""Learned probes: the probe inputs are parameters, trained with the encoder (after ProbeGen, Kahana et al., 2025).

Probe features (every neuron's value on ``P`` inputs) are fixed inputs chosen by hand elsewhere (the INR's
pixel grid). Here they start at those inputs and move with the encoder's gradient: every forward computes the
batch's probe features from the graphs' own features (:func:`nngraph.batched_probe_features`, vectorised,
differentiable in the inputs), so a sign-flipped or relabelled graph gets its own model's features.
ProbeGen generates the probes with a small network shared by all of them; free inputs are the simplest member
of that family, and ``generator=True`` is the other: each probe is its starting input plus a shared deep linear
generator's output on the probe's own latent code (:class:`nngraph.probing.ProbeGenerator`). The whole of
ProbeGen (probes read through the model's outputs only, no graph) is :class:`nngraph.probing.ProbeGen`.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

import nngraph
from nngraph.probing import ProbeGenerator

from ..common.models import GraphPredictor
from ..common.scaling import GraphScaler

__all__ = ["LearnedProbePredictor", "ProbeGenerator"]


class LearnedProbePredictor(GraphPredictor):
    """A :class:`GraphPredictor` whose ``probe`` features come from trainable probe inputs.

    Args:
        scaler, out_dim, hidden_dim, num_layers, dropout, kernel_box: as :class:`GraphPredictor`.
        template: a model of the graphs' one architecture (its values are not used; kept out of the
            parameters and the state dict).
        init_inputs: the probes' starting values, ``(P, *in_shape)``.
        generator: make the probes with a :class:`ProbeGenerator` (kwargs for it when a dict) instead of
            training them as free parameters.

    Shapes:
        - input: a batch of graphs of ``template``'s architecture; ``probe`` is computed, not read.
        - output: :math:`(B, out\\_dim)`
    """

    def __init__(self, scaler: GraphScaler, out_dim: int, template: nn.Module, init_inputs: torch.Tensor,
                 hidden_dim: int = 32, num_layers: int = 3, dropout: float = 0.0, kernel_box=(1, 1, 1),
                 generator: bool | dict = False):
        super().__init__(scaler, out_dim, hidden_dim, num_layers, init_inputs.shape[0], dropout, kernel_box)
        self._template = (copy.deepcopy(template).eval().requires_grad_(False),)  # a tuple: not a submodule
        if generator:
            self.probe_generator = ProbeGenerator(init_inputs, **(generator if isinstance(generator, dict) else {}))
        else:
            self.probe_inputs = nn.Parameter(init_inputs.detach().clone().to(torch.get_default_dtype()))

    def current_inputs(self) -> torch.Tensor:
        """``(P, *in_shape)``: the probe inputs as they stand (free, or made by the generator)."""
        return self.probe_generator() if hasattr(self, "probe_generator") else self.probe_inputs

    def forward(self, batch) -> torch.Tensor:
        batch = copy.copy(batch)  # shallow: the caller's batch keeps its own probe
        inputs = self.current_inputs()  # (P, *in_shape)
        template = self._template[0].to(inputs.device)
        batch.probe = nngraph.batched_probe_features(batch, template, inputs)  # (N, P)
        return super().forward(batch)
