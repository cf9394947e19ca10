"""Attention: nn.MultiheadAttention and nn.TransformerEncoderLayer / nn.TransformerEncoder.

Representation of one multi-head attention with embedding size ``E``, ``H`` heads of size
``d = E // H`` (input neurons ``x``):

- ``E`` :attr:`NodeKind.QUERY`, ``E`` :attr:`NodeKind.KEY` and ``E`` :attr:`NodeKind.VALUE` nodes,
  one per row of ``in_proj_weight`` (rows ``[Q; K; V]``), with a :attr:`EdgeType.WEIGHT` edge
  from every input neuron (the projection is a Linear layer) and ``in_proj_bias`` as their bias.
  Query, key and value read the ``query``, ``key`` and ``value`` tensors' neurons respectively, so
  self-attention and cross-attention (``key is value`` or not) are represented the same way; a
  bare ``nn.MultiheadAttention`` converted on its own has three inputs, hence three sets of input
  nodes. ``batch_first`` only moves the sequence axis: the neurons are the last axis either way.
  Masks may be model inputs (the heads are :attr:`NodeKind.MASKED_HEAD`), constant causal masks
  (:attr:`NodeKind.CAUSAL_HEAD`) or absent; other constant masks and masks computed from the model's
  activations are refused (a constant mask would otherwise give the graph of the unmasked attention).
- ``E`` output nodes (:attr:`NodeKind.LINEAR`): ``out_proj`` as WEIGHT edges value -> output,
  ``out_proj.bias`` as their bias.
- ``H`` :attr:`NodeKind.HEAD` nodes with :attr:`EdgeType.HEAD_MEMBER` edges to the ``3d`` query,
  key and value neurons of their head, and a :attr:`EdgeType.QK_PAIR` edge from query ``j`` to key
  ``j`` (the two are multiplied and summed over ``j`` within a head). These structural edges are
  identity edges (a constant 1 at the kernel centre); the softmax and the ``1 / sqrt(d)`` scale
  have no parameters and are implied by the node kinds.

Symmetries (all function-preserving): one permutation acts on the rows of Q, K and V together
(the same within-head permutation of query and key keeps every score ``q . k``; the value and the
matching ``out_proj`` columns may follow it, which is a subgroup of the true value symmetry), and
it must keep the heads' contiguous blocks of ``d`` neurons together; the head nodes move with their
block. Output neurons of ``out_proj`` are ordinary permutable neurons (in a transformer layer they
are tied to the residual stream through the residual SUM nodes).

What the published systems do (as far as the stored sources show): Graph Metanetworks (Lim et al.,
ICLR 2024) list multi-head attention among the layers their "parameter graphs" cover (every
parameter an edge or node feature, built by `gmn/graph_construct/` in cptq/graph_metanetworks,
whose code was not available to read here); neural graphs (Kofinas et al., ICLR 2024) describe
transformers on paper only and their released code (mkofinas/neural-graphs) builds graphs for
MLPs and CNNs, not attention. This module follows the shared idea — the projections are
Linear-like weight edges between neurons — and makes the multi-head structure explicit: head
nodes, QK pairings and a block-restricted symmetry, so that the permutations the layout declares
are exactly function-preserving.

A TransformerEncoderLayer is kept as one fx leaf and converted from the same pieces: the attention
above, the feed-forward ``linear1 -> activation -> linear2`` (hidden neurons permutable), residual
SUM nodes and LayerNorm NORM nodes, in the order of its ``forward`` (``norm_first`` both ways).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import hashlib

from ..schema import BIAS, Activation, EdgeType, NodeKind, Pool
from .activation import module_activation
from .errors import UnsupportedError, describe
from .linear import dense_layer
from .norm import normalize_nodes
from .parameters import entry_table, place_tokens
from .registry import accept_offset_params, register_function, register_module
from .residual import residual_sum
from .values import OffsetParam, Opaque, ParamValue, TensorValue

# ----------------------------------------------------------------------- pieces


def check_attention(node, module: nn.MultiheadAttention) -> None:
    """Refuse the MultiheadAttention options the representation does not cover."""
    problems = []
    if not module._qkv_same_embed_dim:
        problems.append(f"kdim={module.kdim} / vdim={module.vdim} differ from embed_dim={module.embed_dim}")
    if module.bias_k is not None or module.bias_v is not None:
        problems.append("add_bias_kv=True (learned key/value tokens)")
    if module.add_zero_attn:
        problems.append("add_zero_attn=True")
    if problems:
        raise UnsupportedError(
            f"{describe(node)} uses {', '.join(problems)}; nngraph supports MultiheadAttention with "
            "kdim = vdim = embed_dim, add_bias_kv=False and add_zero_attn=False."
        )


def attention_nodes(builder, name: str, module: nn.MultiheadAttention, q_in: torch.Tensor,
                    k_in: torch.Tensor, v_in: torch.Tensor, kind: NodeKind = NodeKind.HEAD) -> torch.Tensor:
    """Add the nodes and edges of attention ``name`` reading query/key/value neurons ``(E,)`` each, its
    head nodes of ``kind`` (:func:`module_masks`); returns the ``(E,)`` output neurons of ``out_proj``."""
    e, h = module.embed_dim, module.num_heads
    d = e // h
    layer = max(builder.node_layer(t) for t in (q_in, k_in, v_in)) + 1
    q = builder.add_nodes(e, NodeKind.QUERY, layer)
    k = builder.add_nodes(e, NodeKind.KEY, layer)
    v = builder.add_nodes(e, NodeKind.VALUE, layer)
    qkv = torch.cat([q, k, v])  # (3E,) in the row order of in_proj_weight
    # edge e' = r * E + c connects input neuron c of the row's tensor to projection row r
    if torch.equal(q_in, k_in) and torch.equal(k_in, v_in):  # self-attention: one grid
        edges = builder.add_grid(q_in, qkv, EdgeType.WEIGHT)  # View of ids, (3E, E)
    else:  # three grids on consecutive ids: the same (3E, E) view of them
        start, _, _ = builder.add_grid(q_in, q, EdgeType.WEIGHT)
        builder.add_grid(k_in, k, EdgeType.WEIGHT)
        builder.add_grid(v_in, v, EdgeType.WEIGHT)
        edges = (start, (3 * e, e), (e, 1))
    builder.place_edge_param(f"{name}.in_proj_weight", edges)
    if module.in_proj_bias is not None:
        builder.place_node_param(f"{name}.in_proj_bias", qkv, BIAS)
    heads = builder.add_nodes(h, kind, layer)
    # head j // d of neuron j, for the query, key and value rows
    builder.add_edges(heads.repeat_interleave(d).repeat(3), qkv, EdgeType.HEAD_MEMBER, identity=True)
    builder.add_edges(q, k, EdgeType.QK_PAIR, identity=True)
    out = dense_layer(builder, f"{name}.out_proj", module.out_proj, v)
    builder.tie(q, k)
    builder.tie(q, v)
    builder.constrain_blocks(q, d, satellites=heads)
    for part, nodes in (("query", q), ("key", k), ("value", v), ("heads", heads)):
        builder.record_module_nodes(f"{name}.{part}", nodes)
    builder.record_module_nodes(name, out)
    return out


def module_masks(node, attn_mask=None, key_padding_mask=None) -> NodeKind:
    """The head kind of a MultiheadAttention (or transformer layer) called with these masks (torch's
    convention: ``True`` blocks, a float is added): a model input makes MASKED_HEAD, a constant causal
    ``attn_mask`` CAUSAL_HEAD, a constant that blocks nothing changes nothing; other constants are refused."""
    _refuse_activation_masks(node, [attn_mask, key_padding_mask])
    causal = False
    inputs = [m for m in (attn_mask, key_padding_mask) if isinstance(m, TensorValue)]
    if attn_mask is not None and not isinstance(attn_mask, TensorValue):
        values = attn_mask.value if isinstance(attn_mask, Opaque) else None
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) and values.dim() in (2, 3) else None
        causal = constant_mask(node, attn_mask, shape, -2, -1, blocks_when_true=True)
    if key_padding_mask is not None and not isinstance(key_padding_mask, TensorValue):
        values = key_padding_mask.value if isinstance(key_padding_mask, Opaque) else None
        shape = tuple(values.shape) + (1,) if isinstance(values, torch.Tensor) and values.dim() == 2 else None
        if constant_mask(node, Opaque(value=None if shape is None else values.reshape(shape)), shape, -1, -2,
                         blocks_when_true=True):
            raise refuse_constant_mask(node, "a constant key padding mask")
    return head_kind(causal, bool(inputs))


def _refuse_activation_masks(node, values) -> None:
    """Masks may be model inputs or constants, never computed from the model's activations."""
    for value in values:
        if isinstance(value, TensorValue) and value.nodes is not None:
            raise UnsupportedError(
                f"{describe(node)} receives a mask or extra tensor computed from the model's activations; "
                "nngraph only supports masks that are model inputs"
            )


