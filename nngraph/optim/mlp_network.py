"""The per-parameter update network of :class:`~nngraph.optim.PerParameterMLPOptimizer`: the design of
`Metz et al. (2022) <https://arxiv.org/abs/2203.11860>`_, no graph."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .features import DEFAULT_BETAS, Segments
from .output import StepOutput

__all__ = ["PerParameterUpdateNetwork"]


class PerParameterUpdateNetwork(nn.Module):
    r"""Every entry's step from its own features only: a :class:`StepOutput` without context.

    The baseline of the graph optimizer: the same features, the same output parametrisation and the same
    per-entry MLP, but no message passing, so an entry never sees the rest of its model.

    Args:
        betas (sequence of float): momentum timescales of the features.
            (default: :data:`~nngraph.optim.features.DEFAULT_BETAS`)
        output_dim (int): width of the per-entry MLP. (default: :obj:`32`)
        init_lr (float): initial step size. (default: :obj:`1e-3`)
        max_log_scale (float): bound of the log of the per-entry step factor (:class:`StepOutput`).
            (default: :obj:`1.0`)
        act (str): activation of the MLP. (default: :obj:`"silu"`)
        rule, min_log_scale, max_additive, progress: how the outputs shape the step (:class:`StepOutput`).
            (default: :obj:`"rescaled"`, :obj:`None`, :obj:`0.5`, :obj:`False`)

    Shapes:
        - **input:** features :math:`(P, C)` and their :class:`~nngraph.optim.features.Segments` (``graph`` and
          ``placement`` are ignored); with ``progress``, the fraction of the run done :math:`(P,)` or a scalar
        - **output:** the step :math:`(P,)`
    """

    kind = "mlp"

    def __init__(self, betas: Sequence[float] = DEFAULT_BETAS, output_dim: int = 32, init_lr: float = 1e-3,
                 max_log_scale: float = 1.0, act: str = "silu", rule: str = "rescaled",
                 min_log_scale: float | None = None, max_additive: float = 0.5, progress: bool = False):
        super().__init__()
        self.betas = tuple(float(b) for b in betas)
        self.config = dict(betas=list(self.betas), output_dim=output_dim, init_lr=init_lr, max_log_scale=max_log_scale,
                           act=act, rule=rule, min_log_scale=min_log_scale, max_additive=max_additive, progress=progress)
        self.output = StepOutput(self.betas, 0, output_dim, init_lr, max_log_scale, act=act, rule=rule,
                                 min_log_scale=min_log_scale, max_additive=max_additive, progress=progress)

    def forward(self, features: Tensor, segments: Segments, graph=None, placement=None,
                progress: Tensor | None = None) -> Tensor:
        return self.output(features, segments, None, progress)  # (P,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(output_dim={self.config['output_dim']}, betas={self.betas})"
