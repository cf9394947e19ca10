"""What flows along the edges of an fx graph while it is being converted."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass(frozen=True, eq=False)
class TensorValue:
    """A tensor of the model, seen as neurons along one axis.

    Attributes:
        nodes: ``(C,)`` graph node ids of the neurons along ``axis``, or ``None`` for a model
            input whose neurons are created by the first converter that reads it (only then is it
            known which axis holds the features).
        shape: the tensor's shape from shape propagation (``None`` if unknown).
        axis: non-negative index of the neuron axis in ``shape``.
        spatial: extent of the positions each neuron spans after a flatten (``(H, W)`` for a
            flattened ``(B, C, H, W)`` map; ``()`` when every feature is one neuron).
        source: the fx node this value was first created for (used in error messages and to
            decide whether an activation may be recorded in place).
        heads: ``0``, or the number ``H`` of attention heads the neurons are split into: entry
            ``h`` of axis ``head_axis`` and entry ``j`` of axis ``axis`` is neuron
            ``nodes[h * (C // H) + j]`` (a ``(B, T, E)`` tensor viewed as ``(B, T, H, E // H)``).
        head_axis: non-negative index of the head axis when ``heads`` is set.
        merged: ``1``, or the number ``M`` of batch entries merged into the head axis with the heads (a
            ``(B, H, T, D)`` tensor reshaped to ``(B * H, T, D)`` for ``bmm``, as older attention code does):
            the head axis then has ``M * H`` entries, entry ``i`` showing head ``i % H`` of batch entry
            ``i // H``. Only moves, pass-through ops and attention products read such a value.
        padded: ``F.pad``'s ``(left, right, ...)`` zeros added to the last spatial axes, waiting for
            the convolution that reads this value (which records them as its own padding); ``()``.
        pending: ``(Pool, pool_args)`` records of positions picked out of a model input (``x[:, 0]``,
            :mod:`nngraph.convert.positions`), put on its input neurons when a layer makes them; ``()``.
    """

    nodes: torch.Tensor | None
    shape: tuple[int, ...] | None
    axis: int = -1
    spatial: tuple[int, ...] = ()
    source: object = None
    heads: int = 0
    head_axis: int = -1
    merged: int = 1
    padded: tuple[int, ...] = ()
    pending: tuple = ()

    @property
    def num_neurons(self) -> int:
        return 0 if self.nodes is None else int(self.nodes.numel())

    @property
    def neuron_axes(self) -> set[int]:
        """The axes that hold neurons (the feature axis, and the head axis of a head-split value); empty for a
        model input whose neurons are not made yet: every other axis is a position axis."""
        if self.nodes is None:
            return set()
        return {self.axis} | ({self.head_axis} if self.heads else set())

    def with_(self, **changes) -> "TensorValue":
        return replace(self, **changes)


#: constants of the forward larger than this many entries keep no value (the walk and the export lift)
FOLD_LIMIT = 1 << 20


@dataclass(frozen=True)
class Opaque:
    """A value that carries no neurons: a size, a dtype, a constant of the model (position ids, a
    mask built from constants). ``from_activations`` marks one computed from the model's activations
    (attention weights), which no operation may use: the graph would not show the dependence."""

    description: str = ""
    from_activations: bool = False
    value: object = None  # the tensor itself, for small integer constants of the model (index tables)
    #: ``(K,)`` the neurons a value computed from activations depends on (indices an operation nngraph cannot
    #: see through picked from them, :mod:`nngraph.convert.fallback`): fixed, and wired to what reads it
    nodes: torch.Tensor | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # error messages name the constant, never print its entries
        value = self.value
        shown = f"tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)
        kind = "computed from activations" if self.from_activations else "a constant"
        return f"{self.description or 'a value'} ({kind}{', ' + shown if value is not None else ''})"


@dataclass(frozen=True, eq=False)
class ParamValue:
    """A parameter read as data in ``forward`` (a class token, a positional embedding, a layer
    scale), possibly moved (expanded, reshaped): ``entries`` holds, for every entry of the moved
    tensor, the flat index of the parameter entry it shows. The op that combines it with an
    activation places the parameter (see :mod:`nngraph.convert.parameters`)."""

    name: str
    shape: tuple[int, ...]  # the parameter's own shape
    entries: torch.Tensor  # long, the moved tensor's shape


@dataclass(frozen=True, eq=False)
class DerivedParam:
    """A tensor computed from parameters (and constants) by operations no converter names: weight norm's
    ``g * v / ||v||``, ``1 + w``, a standardised kernel, ``W + A @ B``. Only the fallback reads it
    (:mod:`nngraph.convert.fallback`): the operation that uses it places ``names`` on fixed parameter nodes, except
    a linear or convolution whose derivation commutes with its neurons (:mod:`nngraph.convert.derived`)."""

    names: tuple[str, ...]  # the parameters it is computed from
    shape: tuple[int, ...] | None
    source: object = None  # the fx node that made it


@dataclass(frozen=True, eq=False)
class OffsetParam:
    """A parameter read as data plus a constant of the forward: Swin's relative-position bias plus its
    shifted-window mask, summed before they reach ``scaled_dot_product_attention`` as its ``attn_mask``.
    Only the converters of :data:`~nngraph.convert.registry.OFFSET_READERS` read it (the attention records
    the constant on its heads); the walk refuses it anywhere else, by name."""

    param: ParamValue
    offset: torch.Tensor  # the constant, as traced


@dataclass(frozen=True, eq=False)
class ScoreValue:
    """Attention scores ``q . k`` per head, written out by hand (``q @ k.transpose(-2, -1)``), on their
    way to ``softmax(scores) @ v``. They carry no neurons: their axes are positions (and heads). Only
    the operations of :mod:`nngraph.convert.eager_attention` may read them; the heads are made when
    the softmaxed scores meet the values, exactly as for ``scaled_dot_product_attention``.

    Attributes:
        q, k: the head-split query and key values whose neuron axes the scores contracted (``k``'s
            heads already repeated to ``q``'s when it was broadcast or repeated).
        heads: the number of heads (1 for single-head attention without a head axis).
        shape: the scores' shape.
        head_axis: index of the head axis, ``None`` when there is none (single head).
        merged: ``1``, or the number of batch entries merged into the head axis with the heads (see
            :attr:`TensorValue.merged`): entry ``i`` of the head axis is head ``i % heads``.
        query_axis, key_axis: indices of the query-position and key-position axes.
        scale: the number the raw products were multiplied by so far.
        bias: the per-head score bias added (``TensorValue`` of one neuron per head), or ``None``.
        blocked: ``(Tq, Tk)`` bool, the (query, key) pairs a constant mask set to ``-inf`` (the same for
            every batch entry and head), or ``None`` if no such mask was applied.
        other_mask: a constant mask was applied that is not such a pattern (finite values, or one
            whose values are unknown): refused when the scores meet the values.
        input_mask: a mask that is a model input was applied (the heads are
            :attr:`~nngraph.schema.NodeKind.MASKED_HEAD`).
        softmaxed: ``softmax`` over the key positions was applied.
        source: the fx node of the product (error messages).
    """

    q: TensorValue
    k: TensorValue
    heads: int
    shape: tuple[int, ...]
    head_axis: int | None
    query_axis: int
    key_axis: int
    scale: float = 1.0
    bias: TensorValue | None = None
    blocked: torch.Tensor | None = None
    other_mask: bool = False
    input_mask: bool = False
    mask_source: object = None  # the fx node of the last mask applied (error messages)
    softmaxed: bool = False
    source: object = None
    merged: int = 1

    def with_(self, **changes) -> "ScoreValue":
        return replace(self, **changes)


@dataclass(frozen=True, eq=False)
class StackedValue:
    """Activation spaces stacked along a new axis: a fused projection viewed as ``(B, T, 3, H, D)`` (timm's
    ``qkv``), whose entry ``i`` along ``axis`` is ``parts[i]``. Only moves that keep the stack axis whole
    (permute, transpose) or pick one entry of it (``unbind``, ``qkv[0]``) are followed.

    Attributes:
        parts: the stacked values, each of ``shape`` without ``axis``.
        shape: the stacked tensor's shape.
        axis: index of the stack axis.
        source: the fx node it was made at.
    """

    parts: tuple[TensorValue, ...]
    shape: tuple[int, ...]
    axis: int
    source: object = None


def flatten(tree) -> list:
    """The leaves of nested tuples, lists and dicts (an fx node's converted arguments), in order."""
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in flatten(item)]
    if isinstance(tree, dict):
        return [leaf for item in tree.values() for leaf in flatten(item)]
    return [tree]
