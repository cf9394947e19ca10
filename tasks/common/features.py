"""Extra node features the tasks give the encoder, and the sizes they read off graphs.

- probe features: each neuron's value on fixed probe inputs (:func:`probe_inputs_for` chooses the inputs,
  ``nngraph.probe_features`` computes the values);
- random positional features on hidden neurons (breaks permutation equivariance on purpose: a baseline).
"""
from __future__ import annotations

import torch

from nngraph import schema
from nngraph.data import example_inputs_for_spec
from nngraph.zoo.inr_meta import INRMetadata

__all__ = ["probe_inputs_for", "add_positional_features", "max_kernel_shape"]


def probe_inputs_for(spec: dict, num: int, seed: int = 0, placement: str = "grid",
                     inr: INRMetadata | None = None) -> torch.Tensor:
    """``num`` fixed probe inputs for models of ``spec``.

    ``placement="grid"``: for 2-D coordinate inputs (an INR) with ``num`` a square ``k * k``, the ``k x k``
    grid of the zoo's coordinates (``inr``, the zoo's :class:`~nngraph.zoo.inr_meta.INRMetadata`: its range
    and column order; default ``[-1, 1]^2`` in ``(x, y)``, the zoos built here), row-major, so the output
    neuron's probe values are a ``k x k`` rendering of the image; otherwise (other inputs, ``num`` not a
    square, or ``placement="random"``) inputs uniform in ``[-1, 1]`` (an INR's: in its coordinate range).
    """
    if placement not in ("grid", "random"):
        raise ValueError(f"Could not resolve probe placement {placement!r} among choices ['grid', 'random']")
    shape = example_inputs_for_spec(spec, 1)[0].shape[1:]
    k = round(num ** 0.5)
    inr = inr or INRMetadata()
    if placement == "grid" and tuple(shape) == (2,) and k * k == num and k > 1:
        return inr.grid(k, k)  # (P, 2)
    g = torch.Generator().manual_seed(seed)
    lo, hi = inr.coord_range if tuple(shape) == (2,) else (-1.0, 1.0)
    return torch.rand(num, *shape, generator=g) * (hi - lo) + lo  # (P, *in_shape)


def max_kernel_shape(graphs) -> tuple[int, int, int]:
    """The elementwise largest edge kernel ``(depth, height, width)`` of ``graphs`` (to size an encoder's
    ``max_kernel_box``)."""
    box = [1, 1, 1]
    for g in graphs:
        if g.kernel_shape.numel():
            box = [max(a, int(b)) for a, b in zip(box, g.kernel_shape.amax(0))]
    return tuple(box)  # type: ignore[return-value]



def add_positional_features(graphs: list, dim: int, seed: int = 0) -> list:
    """Copies of ``graphs`` whose ``probe`` gains ``dim`` columns: a fixed random vector per node *position*
    for hidden neurons (zeros elsewhere). Relabelling hidden neurons no longer relabels the features, so
    an encoder reading them is no longer permutation-equivariant (the "broken symmetry" baseline).
    """
    max_nodes = max(int(g.num_nodes) for g in graphs)
    table = torch.randn(max_nodes, dim, generator=torch.Generator().manual_seed(seed))  # (N_max, dim)
    out = []
    for g in graphs:
        g = g.clone()
        hidden = (g.node_type == int(schema.NodeType.HIDDEN)).unsqueeze(-1)  # (N, 1)
        pos = table[: int(g.num_nodes)] * hidden  # (N, dim)
        old = getattr(g, "probe", None)
        g.probe = pos if old is None else torch.cat([old, pos], dim=-1)  # (N, P + dim)
        out.append(g)
    return out
