"""The self-supervised objective of model embeddings: NT-Xent between two views of the same model (SimCLR;
SANE, Schürholt et al., ICML 2024, for weight spaces).

Views of a model, each drawn afresh for every batch:

- Gaussian weight noise, relative to the typical weight of each depth (:func:`weight_noise`);
- sign flips of the neurons whose odd activation makes the flip a symmetry (:func:`nngraph.symmetry.sign_flip`
  flips those and only those);
- a random relabelling of the hidden neurons (:class:`tasks.common.permutation.SymmetryAugmented`): invisible to the
  equivariant encoder, a real view for an encoder whose equivariance is broken;
- another member of the same group, e.g. another checkpoint of the same training run (:class:`ViewPairs`
  with the manifest field ``run`` of classifier zoos).

Members of one group are not each other's negatives: :func:`nt_xent` masks them out.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from nngraph import schema

from nngraph.symmetry import sign_flip

__all__ = ["nt_xent", "weight_noise", "augment_view", "ViewPairs", "group_ids"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1,
            groups: torch.Tensor | None = None) -> torch.Tensor:
    r"""Normalised-temperature cross entropy of two views (Chen et al., 2020, SimCLR).

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are a positive pair; every other row of both is a negative,
    except rows of the same ``groups`` value (another view of a related model, not a negative):

    .. math::
        \ell_i = -\log \frac{\exp(s_{i,p(i)} / \tau)}{\sum_{j \ne i,\ j \notin G(i) \setminus p(i)} \exp(s_{ij} / \tau)}

    with :math:`s` the cosine similarity over the :math:`2B` rows, averaged over all :math:`2B` rows.

    Shapes:
        - ``z1``, ``z2`` :math:`(B, D)`; ``groups`` :math:`(B,)` long (optional)
        - **output:** scalar
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent needs two (B, D) views of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    b = z1.size(0)
    z = F.normalize(torch.cat([z1, z2]), dim=-1)  # (2B, D)
    sim = z @ z.t() / temperature  # (2B, 2B)
    idx = torch.arange(2 * b, device=z.device)
    target = (idx + b) % (2 * b)  # (2B,) the row of each row's other view
    excluded = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    if groups is not None:
        if groups.shape != (b,):
            raise ValueError(f"groups must be ({b},), got {tuple(groups.shape)}")
        g = torch.cat([groups, groups])  # (2B,)
        excluded |= g.unsqueeze(0) == g.unsqueeze(1)
        excluded[idx, target] = False  # the positive stays
    sim = sim.masked_fill(excluded, float("-inf"))
    return F.cross_entropy(sim, target)


def weight_noise(batch, sigma: float, scaler, generator: torch.Generator | None = None):
    """A shallow copy of ``batch`` with Gaussian noise on every weight and bias: ``sigma`` times the
    ``scaler``'s scale of its depth (:class:`tasks.common.scaling.GraphScaler`: the RMS weight / bias of the layer),
    so the noise is relative. Identity and structural edges, input neurons and normalisation features stay.

    Shapes:
        - ``edge_attr`` :math:`(W, 1)` and ``x`` :math:`(N, F)` keep their shapes.
    """
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    out = copy.copy(batch)
    if sigma == 0:
        return out
    weight, _ = scaler._weight_entries(batch)  # (W,) bool: rows of edge_attr in weight edges
    noise = torch.randn(batch.edge_attr.shape, generator=generator).to(batch.edge_attr)  # (W, 1)
    out.edge_attr = batch.edge_attr + sigma * noise * scaler.edge_factor(batch) * weight.unsqueeze(-1)
    biased = (batch.node_type != int(schema.NodeType.INPUT)).to(batch.x.dtype)  # (N,)
    x = batch.x.clone()
    noise = torch.randn(x.size(0), generator=generator).to(x)  # (N,)
    x[:, schema.BIAS] = x[:, schema.BIAS] + sigma * noise * scaler.node_factor(batch) * biased
    out.x = x
    return out


def augment_view(batch, scaler, noise: float = 0.0, flip: bool = True, generator: torch.Generator | None = None):
    """One random view of every graph of ``batch``: sign flips (where they are a symmetry) then weight noise."""
    if flip:
        batch = sign_flip(batch, generator=generator)
    return weight_noise(batch, noise, scaler, generator)


def group_ids(entries: Sequence[dict], field: str | None) -> list[int]:
    """``(M,)`` a small integer per distinct value of manifest ``field`` (every model its own group when
    ``field`` is ``None``).

    Raises:
        ValueError: naming the first model whose entry lacks ``field``.
    """
    if field is None:
        return list(range(len(entries)))
    codes: dict = {}
    out = []
    for e in entries:
        if field not in e:
            raise ValueError(f"model {e.get('id')!r} has no manifest field {field!r} to pair views by; "
                             f"its fields: {sorted(e)}")
        out.append(codes.setdefault(e[field], len(codes)))
    return out


class ViewPairs(Dataset):
    """Pairs of graphs of the same group: ``(source[i], source[j])`` with ``j`` another member of ``i``'s group
    (``i`` itself when it is alone), each view carrying ``pair_group`` ``(1,)`` for :func:`nt_xent`.

    Args:
        source: graphs, or a dataset of them (e.g. :class:`~tasks.common.permutation.SymmetryAugmented`, which
            relabels at every access, so the two views are relabelled independently).
        groups: ``(M,)`` group of every graph (:func:`group_ids`).
        fixed: pick the partner deterministically (the next member of the group): for validation.
    """

    def __init__(self, source, groups: Sequence[int], fixed: bool = False):
        if len(source) != len(groups):
            raise ValueError(f"{len(source)} graphs but {len(groups)} groups")
        self.source, self.groups, self.fixed = source, list(groups), fixed
        members: dict[int, list[int]] = {}
        for i, g in enumerate(self.groups):
            members.setdefault(g, []).append(i)
        self.members = members

    def __len__(self) -> int:
        return len(self.source)

    def partner(self, i: int) -> int:
        """The other view's index for item ``i`` (uses torch's global generator unless ``fixed``)."""
        group = self.members[self.groups[i]]
        if len(group) == 1:
            return i
        at = group.index(i)
        if self.fixed:
            return group[(at + 1) % len(group)]
        step = 1 + int(torch.randint(len(group) - 1, ()))
        return group[(at + step) % len(group)]

    def __getitem__(self, i: int):
        views = []
        for j in (i, self.partner(i)):
            g = copy.copy(self.source[j])  # shallow: the source's graphs stay as they are
            g.pair_group = torch.tensor([self.groups[i]])
            views.append(g)
        return tuple(views)