def _output_shape(node, position: int = 0) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if isinstance(meta, (tuple, list)):
        meta = meta[position]
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


# ----------------------------------------------------------------------- MultiheadAttention


@register_module(nn.MultiheadAttention)
def convert_multihead_attention(ctx, node, query, key, value, *args, **kwargs):
    """Returns ``(output, Opaque(attention weights))`` like the module returns a tuple."""
    module: nn.MultiheadAttention = ctx.module_of(node)
    check_attention(node, module)
    _refuse_activation_masks(node, list(args) + list(kwargs.values()))
    named = dict(zip(("key_padding_mask", "need_weights", "attn_mask"), args))
    kind = module_masks(node, kwargs.get("attn_mask", named.get("attn_mask")),
                        kwargs.get("key_padding_mask", named.get("key_padding_mask")))
    q_in = ctx.neurons(query, -1, node).nodes
    k_in = ctx.neurons(key, -1, node).nodes
    v_in = ctx.neurons(value, -1, node).nodes
    for label, nodes in (("key", k_in), ("value", v_in)):
        if nodes.numel() != module.embed_dim:
            raise UnsupportedError(f"{describe(node)}: {label} has {nodes.numel()} features, embed_dim={module.embed_dim}")
    out = attention_nodes(ctx.builder, node.target, module, q_in, k_in, v_in, kind)
    shape = _output_shape(node)
    return (TensorValue(nodes=out, shape=shape, axis=len(shape) - 1, source=node),
            Opaque(f"attention weights of {node.target}", from_activations=True))


