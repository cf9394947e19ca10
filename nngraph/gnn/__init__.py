"""Permutation-equivariant GNN over neural graphs (sees only PyG batches, never ``nn.Module``s,
except :func:`probe_features`)."""
from .conv import NeuralGraphConv
from .edge_encoder import EdgeEncoder
from .encoder import NeuralGraphEncoder
from .head import NodeEdgeHead
from .kernel import KernelDecoder, KernelLinear
from .node_encoder import NodeEncoder
from .probe import probe_features
from .readout import GraphReadout

__all__ = [
    "NeuralGraphEncoder",
    "NeuralGraphConv",
    "NodeEncoder",
    "EdgeEncoder",
    "KernelLinear",
    "KernelDecoder",
    "GraphReadout",
    "NodeEdgeHead",
    "probe_features",
]
