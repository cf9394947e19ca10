"""What flows along the edges of an fx graph while it is being converted."""
from __future__ import annotations

from dataclasses import dataclass, replace

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
        padded: ``F.pad``'s ``(left, right, ...)`` zeros added to the last spatial axes, waiting for
            the convolution that reads this value (which records them as its own padding); ``()``.
    """

    nodes: torch.Tensor | None
    shape: tuple[int, ...] | None
    axis: int = -1
    spatial: tuple[int, ...] = ()
    source: object = None
    heads: int = 0
    head_axis: int = -1
    padded: tuple[int, ...] = ()

    @property
    def num_neurons(self) -> int:
        return 0 if self.nodes is None else int(self.nodes.numel())

    def with_(self, **changes) -> "TensorValue":
        return replace(self, **changes)


@dataclass(frozen=True)
class Opaque:
    """A value that carries no neurons: a size, a dtype, a constant of the model (position ids, a
    mask built from constants). ``from_activations`` marks one computed from the model's activations
    (attention weights), which no operation may use: the graph would not show the dependence."""

    description: str = ""
    from_activations: bool = False
    value: object = None  # the tensor itself, for small integer constants of the model (index tables)


@dataclass(frozen=True, eq=False)
class ParamValue:
    """A parameter read as data in ``forward`` (a class token, a positional embedding, a layer
    scale), possibly moved (expanded, reshaped): ``entries`` holds, for every entry of the moved
    tensor, the flat index of the parameter entry it shows. The op that combines it with an
    activation places the parameter (see :mod:`nngraph.convert.parameters`)."""

    name: str
    shape: tuple[int, ...]  # the parameter's own shape
    entries: torch.Tensor  # long, the moved tensor's shape
