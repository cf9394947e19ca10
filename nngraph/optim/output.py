r"""The last stage of a learned optimizer: per-entry features (and context) to a bounded step."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nngraph.gnn.utils import make_act

from .features import Segments, feature_names, num_features

__all__ = ["StepOutput", "base_channel"]

#: Added to a tensor's root mean square before dividing by it (a tensor without gradient keeps a zero step).
_EPS = 1e-12


def base_channel(betas: Sequence[float]) -> int:
    """The feature channel of Adam's direction at the timescale closest to 0.9 (:func:`feature_names`)."""
    k = min(range(len(betas)), key=lambda i: abs(betas[i] - 0.9))
    return feature_names(betas).index(f"adam_{betas[k]:g}")


class StepOutput(nn.Module):
    r"""The step of every entry: Adam's direction modulated by a network, rescaled per tensor to the norm of
    Adam's, times a bounded per-entry factor and a learned step size (the bounded parametrisation of
    `Metz et al. (2022) <https://arxiv.org/abs/2203.11860>`_):

    .. math::
        (d_i, u_i) = \mathrm{MLP}\big([\mathbf{f}_i \,\|\, \mathbf{z}_i]\big), \qquad
        \hat d_i = (a_i + d_i)\,\frac{\mathrm{rms}_t(a)}{\mathrm{rms}_t(a + d) + \epsilon}, \qquad
        \Delta w_i = -\eta \,\hat d_i\, \exp\big(c \tanh(u_i / c)\big)

    where :math:`\mathbf{f}_i` are the entry's features (:func:`~nngraph.optim.features.entry_features`),
    :math:`\mathbf{z}_i` its context (what a graph network read about the entry's neighbourhood; none for the
    per-parameter optimizer), :math:`a_i` Adam's direction at the timescale closest to 0.9 (feature channel
    :func:`base_channel`), :math:`\mathrm{rms}_t` the root mean square over the entry's tensor :math:`t` and
    :math:`\eta = \exp(\log\eta)` a learned step size.

    Why bounded: the network decides where a tensor's step goes, not how large it is. Whatever the network
    outputs, the root mean square of every tensor's step lies between :math:`\eta e^{-c}` and :math:`\eta e^{c}`
    times that of Adam's direction on the same tensor, so the step cannot grow with a layer's width, the
    size of the network's own outputs, or inputs it never saw in meta-training: a model the network was not
    meta-trained on gets at worst Adam's step at learning rate :math:`\eta e^{c}`.

    The MLP's last layer starts at zero, so the untrained rule is Adam (``betas=(0.9, 0.999)``) with learning
    rate ``init_lr``: a sane step to meta-train from.

    Args:
        betas (sequence of float): the momentum timescales of the features.
        context_dim (int): width :math:`D` of the per-entry context, 0 for none. (default: :obj:`0`)
        hidden_dim (int): width of the MLP. (default: :obj:`32`)
        init_lr (float): initial step size :math:`\eta`. (default: :obj:`1e-3`)
        max_log_scale (float): the bound :math:`c` of the log of the per-entry factor. (default: :obj:`1.0`)
        act (str): activation of the MLP. (default: :obj:`"silu"`)

    Shapes:
        - **input:** features :math:`(P, C)`, the :class:`~nngraph.optim.features.Segments` of the :math:`P`
          entries, context :math:`(P, D)` (or :obj:`None` when :math:`D = 0`)
        - **output:** the step :math:`(P,)`, to be added to the parameters
    """

    def __init__(self, betas: Sequence[float], context_dim: int = 0, hidden_dim: int = 32, init_lr: float = 1e-3,
                 max_log_scale: float = 1.0, act: str = "silu"):
        super().__init__()
        if max_log_scale <= 0:
            raise ValueError(f"StepOutput: max_log_scale bounds |log step factor| and must be positive, got {max_log_scale}")
        self.num_features = num_features(len(betas))
        self.base = base_channel(betas)
        self.context_dim, self.hidden_dim, self.init_lr, self.max_log_scale = context_dim, hidden_dim, init_lr, max_log_scale
        self.mlp = nn.Sequential(nn.Linear(self.num_features + context_dim, hidden_dim), make_act(act),
                                 nn.Linear(hidden_dim, hidden_dim), make_act(act), nn.Linear(hidden_dim, 2))
        self.log_lr = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        nn.init.constant_(self.log_lr, math.log(self.init_lr))

    def forward(self, features: Tensor, segments: Segments, context: Tensor | None = None) -> Tensor:
        inputs = features if context is None else torch.cat([features, context], dim=1)  # (P, C + D)
        out = self.mlp(inputs)  # (P, 2)
        adam = features[:, self.base]  # (P,)
        direction = adam + out[:, 0]  # (P,)
        both = torch.stack([adam, direction])  # (2, P)
        rms = segments.mean_square(both).sqrt()  # (2, T): per tensor, Adam's and the modulated direction's
        ratio = rms[0] / (rms[1] + _EPS)  # (T,)
        direction = direction * ratio[segments.ids.to(direction.device)]  # (P,): every tensor at Adam's norm
        c = self.max_log_scale
        factor = (c * torch.tanh(out[:, 1] / c)).exp()  # (P,) in (e^-c, e^c)
        return -self.log_lr.exp() * direction * factor  # (P,)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(features={self.num_features}, context_dim={self.context_dim}, "
                f"hidden_dim={self.hidden_dim}, init_lr={self.init_lr}, max_log_scale={self.max_log_scale})")
