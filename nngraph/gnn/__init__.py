"""Permutation-equivariant GNN over neural graphs. It sees only PyG batches, never ``nn.Module``s:
probe features (which need the source model) come from :func:`nngraph.convert.probe_features`."""
from .conv import NeuralGraphConv
from .edge_encoder import EdgeEncoder
from .encoder import NeuralGraphEncoder
from .head import NodeEdgeHead
from .kernel import KernelDecoder, KernelLinear
from .node_encoder import NodeEncoder
from .readout import GraphReadout
from .stream import stream_encode, stream_forward

__all__ = [
    "EdgeEncoder",
    "GraphReadout",
    "KernelDecoder",
    "KernelLinear",
    "NeuralGraphConv",
    "NeuralGraphEncoder",
    "NodeEdgeHead",
    "NodeEncoder",
    "stream_encode",
    "stream_forward",
]