# ----------------------------------------------------------------------- TransformerEncoderLayer


def _feed_forward_activation(node, module: nn.TransformerEncoderLayer) -> tuple[Activation, tuple[float, ...]]:
    act = module.activation
    if act in (F.relu, torch.relu):
        return Activation.RELU, ()
    if act is F.gelu:
        return Activation.GELU, ()
    spec = module_activation(act) if isinstance(act, nn.Module) else None
    if spec is not None:
        return spec
    raise UnsupportedError(
        f"{describe(node)} uses the feed-forward activation {act!r}; nngraph supports 'relu' and 'gelu' "
        "or an activation module it knows (nn.ReLU(), nn.GELU(), nn.SiLU(), ...) in TransformerEncoderLayer."
    )


def encoder_layer_nodes(ctx, node, name: str, module: nn.TransformerEncoderLayer, x: TensorValue,
                        kind: NodeKind = NodeKind.HEAD) -> TensorValue:
    """Convert encoder layer ``name`` applied to ``x`` (neurons on the last axis) from its pieces, its heads
    of ``kind`` (:func:`module_masks`)."""
    check_attention(node, module.self_attn)
    act, act_args = _feed_forward_activation(node, module)
    builder = ctx.builder

    def sa(a: torch.Tensor) -> torch.Tensor:
        return attention_nodes(builder, f"{name}.self_attn", module.self_attn, a, a, a, kind)

    def ff(a: torch.Tensor) -> torch.Tensor:
        hidden = dense_layer(builder, f"{name}.linear1", module.linear1, a)
        builder.set_activation(hidden, act, act_args)
        return dense_layer(builder, f"{name}.linear2", module.linear2, hidden)

    def norm(which: str, a: torch.Tensor) -> torch.Tensor:
        out = normalize_nodes(builder, getattr(module, which), f"{name}.{which}", a)
        builder.record_module_nodes(f"{name}.{which}", out)
        return out

    def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return residual_sum(ctx, node, x.with_(nodes=a), x.with_(nodes=b)).nodes

    h = x.nodes
    if module.norm_first:  # x = x + sa(norm1(x)); x = x + ff(norm2(x))
        h = add(h, sa(norm("norm1", h)))
        h = add(h, ff(norm("norm2", h)))
    else:  # x = norm1(x + sa(x)); x = norm2(x + ff(x))
        h = norm("norm1", add(h, sa(h)))
        h = norm("norm2", add(h, ff(h)))
    builder.record_module_nodes(name, h)
    return x.with_(nodes=h, source=node)


