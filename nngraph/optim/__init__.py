"""``nngraph.optim``: learned optimizers. :class:`LearnedOptimizer` reads the model as a neural graph and gives
every parameter entry its step with an equivariant network; :class:`PerParameterMLPOptimizer` is the
per-parameter baseline (no graph). Both are ``torch.optim.Optimizer``\\ s.

- :mod:`~nngraph.optim.features`: momenta and the per-tensor normalised features of every entry;
- :mod:`~nngraph.optim.placement`: where the entries sit in the model's graph, both ways;
- :mod:`~nngraph.optim.roles`: every entry's role in the graph (where it sits, the kinds of the neurons it joins),
  for a step size per role;
- :mod:`~nngraph.optim.relabel`: a graph with its nodes and edges in random order (the twin);
- :mod:`~nngraph.optim.output`: features to a bounded step (Adam's direction times a bounded factor plus a small
  bounded term, following a learned schedule over the run; or modulated and rescaled to Adam's norm per tensor);
- :mod:`~nngraph.optim.graph_network`, :mod:`~nngraph.optim.mlp_network`: the two update networks;
- :mod:`~nngraph.optim.checkpoint`: networks to and from files (safetensors, or ``torch.load(weights_only=True)``),
  and the shipped meta-trained networks (``nngraph/optim/checkpoints/``);
- :mod:`~nngraph.optim.optimizer`: the optimizers.

Meta-training (``python -m tasks.learned_optimizer``) unrolls the functional pieces directly:
``advance_state`` -> ``entry_features`` -> ``network(features, segments, graph, placement)``.
"""
from __future__ import annotations

from .checkpoint import load_network, network_from_dict, network_to_dict, save_network, shipped_checkpoint
from .features import (DEFAULT_BETAS, MomentState, Segments, advance_state, entry_features, feature_names,
                       init_state, num_features)
from .graph_network import GraphUpdateNetwork
from .mlp_network import PerParameterUpdateNetwork
from .optimizer import LearnedOptimizer, PerParameterMLPOptimizer
from .output import StepOutput
from .placement import GraphPlacement, place
from .relabel import relabel_graph
from .roles import ROLE_SIZES, entry_roles

__all__ = [
    "DEFAULT_BETAS",
    "GraphPlacement",
    "GraphUpdateNetwork",
    "LearnedOptimizer",
    "MomentState",
    "PerParameterMLPOptimizer",
    "PerParameterUpdateNetwork",
    "ROLE_SIZES",
    "Segments",
    "StepOutput",
    "advance_state",
    "entry_features",
    "entry_roles",
    "feature_names",
    "init_state",
    "load_network",
    "network_from_dict",
    "network_to_dict",
    "num_features",
    "place",
    "relabel_graph",
    "save_network",
    "shipped_checkpoint",
]
