"""Weight-space MixUp (Shamsian et al., 2024): train on interpolations of two models and of their labels.

Every graph of a training batch is mixed with another graph of the same batch: ``λ·w_i + (1-λ)·w_j`` on
every weight and bias, ``λ·onehot(y_i) + (1-λ)·onehot(y_j)`` as its (soft) label, ``λ ~ Beta(α, α)`` per
graph. Mixing entry by entry needs graphs of one architecture in one node and edge order; it means
something only when the models were aligned first (:func:`nngraph.symmetry.align_all`: otherwise unrelated
neurons are averaged), which is how the ``encoder_mixup`` rows of ``tasks.inr_classification`` use it.
"""
from __future__ import annotations

import copy

import torch

__all__ = ["WeightMixup"]


class WeightMixup:
    """A batch -> batch augmentation (``train_graph_predictor(augment=...)``) for classification.

    Args:
        num_classes (int): labels become ``(B, num_classes)`` probabilities.
        alpha (float): the Beta distribution's parameter; small values keep most mixes near one model.
            (default: :obj:`0.2`)
        then (callable, optional): a further augmentation applied to the mixed batch (e.g. sign flips).

    Shapes:
        - input: a ``Batch`` of ``B`` graphs of ``n`` nodes and ``W`` edge entries each, ``y`` :math:`(B,)`.
        - output: ``x`` :math:`(B n, F)` and ``edge_attr`` :math:`(B W, 1)` mixed, ``y`` :math:`(B, C)` float.
    """

    __name__ = "weight_mixup"

    def __init__(self, num_classes: int, alpha: float = 0.2, then=None):
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.num_classes, self.alpha, self.then = num_classes, alpha, then

    def __call__(self, batch):
        b = batch.num_graphs
        sizes = batch.ptr.diff()  # (B,)
        if not bool((sizes == sizes[0]).all()) or batch.edge_attr.size(0) % b:
            raise ValueError("weight-space MixUp needs graphs of one architecture in one batch")
        if getattr(batch, "probe", None) is not None:
            raise ValueError("probe features are outputs of the unmixed models; drop them before mixing")
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((b,)).to(batch.x.device)  # (B,)
        partner = torch.randperm(b, device=batch.x.device)  # (B,)
        out = self.mix(batch, lam, partner)
        return self.then(out) if self.then is not None else out

    def mix(self, batch, lam: torch.Tensor, partner: torch.Tensor):
        """Graph ``i`` of ``batch`` mixed with graph ``partner[i]`` by weight ``lam[i]`` (``(B,)`` each)."""
        b = batch.num_graphs
        n, w = batch.num_nodes // b, batch.edge_attr.size(0) // b
        out = copy.copy(batch)
        lam3 = lam.view(b, 1, 1).to(batch.x.dtype)  # (B, 1, 1)
        x = batch.x.view(b, n, -1)  # (B, n, F)
        out.x = (lam3 * x + (1 - lam3) * x[partner]).reshape(b * n, -1)  # (B n, F)
        e = batch.edge_attr.view(b, w, -1)  # (B, W, 1)
        out.edge_attr = (lam3 * e + (1 - lam3) * e[partner]).reshape(b * w, -1)  # (B W, 1)
        onehot = torch.nn.functional.one_hot(batch.y, self.num_classes).to(batch.x.dtype)  # (B, C)
        out.y = lam3.view(b, 1) * onehot + (1 - lam3.view(b, 1)) * onehot[partner]  # (B, C)
        return out