@register_module(nn.TransformerEncoderLayer)
def convert_encoder_layer(ctx, node, src, *args, **kwargs) -> TensorValue:
    _refuse_activation_masks(node, list(args) + list(kwargs.values()))
    named = dict(zip(("src_mask", "src_key_padding_mask"), args))
    kind = module_masks(node, kwargs.get("src_mask", named.get("src_mask")),
                        kwargs.get("src_key_padding_mask", named.get("src_key_padding_mask")))
    x = ctx.neurons(src, -1, node)
    x = x.with_(shape=ctx.shape_of(node), axis=len(ctx.shape_of(node)) - 1)
    return encoder_layer_nodes(ctx, node, node.target, ctx.module_of(node), x, kind)


@register_module(nn.TransformerEncoder)
def convert_encoder(ctx, node, src, *args, **kwargs) -> TensorValue:
    """The stack: every layer in turn, then the optional final norm."""
    module: nn.TransformerEncoder = ctx.module_of(node)
    _refuse_activation_masks(node, list(args) + list(kwargs.values()))
    named = dict(zip(("mask", "src_key_padding_mask"), args))
    kind = module_masks(node, kwargs.get("mask", named.get("mask")),
                        kwargs.get("src_key_padding_mask", named.get("src_key_padding_mask")))
    x = ctx.neurons(src, -1, node)
    x = x.with_(shape=ctx.shape_of(node), axis=len(ctx.shape_of(node)) - 1)
    for i, layer in enumerate(module.layers):
        if type(layer) is not nn.TransformerEncoderLayer:
            raise UnsupportedError(f"{describe(node)}: layer {i} is a {type(layer).__name__}, not a TransformerEncoderLayer")
        x = encoder_layer_nodes(ctx, node, f"{node.target}.layers.{i}", layer, x, kind)
    if module.norm is not None:
        if type(module.norm) is not nn.LayerNorm or len(module.norm.normalized_shape) != 1:
            raise UnsupportedError(f"{describe(node)}: the final norm must be a LayerNorm over the last dimension")
        x = x.with_(nodes=normalize_nodes(ctx.builder, module.norm, f"{node.target}.norm", x.nodes))
    ctx.builder.record_module_nodes(node.target, x.nodes)
    return x


# ----------------------------------------------------------------------- attention as plain ops


def _split_heads(node, name: str, value) -> TensorValue:
    if (isinstance(value, TensorValue) and value.nodes is not None and not value.heads and value.shape is not None
            and len(value.shape) >= 3 and value.axis == len(value.shape) - 1 and value.shape[-3] == 1):
        value = value.with_(heads=1, head_axis=len(value.shape) - 3)  # one head: (B, 1, T, D)
    if not isinstance(value, TensorValue) or value.nodes is None or not value.heads:
        raise UnsupportedError(
            f"{describe(node)}: the {name} must be an activation split into heads, (B, H, T, D) with "
            "its neurons viewed from a (B, T, H * D) projection"
        )
    ndim = len(value.shape)
    if value.head_axis != ndim - 3 or value.axis != ndim - 1:
        raise UnsupportedError(
            f"{describe(node)}: the {name} has its heads on axis {value.head_axis} and head dimensions on "
            f"axis {value.axis}; scaled_dot_product_attention reads (..., H, T, D)"
        )
    return value


