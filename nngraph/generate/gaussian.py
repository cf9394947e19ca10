"""The statistics baseline: every weight drawn from a Gaussian with its tensor's mean and std over the zoo."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from .base import WeightGenerator, register_generator

__all__ = ["GaussianGenerator"]


@register_generator("gaussian")
class GaussianGenerator(WeightGenerator):
    r"""Per-tensor Gaussian weights: entry :math:`j` of tensor :math:`g` is :math:`\mu_g + \sigma_g\,\epsilon_j`,
    :math:`\epsilon_j \sim \mathcal{N}(0, 1)` i.i.d., with :math:`\mu_g, \sigma_g` of the zoo
    (:class:`~nngraph.generate.TensorStats`).

    The "statistics" generator of the baselines: it knows each layer's scale, which already gives working
    initialisations, and nothing about how weights depend on each other. It is unconditional: ``fit``
    accepts the zoo's conditions and ``sample`` a condition (the same API as the other generators), and the
    samples do not depend on them.
    """

    def fit(self, graphs: Sequence[Data], conditions=None, *, template: nn.Module,
            example_inputs: Sequence[Tensor] | Tensor | None = None) -> "GaussianGenerator":
        """Fit the per-tensor statistics of ``graphs`` (all of the architecture of ``template``); returns ``self``."""
        self.prepare(graphs, conditions, template, example_inputs)
        return self

    @torch.no_grad()
    def sample(self, template: Data | nn.Module, n: int, condition=None, seed: int | None = None) -> list[Data]:
        """``n`` graphs of the template's architecture with Gaussian weights (``condition`` is checked and ignored)."""
        self.check_template(template)
        if self.condition.kind != "none":
            self.condition.values(condition, n)  # a wrong condition is an error here as for the other generators
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.space.dim, generator=generator, dtype=torch.float64)  # (n, D)
        return self.space.graphs(self.stats.denormalize(z))
