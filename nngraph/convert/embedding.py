"""nn.Embedding: a Linear layer applied to a one-hot encoding of the token id.

Each vocabulary entry becomes an input node (:attr:`NodeKind.TOKEN`, ``node_type`` INPUT,
``io_position`` = token id, so the vocabulary keeps its order), each embedding dimension a hidden
node (:attr:`NodeKind.EMBEDDING`), and ``weight[t, d]`` the :attr:`EdgeType.WEIGHT` edge
token ``t`` -> dimension ``d``. The integer token-id tensor itself has no feature axis and makes no
nodes; it may be a model input or a constant of the model (the ``position_ids`` buffer of a
transformer, whose positions then become the input nodes). ``padding_idx`` is just a row of the weight (kept as is); ``max_norm`` renormalizes rows in
place during the forward pass and is refused.
"""
from __future__ import annotations

from torch import nn

from ..schema import EdgeType, NodeKind, NodeType
from .errors import UnsupportedError, describe
from .registry import register_module
from .values import Opaque, TensorValue


@register_module(nn.Embedding)
def convert_embedding(ctx, node, ids, *args, **kwargs) -> TensorValue:
    module: nn.Embedding = ctx.module_of(node)
    if module.max_norm is not None:
        raise UnsupportedError(
            f"{describe(node)} has max_norm={module.max_norm}: it rescales its weight rows in place during the "
            "forward pass, so the stored weights are not the ones it computes with. Use max_norm=None."
        )
    if not isinstance(ids, Opaque) and (not isinstance(ids, TensorValue) or ids.nodes is not None):
        raise UnsupportedError(
            f"{describe(node)} must read token ids that are a model input or a constant of the model "
            "(an integer buffer such as position_ids)"
        )
    builder = ctx.builder
    num, dim = module.num_embeddings, module.embedding_dim
    tokens = builder.add_nodes(num, NodeKind.TOKEN, layer=0, node_type=NodeType.INPUT)
    out = builder.add_nodes(dim, NodeKind.EMBEDDING, layer=1)
    # edge e = t * dim + d connects token t to dimension d, in the order of weight (num, dim)
    edges = builder.add_grid(tokens, out, EdgeType.WEIGHT, src_major=True)  # View of ids, (num, dim)
    builder.place_edge_param(f"{node.target}.weight", edges)
    builder.record_module_nodes(node.target, out)
    builder.record_module_nodes(f"{node.target}.tokens", tokens)
    shape = ctx.shape_of(node)
    return TensorValue(nodes=out, shape=shape, axis=len(shape) - 1, source=node)