def score_bias(ctx, node, mask, q: TensorValue) -> TensorValue | None:
    """``attn_mask`` as a per-head score bias computed from activations (one neuron per head, on the
    head axis) or read from a parameter (Swin's relative-position table: its positions become token
    inputs of one bias node per head), or ``None`` for a mask that is a model input or a constant."""
    if isinstance(mask, ParamValue):
        shape = tuple(mask.entries.shape)
        if len(shape) < 3 or shape[-3] != q.heads:
            raise UnsupportedError(f"{describe(node)} adds parameter {mask.name!r} of shape {shape} to the scores; "
                                   "nngraph supports one bias per head")
        anchor = TensorValue(nodes=None, shape=shape, axis=len(shape) - 3)
        table = entry_table(node, anchor, mask, shape)
        nodes = ctx.builder.add_nodes(q.heads, NodeKind.EMBEDDING, layer=1)
        place_tokens(ctx.builder, mask.name, mask.shape, table, nodes)
        return TensorValue(nodes=nodes, shape=shape, axis=len(shape) - 3, source=node)
    if not (isinstance(mask, TensorValue) and mask.nodes is not None):
        return None
    ndim = len(mask.shape)
    if mask.heads or mask.spatial or mask.padded or ndim < 3 or mask.axis != ndim - 3 or mask.num_neurons != q.heads:
        raise UnsupportedError(
            f"{describe(node)} receives a mask computed from the model's activations that is not one score "
            f"bias per head (shape {tuple(mask.shape)}, neurons on axis {mask.axis}); nngraph supports masks "
            "that are model inputs or constants, and a per-head bias such as T5's relative positions"
        )
    return mask


def _expanded_heads(value, q: TensorValue) -> TensorValue | None:
    """A key or value without heads on a ``(..., H, T, D)`` tensor (one head expanded to the query's ``H``, as
    Hugging Face's ``repeat_kv`` of one key/value head): every head reads the same neurons, listed once per
    head; ``None`` for anything else."""
    if not (isinstance(value, TensorValue) and value.nodes is not None and not value.heads and q.heads > 1
            and value.shape is not None and len(value.shape) == len(q.shape) and value.axis == len(value.shape) - 1
            and value.shape[-3] == q.heads and not value.spatial):
        return None
    return value.with_(nodes=value.nodes.repeat(q.heads), heads=q.heads, head_axis=len(value.shape) - 3)


