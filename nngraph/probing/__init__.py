"""Models described by their outputs on probe inputs (the functional view, beside the weights' graph).

- :class:`ProbeGenerator`: probe inputs made by a deep linear generator shared across probes;
- :class:`ProbeGen`: ProbeGen (Kahana et al., ICLR 2025), the generator's probes run through each model and its
  outputs read by an MLP, trained end to end with :func:`fit_probegen` (the shared loop: checkpoints, resume);
- :func:`model_outputs`: a model's outputs on inputs, differentiable in the inputs only;
- :class:`ProbeGraphHybrid`: the weights' graph with the neurons' values on (learned) probes, and the output
  neurons' values read directly, on top of an optional prior (a probing model's cross-fitted prediction,
  :func:`cross_fit`): contains the probing models it competes with; :func:`correction_shrinkage`, how much of
  its correction to the prior to keep (fitted on held-out models);
- :func:`forward_flops`, :func:`probing_flops`: what a prediction costs.

Every neuron's value on probe inputs, as node features of the graph, is :func:`nngraph.probe_features`.
"""
from __future__ import annotations

from .cost import forward_flops, probing_flops
from .fit import fit_probegen
from .generator import ProbeGenerator
from .hybrid import NUM_OUTPUT_STATS, ProbeGraphHybrid, output_neuron_values, output_statistics
from .probegen import OUTPUTS, ProbeGen, model_outputs
from .stacking import correction_shrinkage, cross_fit

__all__ = ["NUM_OUTPUT_STATS", "OUTPUTS", "ProbeGen", "ProbeGenerator", "ProbeGraphHybrid", "correction_shrinkage", "cross_fit", "fit_probegen",
           "forward_flops", "model_outputs", "output_neuron_values", "output_statistics", "probing_flops"]
