"""Models described by their outputs on probe inputs (the functional view, beside the weights' graph).

- :class:`ProbeGenerator`: probe inputs made by a deep linear generator shared across probes;
- :class:`ProbeGen`: ProbeGen (Kahana et al., ICLR 2025), the generator's probes run through each model and its
  outputs read by an MLP, trained end to end with :func:`fit_probegen` (the shared loop: checkpoints, resume);
- :func:`model_outputs`: a model's outputs on inputs, differentiable in the inputs only;
- :func:`forward_flops`, :func:`probing_flops`: what a prediction costs.

Every neuron's value on probe inputs, as node features of the graph, is :func:`nngraph.probe_features`.
"""
from __future__ import annotations

from .cost import forward_flops, probing_flops
from .fit import fit_probegen
from .generator import ProbeGenerator
from .probegen import OUTPUTS, ProbeGen, model_outputs

__all__ = ["OUTPUTS", "ProbeGen", "ProbeGenerator", "fit_probegen", "forward_flops", "model_outputs", "probing_flops"]