def _repeat_heads(value: TensorValue, heads: int) -> TensorValue:
    """``value`` with each of its heads listed ``heads // value.heads`` times (grouped-query attention)."""
    table = value.nodes.view(value.heads, -1)  # (H_kv, D)
    return value.with_(nodes=table.repeat_interleave(heads // value.heads, 0).reshape(-1), heads=heads)


def _tie_or_fix(builder, a: torch.Tensor, b: torch.Tensor) -> bool:
    if builder.tie_rows(a, b):
        return True
    builder.fix(a)
    builder.fix(b)
    return False


#: a score set to this or lower is blocked: ``-inf``, or ``torch.finfo(float32 / float64).min`` as
#: Hugging Face writes its masks (``exp`` of it underflows to 0 like ``exp(-inf)``)
MASKED = -3.0e38


def blocked_pairs(values: torch.Tensor, shape: tuple[int, ...], query_axis: int, key_axis: int) -> torch.Tensor | None:
    """``values`` (bool) broadcast to scores of ``shape`` as one ``(Tq, Tk)`` table, if it is the same for
    every batch entry and head; ``None`` otherwise."""
    try:
        full = torch.broadcast_to(values, shape)
    except RuntimeError:
        return None
    tq, tk = shape[query_axis], shape[key_axis]
    table = full.movedim((query_axis, key_axis), (-2, -1)).reshape(-1, tq, tk)  # (batch * heads, Tq, Tk)
    return table[0] if bool((table == table[:1]).all()) else None


def is_causal_pattern(blocked: torch.Tensor) -> bool:
    """Whether the blocked (query, key) pairs are exactly those of ``is_causal=True`` (above the diagonal)."""
    tq, tk = blocked.shape
    return torch.equal(blocked, ~torch.ones(tq, tk, dtype=torch.bool).tril())


def relative_scale(scale: float) -> float:
    """``scale * sqrt(D)`` as recorded on the QK_PAIR edges: 1 for the default ``1 / sqrt(D)``, also when
    the model computed ``D ** -0.5`` itself and it differs from 1 by rounding (a few ulps)."""
    return 1.0 if abs(scale - 1.0) <= 8 * torch.finfo(torch.float64).eps else scale


def head_kind(causal: bool, input_mask: bool) -> NodeKind:
    """The kind of the head nodes of an attention: causal or not, masked by a model input or not."""
    if input_mask:
        return NodeKind.CAUSAL_MASKED_HEAD if causal else NodeKind.MASKED_HEAD
    return NodeKind.CAUSAL_HEAD if causal else NodeKind.HEAD


def refuse_constant_mask(node, what: str) -> UnsupportedError:
    """The refusal of a constant attention mask nngraph does not record (no fixed-size record tells two
    arbitrary masks apart, and unrecorded they would give one graph)."""
    return UnsupportedError(
        f"{describe(node)} masks attention with {what}; nngraph records a causal mask (the heads are "
        "CAUSAL_HEAD) and a mask that is a model input (MASKED_HEAD), and refuses other constant masks, "
        "which would give the graph of the unmasked attention"
    )


def constant_mask(node, mask, scores_shape, query_axis: int, key_axis: int, blocks_when_true: bool) -> bool:
    """Whether the constant ``mask`` (an :class:`Opaque`; bool: blocks where ``blocks_when_true``, float:
    added, ``<= MASKED`` blocks) is causal (``True``) or lets every pair through unchanged (``False``);
    any other constant mask is refused."""
    values = mask.value if isinstance(mask, Opaque) else None
    if not isinstance(values, torch.Tensor) or values.device.type == "meta" or scores_shape is None:
        raise refuse_constant_mask(node, "a constant mask whose values nngraph cannot read")
    if values.dtype == torch.bool:
        blocked = values if blocks_when_true else ~values
    elif values.is_floating_point():
        blocked = values.double() <= MASKED
        if bool(((values != 0) & ~blocked).any()):
            raise refuse_constant_mask(node, "a constant mask that adds finite values to the scores")
    else:
        raise refuse_constant_mask(node, f"a constant {values.dtype} mask")
    pattern = blocked_pairs(blocked, tuple(scores_shape), query_axis, key_axis)
    if pattern is None:
        raise refuse_constant_mask(node, "a constant mask that differs between batch entries or heads")
    if not bool(pattern.any()):
        return False
    if is_causal_pattern(pattern):
        return True
    raise refuse_constant_mask(node, "a constant mask that is not causal")


#: bits of the fingerprint of a constant score offset (exact in float32 features)
FINGERPRINT_BITS = 24


def score_offset_record(node, offset: torch.Tensor, scores_shape) -> tuple[Pool, dict[str, float]]:
    """The record of a constant added to the attention scores next to a learned bias (Swin's shifted-window
    mask: ``-100`` between tokens the window shift brought together, different per window).

    ``offset`` must broadcast to the scores ``(..., H, Tq, Tk)`` and be the same for every head (a head
    permutation then keeps the function); it may differ between batch entries (windows merged into the batch
    axis). Its pattern is the shortest run of ``(Tq, Tk)`` blocks over the batch entries that repeats, so
    the record does not depend on the traced batch size. :attr:`~nngraph.schema.Pool.SCORE_OFFSET` puts
    the run's length in ``kernel_d``, ``Tq`` and ``Tk`` in ``kernel_h`` / ``kernel_w``, the share of
    non-zero entries, the smallest and the largest entry in ``stride_d`` / ``stride_h`` / ``stride_w``, and
    a 24-bit fingerprint of the pattern (sha256 of its float64 entries) in ``padding_d``: two different
    constants give two different records but with probability 2^-24.
    """
    if scores_shape is None or offset.device.type == "meta":
        raise refuse_constant_mask(node, "a constant added to a learned score bias whose values nngraph cannot read")
    try:
        full = offset.double().expand(tuple(scores_shape))  # (..., H, Tq, Tk)
    except RuntimeError:
        raise refuse_constant_mask(node, f"a constant of shape {tuple(offset.shape)} that does not broadcast "
                                         f"to the scores {tuple(scores_shape)}") from None
    if full.dim() < 3:
        raise refuse_constant_mask(node, "a constant added to a learned score bias without a head axis")
    first = full.select(-3, 0)  # (..., Tq, Tk)
    if not torch.equal(full, first.unsqueeze(-3).expand_as(full)):
        raise refuse_constant_mask(node, "a constant added to the scores that differs between heads")
    tq, tk = first.shape[-2:]
    blocks = first.reshape(-1, tq, tk)  # (B', Tq, Tk)
    count = blocks.shape[0]
    period = next(p for p in range(1, count + 1)
                  if count % p == 0 and torch.equal(blocks, blocks[:p].repeat(count // p, 1, 1)))
    pattern = blocks[:period].contiguous()
    digest = hashlib.sha256(repr((period, tq, tk)).encode() + pattern.numpy().tobytes()).digest()
    fingerprint = int.from_bytes(digest[:4], "big") >> (32 - FINGERPRINT_BITS)
    return Pool.SCORE_OFFSET, {"kernel_d": float(period), "kernel_h": float(tq), "kernel_w": float(tk),
                               "stride_d": float((pattern != 0).double().mean()), "stride_h": float(pattern.min()),
                               "stride_w": float(pattern.max()), "padding_d": float(fingerprint)}


def attention_heads(builder, q: TensorValue, k: TensorValue, v: TensorValue, bias: TensorValue | None,
                    causal: bool, scale: float, input_mask: bool = False,
                    offset_record: tuple[Pool, dict[str, float]] | None = None) -> torch.Tensor:
    """The heads of ``softmax(q k^T * scale / sqrt(D) + mask) v`` over head-split ``q``, ``k``, ``v`` (one head
    count, ``k`` and ``v`` repeated to it): ``H`` head nodes (CAUSAL_HEAD if ``causal``) with HEAD_MEMBER
    edges to their query, key and attended neurons, QK_PAIR edges query ``j`` -> key ``j`` carrying
    ``scale``, ATTEND edges value -> attended, a RESIDUAL edge bias ``h`` -> head ``h`` for a per-head
    score bias; the symmetry as described in :func:`convert_scaled_dot_product_attention`. Returns the
    ``(V,)`` attended neurons."""
    heads, per_head = q.heads, q.num_neurons // q.heads
    scale = relative_scale(scale)
    layer = max(builder.node_layer(t.nodes) for t in (q, k, v)) + 1
    head_nodes = builder.add_nodes(heads, head_kind(causal, input_mask), layer)
    if offset_record is not None:  # a constant added to the scores (see score_offset_record)
        builder.add_pool(head_nodes, *offset_record)
    attended = builder.add_nodes(v.num_neurons, NodeKind.ATTENDED, layer)
    builder.add_edges(v.nodes, attended, EdgeType.ATTEND, identity=True)
    members = torch.cat([q.nodes, k.nodes, attended])
    owners = torch.cat([head_nodes.repeat_interleave(per_head).repeat(2),
                        head_nodes.repeat_interleave(v.num_neurons // heads)])
    builder.add_edges(owners, members, EdgeType.HEAD_MEMBER, identity=True)
    builder.add_edges(q.nodes, k.nodes, EdgeType.QK_PAIR, constant=scale)  # the scale, times sqrt(D)
    if bias is not None:  # a learned per-head score bias (T5's relative positions): bias h -> head h
        builder.add_edges(bias.nodes, head_nodes, EdgeType.RESIDUAL, identity=True)
    if _tie_or_fix(builder, v.nodes, attended) and _tie_or_fix(builder, q.nodes, k.nodes) \
            and v.num_neurons == q.num_neurons and _tie_or_fix(builder, q.nodes, v.nodes):
        builder.constrain_blocks(q.nodes, per_head, satellites=head_nodes)
        if bias is not None:
            builder.constrain_blocks(q.nodes, per_head, satellites=bias.nodes)
    else:  # the heads of query/key and of value cannot be moved by one block permutation
        for t in (q.nodes, k.nodes, v.nodes, head_nodes) + ((bias.nodes,) if bias is not None else ()):
            builder.fix(t)
    return attended


@register_function(F.scaled_dot_product_attention, torch.ops.aten.scaled_dot_product_attention.default)
def convert_scaled_dot_product_attention(ctx, node, query, key, value, attn_mask=None, dropout_p=0.0,
                                         is_causal=False, scale=None, enable_gqa=False, **kwargs):
    """``softmax(q k^T * scale + mask) v`` per head, written as plain ops (as Hugging Face does).

    Adds ``H`` head nodes (:attr:`NodeKind.HEAD`, or :attr:`NodeKind.CAUSAL_HEAD` with
    ``is_causal``) with HEAD_MEMBER edges to their query, key and attended neurons, QK_PAIR edges
    query ``j`` -> key ``j``, and one :attr:`NodeKind.ATTENDED` neuron per value neuron (ATTEND
    edge value -> attended). One permutation acts on query, key, value and attended neurons, keeping
    the heads' blocks together; the head nodes move with their block. A mask may be a model input or
    computed from inputs and constants, never from activations; the scale must be the default.
    """
    q = _split_heads(node, "query", query)
    k, v = (_expanded_heads(t, q) or _split_heads(node, n, t) for n, t in (("key", key), ("value", value)))
    offset = attn_mask.offset if isinstance(attn_mask, OffsetParam) else None  # a learned bias + a constant
    attn_mask = attn_mask.param if isinstance(attn_mask, OffsetParam) else attn_mask
    bias = score_bias(ctx, node, attn_mask, q)
    if enable_gqa and q.heads != k.heads:
        k, v = (_repeat_heads(t, q.heads) for t in (k, v))
    if not (q.heads == k.heads == v.heads) or q.num_neurons != k.num_neurons:
        raise UnsupportedError(
            f"{describe(node)}: query, key and value have {q.heads}, {k.heads} and {v.heads} heads of "
            f"{q.num_neurons}, {k.num_neurons} and {v.num_neurons} neurons; nngraph needs one head count "
            "and equal query and key sizes (grouped-query attention is not supported yet)"
        )
    if torch.unique(q.nodes).numel() != q.nodes.numel():
        raise UnsupportedError(f"{describe(node)}: the query shows one head at several entries of its head axis "
                               "(heads repeated); nngraph's heads are the query's, each once")
    if dropout_p:
        raise UnsupportedError(f"{describe(node)} uses attention dropout {dropout_p} in evaluation")
    per_head = q.num_neurons // q.heads
    scale = 1.0 if scale is None else float(scale) * per_head ** 0.5  # relative to 1 / sqrt(D): 1 by default
    input_mask = isinstance(attn_mask, TensorValue) and attn_mask.nodes is None
    causal = bool(is_causal)
    out_shape = ctx.shape_of(node)
    scores = None if out_shape is None else tuple(out_shape[:-1]) + (k.shape[-2],)  # (..., H, Tq, Tk)
    if attn_mask is not None and bias is None and not input_mask:
        causal = constant_mask(node, attn_mask, scores, -2, -1, blocks_when_true=False) or causal
    record = None if offset is None else score_offset_record(node, offset, scores)
    attended = attention_heads(ctx.builder, q, k, v, bias, causal, scale, input_mask, record)
    return TensorValue(nodes=attended, shape=out_shape, axis=len(out_shape) - 1, heads=q.heads,
                       head_axis=len(out_shape) - 3, source=node)


accept_offset_params(F.scaled_dot_product_attention, torch.ops.aten.scaled_dot_product_attention.default)
