r"""The inputs of a learned optimizer: momenta at several timescales, normalised per tensor.

All parameters a step updates are concatenated into one flat vector of :math:`P` entries; a
:class:`Segments` records which tensor every entry belongs to. For every entry :math:`i` of tensor
:math:`t` after step :math:`s` the features are

.. math::
    \frac{w_i}{\mathrm{rms}_t(w)},\quad \frac{g_i}{\mathrm{rms}_t(g)},\quad
    \frac{\hat m^{(k)}_i}{\mathrm{rms}_t(\hat m^{(k)})},\quad
    \frac{\hat m^{(k)}_i}{\sqrt{\hat v_i} + \epsilon}
    \qquad (k = 1 \dots K)

with :math:`\hat m^{(k)} = m^{(k)} / (1 - \beta_k^s)` the bias-corrected momentum of timescale
:math:`\beta_k`, :math:`\hat v` the bias-corrected second moment and :math:`\mathrm{rms}_t` the root mean
square over tensor :math:`t` (the per-tensor normalisation of `Metz et al., 2022
<https://arxiv.org/abs/2203.11860>`_): the features do not depend on a tensor's scale, and the last
:math:`K` are Adam's directions at each timescale. A permutation of a tensor's entries permutes its
features, since every normaliser is a statistic of a whole tensor.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["DEFAULT_BETAS", "SECOND_MOMENT_BETA", "MomentState", "Segments", "advance_state", "entry_features",
           "feature_names", "init_state", "num_features"]

#: Momentum timescales of the features (0.5: the last two steps, 0.99: the last hundred).
DEFAULT_BETAS = (0.5, 0.9, 0.99)
#: Timescale of the second moment that divides the momenta (Adam's ``beta2``).
SECOND_MOMENT_BETA = 0.999
#: Added to :math:`\sqrt{\hat v}` (Adam's ``eps``).
ADAM_EPS = 1e-8
#: Added to a tensor's mean square before the division: a tensor of zeros gives zero features.
_TINY = 1e-30


def num_features(num_betas: int) -> int:
    """Feature channels for ``num_betas`` momentum timescales: weight, gradient, ``K`` momenta, ``K`` Adam directions."""
    return 2 + 2 * num_betas


def feature_names(betas: Sequence[float]) -> tuple[str, ...]:
    """The names of the feature channels, in order."""
    return ("weight", "grad", *(f"momentum_{b:g}" for b in betas), *(f"adam_{b:g}" for b in betas))


class Segments:
    """Which tensor every entry of a flat parameter vector belongs to.

    Args:
        sizes: ``numel`` of every tensor, in the order they are concatenated.

    Attributes:
        ids: ``(P,)`` long, the tensor of every entry.
        counts: ``(T,)``, the entries of every tensor.
    """

    def __init__(self, sizes: Sequence[int], device: torch.device | str | None = None):
        self.sizes = tuple(int(s) for s in sizes)
        counts = torch.tensor(self.sizes, dtype=torch.long, device=device)  # (T,)
        self.ids = torch.repeat_interleave(torch.arange(len(self.sizes), device=device), counts)  # (P,)
        self.counts = counts
        self.num_entries = int(counts.sum())

    def mean_square(self, values: Tensor) -> Tensor:
        """``(C, T)``: the mean of the squares of ``values`` ``(C, P)`` over every tensor."""
        out = values.new_zeros(values.shape[0], len(self.sizes))  # (C, T)
        return out.index_add(1, self.ids, values * values) / self.counts.to(values.dtype)

    def normalise(self, values: Tensor) -> Tensor:
        """``(C, P)``: ``values`` ``(C, P)`` divided by their root mean square over every tensor."""
        scale = torch.rsqrt(self.mean_square(values) + _TINY)  # (C, T)
        return values * scale[:, self.ids]  # (C, P)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.sizes)} tensors, {self.num_entries} entries)"


class MomentState(NamedTuple):
    """What a learned optimizer remembers of the gradients, for ``P`` entries and ``K`` timescales."""

    step: Tensor  # (P,) steps taken by every entry (float, for the bias corrections)
    momenta: Tensor  # (K, P)
    second: Tensor  # (P,)


def init_state(num_entries: int, num_betas: int, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> MomentState:
    """The state before the first step: zeros."""
    zeros = torch.zeros(num_entries, dtype=dtype, device=device)
    return MomentState(zeros, torch.zeros(num_betas, num_entries, dtype=dtype, device=device), zeros.clone())


def advance_state(state: MomentState, grad: Tensor, betas: Sequence[float] = DEFAULT_BETAS,
                  beta2: float = SECOND_MOMENT_BETA) -> MomentState:
    """The state after one more gradient ``grad`` ``(P,)`` (a new state; ``state`` is not changed)."""
    b = torch.tensor(tuple(betas), dtype=grad.dtype, device=grad.device).unsqueeze(1)  # (K, 1)
    momenta = b * state.momenta + (1 - b) * grad  # (K, P)
    second = beta2 * state.second + (1 - beta2) * grad * grad  # (P,)
    return MomentState(state.step + 1, momenta, second)


def entry_features(weight: Tensor, grad: Tensor, state: MomentState, segments: Segments,
                   betas: Sequence[float] = DEFAULT_BETAS, beta2: float = SECOND_MOMENT_BETA) -> Tensor:
    """The features of every entry (see the module docstring), after ``state`` has seen ``grad``.

    Shapes:
        - **weight, grad:** :math:`(P,)`; ``state`` of :math:`P` entries and :math:`K` timescales
        - **output:** :math:`(P, 2 + 2K)`, channels named by :func:`feature_names`
    """
    b = torch.tensor(tuple(betas), dtype=grad.dtype, device=grad.device).unsqueeze(1)  # (K, 1)
    step = state.step.clamp_min(1)  # (P,): an entry that has not stepped yet has zero momenta anyway
    m_hat = state.momenta / (1 - b ** step)  # (K, P)
    v_hat = state.second / (1 - beta2 ** step)  # (P,)
    scaled = segments.normalise(torch.cat([weight.unsqueeze(0), grad.unsqueeze(0), m_hat]))  # (2 + K, P)
    adam = m_hat / (v_hat.sqrt() + ADAM_EPS)  # (K, P)
    return torch.cat([scaled, adam]).t()  # (2 + 2K, P) -> (P, 2 + 2K)
