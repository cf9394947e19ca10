"""nngraph: neural networks as graphs, and equivariant graph networks that learn from them.

The public surface:

- conversion: :func:`to_graph`, :func:`from_graph`, :func:`batch_graphs`, :func:`build_layout`,
  :func:`random_hidden_permutation`, :func:`probe_features`, and :func:`verify`, the soundness
  check (:mod:`nngraph.convert`); :func:`load_program` reads a ``torch.export`` program (``.pt2``) as a
  module they accept;
- the differentiable inverse: :func:`gather_params` (parameters out of batched graph features) and
  :func:`batched_forward` (the module run on them, vectorised over the graphs) and :func:`batched_probe_features`
  (probe features read from graph features, differentiable) (:mod:`nngraph.functional`);
- the encoder: :class:`NeuralGraphEncoder`, :class:`NodeEdgeHead` (:mod:`nngraph.gnn`);
- the graph format: :mod:`nngraph.schema`;
- model zoos and datasets: ``import nngraph.zoo``, ``import nngraph.data``;
- the shared training loop (checkpoints, resume, DDP): ``import nngraph.train``;
- equivariance checks for encoders: ``import nngraph.testing``;
- errors on bad files and interrupted work, under :class:`NNGraphError` (:mod:`nngraph.errors`).
"""
from __future__ import annotations

from . import gnn, schema
from .convert import (
    GraphMismatchError,
    SoundnessError,
    UnsupportedError,
    VerifyReport,
    batch_graphs,
    build_layout,
    from_graph,
    probe_features,
    random_hidden_permutation,
    to_graph,
    verify,
)
from .convert.program import load_program
from .functional import batched_forward, batched_probe_features, gather_params
from .errors import CheckpointError, NNGraphError, ProgramError, SpecError, ZooError
from .gnn import NeuralGraphEncoder, NodeEdgeHead
from .modules import Sine, Swish
from .transforms import AddProbeFeatures

__version__ = "0.1.0"

__all__ = [
    "AddProbeFeatures",
    "CheckpointError",
    "GraphMismatchError",
    "NNGraphError",
    "NeuralGraphEncoder",
    "NodeEdgeHead",
    "ProgramError",
    "Sine",
    "SoundnessError",
    "SpecError",
    "Swish",
    "UnsupportedError",
    "VerifyReport",
    "ZooError",
    "batch_graphs",
    "batched_forward",
    "batched_probe_features",
    "build_layout",
    "from_graph",
    "gather_params",
    "gnn",
    "load_program",
    "probe_features",
    "random_hidden_permutation",
    "schema",
    "to_graph",
    "verify",
]
