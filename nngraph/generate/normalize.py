"""Per-tensor normalisation of weight vectors with statistics of a zoo."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TensorStats"]


class TensorStats:
    r"""The mean and standard deviation of every parameter tensor over a zoo.

    Entry :math:`j` of a weight vector belongs to tensor :math:`g = \text{groups}[j]`; all entries of one
    tensor, over all models, share one mean and one std:

    .. math::
        z_j = (w_j - \mu_{g}) / \sigma_{g}, \qquad
        \mu_g = \operatorname{mean}_{m,\, j \in g} w_{mj}, \quad \sigma_g = \operatorname{std}_{m,\, j \in g} w_{mj}

    Per tensor, not per entry: the neurons of a layer are exchangeable, so an entry's own statistics would
    only describe the neuron order of the zoo. ``sigma`` is floored at ``min_std`` (a tensor constant over the
    zoo, such as a bias left at zero, is kept at its value).

    Shapes:
        - **groups:** :math:`(D,)` long; **mean**, **std:** :math:`(G,)` float64
        - :meth:`normalize` / :meth:`denormalize`: :math:`(B, D)` -> :math:`(B, D)`
    """

    def __init__(self, groups: Tensor, mean: Tensor, std: Tensor):
        self.groups = groups.long()
        self.mean = mean.to(torch.float64)
        self.std = std.to(torch.float64)

    @classmethod
    def fit(cls, flat: Tensor, groups: Tensor, min_std: float = 1e-8) -> "TensorStats":
        """The statistics of the weight vectors ``flat`` ``(M, D)`` per group of ``groups`` ``(D,)``."""
        if flat.dim() != 2 or flat.shape[0] == 0 or flat.shape[1] != groups.numel():
            raise ValueError(f"expected weight vectors (M >= 1, {groups.numel()}), got {tuple(flat.shape)}")
        num = int(groups.max()) + 1
        values = flat.to(torch.float64)
        counts = torch.bincount(groups, minlength=num).to(torch.float64) * flat.shape[0]  # (G,)
        total = torch.zeros(num, dtype=torch.float64).index_add_(0, groups, values.sum(0))
        mean = total / counts  # (G,)
        centred = (values - mean[groups]).pow(2).sum(0)  # (D,)
        var = torch.zeros(num, dtype=torch.float64).index_add_(0, groups, centred) / counts
        return cls(groups, mean, var.sqrt().clamp_min(min_std))

    def normalize(self, flat: Tensor) -> Tensor:
        """``(flat - mean) / std`` per entry's tensor, in ``flat``'s dtype."""
        mean, std = self.mean[self.groups].to(flat), self.std[self.groups].to(flat)  # (D,)
        return (flat - mean) / std

    def denormalize(self, z: Tensor) -> Tensor:
        """``z * std + mean``: weights from normalised values, in ``z``'s dtype."""
        mean, std = self.mean[self.groups].to(z), self.std[self.groups].to(z)  # (D,)
        return z * std + mean

    def state(self) -> dict:
        return {"groups": self.groups, "mean": self.mean, "std": self.std}

    @classmethod
    def from_state(cls, state: dict) -> "TensorStats":
        return cls(state["groups"], state["mean"], state["std"])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(tensors={self.mean.numel()}, entries={self.groups.numel()})"
