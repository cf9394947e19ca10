r"""The last stage of a learned optimizer: per-entry features (and context) to a bounded step."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nngraph.gnn.utils import make_act

from .features import Segments, feature_names, num_features
from .roles import ROLE_SIZES

__all__ = ["RULES", "StepOutput", "base_channel"]

#: How the network's outputs shape the step (:class:`StepOutput`).
RULES = ("rescaled", "cone")

#: Added to a tensor's root mean square before dividing by it (a tensor without gradient keeps a zero step).
_EPS = 1e-12


def base_channel(betas: Sequence[float]) -> int:
    """The feature channel of Adam's direction at the timescale closest to 0.9 (:func:`feature_names`)."""
    k = min(range(len(betas)), key=lambda i: abs(betas[i] - 0.9))
    return feature_names(betas).index(f"adam_{betas[k]:g}")


def bounded_log(u: Tensor, low: float, high: float) -> Tensor:
    r"""``u`` squashed into :math:`(-\text{low}, \text{high})`: :math:`h \tanh(u / h)` above zero and
    :math:`l \tanh(u / l)` below (slope 1 at zero on both sides, so the derivative is continuous)."""
    return torch.where(u >= 0, high * torch.tanh(u / high), low * torch.tanh(u / low))


class StepOutput(nn.Module):
    r"""The step of every entry from its features: Adam's direction, modulated by a small MLP, with a learned
    step size; the step stays bounded relative to Adam's whatever the MLP outputs (the bounded parametrisation of
    `Metz et al. (2022) <https://arxiv.org/abs/2203.11860>`_). Two rules:

    ``rule="cone"``: Adam's direction plus a small bounded additive term, times a bounded per-entry factor,

    .. math::
        (d_i, u_i) = \mathrm{MLP}\big([\mathbf{f}_i \,\|\, \mathbf{z}_i \,\|\, \tau]\big), \qquad
        \Delta w_i = -\eta \Big(a_i + b\, \mathrm{rms}_t(a) \tanh(d_i)\Big) e^{\sigma(u_i)}, \qquad
        b = b_{\max} \tanh(\beta)

    with :math:`\sigma` = :func:`bounded_log` into :math:`(-c_-, c_+)` and :math:`\beta` learned, started at 0.
    The factor is positive, so it never turns an entry against Adam's direction; only the additive term can,
    and only where :math:`|a_i| < |b|\, \mathrm{rms}_t(a)`: its size per entry is at most :math:`|b|` times the
    root mean square of Adam's direction on the tensor (the network cannot pick a direction of its own, as the
    free correction of the rescaled rule does). Per entry the step is at most
    :math:`\eta\, e^{c_+} (|a_i| + |b|\, \mathrm{rms}_t(a))`, so per tensor its root mean square is at most
    :math:`\eta\, e^{c_+} (1 + b_{\max})` times Adam's. :math:`\tau` is the fraction of the run done
    (``progress``), which lets the factor follow a learned schedule (:math:`c_-` larger than :math:`c_+` lets
    it decay far); the additive term decays with it.

    ``rule="rescaled"``: Adam's direction plus a free correction :math:`d_i` (the same MLP's), rescaled per tensor
    to Adam's norm,

    .. math::
        \hat d_i = (a_i + d_i)\,\frac{\mathrm{rms}_t(a)}{\mathrm{rms}_t(a + d) + \epsilon}, \qquad
        \Delta w_i = -\eta \,\hat d_i\, e^{\sigma(u_i)}

    (its per-tensor size is bounded, its direction is the MLP's: on models wider than meta-training it leaves
    Adam's descent cone, docs/tasks/learned_optimizer.md).

    With ``role_offsets``, the step size is one per role of an entry in its model's graph
    (:func:`~nngraph.optim.roles.entry_roles`: where the entry sits, the kinds of the neurons it joins),
    :math:`\eta_i = \exp(\log\eta + o_{\text{where}(i)} + o_{\text{from}(i)} + o_{\text{to}(i)})`, with one learned
    offset :math:`o` per value of each role index, started at 0 (the rule unchanged until meta-training moves them):
    the attention in-projection, a weight read from a normalised value, a norm gain or a recurrent weight can take
    a step size of its own without moving every other tensor's.

    Here :math:`\mathbf{f}_i` are the entry's features (:func:`~nngraph.optim.features.entry_features`),
    :math:`\mathbf{z}_i` its context (what a graph network read about the entry's neighbourhood; none for the
    per-parameter optimizer), :math:`a_i` Adam's direction at the timescale closest to 0.9 (feature channel
    :func:`base_channel`), :math:`\mathrm{rms}_t` the root mean square over the entry's tensor :math:`t` and
    :math:`\eta = \exp(\log\eta)` a learned step size.

    The MLP's output layer starts at zero (the row of :math:`d_i` small and random under the cone rule, so that
    :math:`\beta` has a gradient), so the untrained rule is Adam (``betas=(0.9, 0.999)``) with learning rate
    ``init_lr``: a sane step to meta-train from.

    Args:
        betas (sequence of float): the momentum timescales of the features.
        context_dim (int): width :math:`D` of the per-entry context, 0 for none. (default: :obj:`0`)
        hidden_dim (int): width of the MLP. (default: :obj:`32`)
        init_lr (float): initial step size :math:`\eta`. (default: :obj:`1e-3`)
        max_log_scale (float): :math:`c_+`, the bound of the log of the per-entry factor above. (default: :obj:`1.0`)
        act (str): activation of the MLP. (default: :obj:`"silu"`)
        rule (str): ``"cone"`` or ``"rescaled"``. (default: :obj:`"rescaled"`)
        min_log_scale (float, optional): :math:`c_-`, the bound below. (default: :obj:`None`, :math:`c_+`)
        max_additive (float): :math:`b_{\max}` of the cone rule. (default: :obj:`0.5`)
        progress (bool): the MLP reads the fraction of the run done, :math:`\tau \in [0, 1]`. (default: :obj:`False`)
        role_offsets (bool): a learned log step-size offset per value of every role index (the entries' roles
            are then an input). (default: :obj:`False`)

    Shapes:
        - **input:** features :math:`(P, C)`, the :class:`~nngraph.optim.features.Segments` of the :math:`P`
          entries, context :math:`(P, D)` (or :obj:`None` when :math:`D = 0`), progress :math:`(P,)` (or
          :obj:`None` without ``progress``), roles :math:`(P, 3)` long (or :obj:`None` without ``role_offsets``)
        - **output:** the step :math:`(P,)`, to be added to the parameters
    """

    def __init__(self, betas: Sequence[float], context_dim: int = 0, hidden_dim: int = 32, init_lr: float = 1e-3,
                 max_log_scale: float = 1.0, act: str = "silu", rule: str = "rescaled",
                 min_log_scale: float | None = None, max_additive: float = 0.5, progress: bool = False,
                 role_offsets: bool = False):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"StepOutput: Could not resolve rule {rule!r} among choices {list(RULES)}")
        min_log_scale = max_log_scale if min_log_scale is None else min_log_scale
        if max_log_scale <= 0 or min_log_scale <= 0:
            raise ValueError(f"StepOutput: max_log_scale and min_log_scale bound |log step factor| and must be positive, "
                             f"got {max_log_scale} and {min_log_scale}")
        self.num_features = num_features(len(betas))
        self.base = base_channel(betas)
        self.context_dim, self.hidden_dim, self.init_lr, self.max_log_scale = context_dim, hidden_dim, init_lr, max_log_scale
        self.rule, self.min_log_scale, self.max_additive, self.progress = rule, min_log_scale, max_additive, progress
        self.role_offsets = role_offsets
        inputs = self.num_features + context_dim + int(progress)
        self.mlp = nn.Sequential(nn.Linear(inputs, hidden_dim), make_act(act),
                                 nn.Linear(hidden_dim, hidden_dim), make_act(act), nn.Linear(hidden_dim, 2))
        self.log_lr = nn.Parameter(torch.empty(()))
        if rule == "cone":
            self.additive = nn.Parameter(torch.empty(()))  # beta: b = max_additive * tanh(beta)
        if role_offsets:
            # one table for the three role indices, each index's values one after another
            self.role_offset = nn.Parameter(torch.empty(sum(ROLE_SIZES)))  # (R,)
            self.register_buffer("role_base", torch.tensor([0, ROLE_SIZES[0], ROLE_SIZES[0] + ROLE_SIZES[1]]),
                                 persistent=False)  # (3,)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        last = self.mlp[-1]
        nn.init.zeros_(last.bias)
        with torch.no_grad():
            # u's row at zero (factor 1); under the cone rule d's row small, b at zero: the step is Adam's and b learns
            last.weight[1].zero_()
            last.weight[0].mul_(0.1 if self.rule == "cone" else 0.0)
        nn.init.constant_(self.log_lr, math.log(self.init_lr))
        if self.rule == "cone":
            nn.init.zeros_(self.additive)
        if self.role_offsets:
            nn.init.zeros_(self.role_offset)

    def forward(self, features: Tensor, segments: Segments, context: Tensor | None = None,
                progress: Tensor | None = None, roles: Tensor | None = None) -> Tensor:
        parts = [features] if context is None else [features, context]
        if self.progress:
            if progress is None:
                raise ValueError("StepOutput reads the fraction of the run done: pass progress (P,) in [0, 1]")
            parts.append(progress.to(features.dtype).expand(features.shape[0]).unsqueeze(1))  # (P, 1)
        out = self.mlp(torch.cat(parts, dim=1) if len(parts) > 1 else features)  # (P, 2): (d, u) of every entry
        adam = features[:, self.base]  # (P,)
        factor = bounded_log(out[:, 1], self.min_log_scale, self.max_log_scale).exp()  # (P,) in (e^-c-, e^c+)
        ids = segments.ids.to(adam.device)
        if self.rule == "cone":
            rms = segments.mean_square(adam.unsqueeze(0)).sqrt()[0]  # (T,): Adam's direction per tensor
            b = self.max_additive * torch.tanh(self.additive)
            direction = (adam + b * rms[ids] * torch.tanh(out[:, 0])) * factor  # (P,)
        else:
            direction = adam + out[:, 0]  # (P,)
            both = torch.stack([adam, direction])  # (2, P)
            rms = segments.mean_square(both).sqrt()  # (2, T): per tensor, Adam's and the modulated direction's
            ratio = rms[0] / (rms[1] + _EPS)  # (T,)
            direction = direction * ratio[ids] * factor  # (P,): every tensor at Adam's norm, times the factor
        log_lr = self.log_lr
        if self.role_offsets:
            if roles is None:
                raise ValueError("StepOutput has a step size per role: pass roles (P, 3) "
                                 "(nngraph.optim.roles.entry_roles)")
            log_lr = log_lr + self.role_offset[roles.to(adam.device) + self.role_base].sum(1)  # (P, 3) -> (P,)
        return -log_lr.exp() * direction  # (P,)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(features={self.num_features}, context_dim={self.context_dim}, "
                f"hidden_dim={self.hidden_dim}, init_lr={self.init_lr}, rule={self.rule!r}, "
                f"log_scale=(-{self.min_log_scale}, {self.max_log_scale}), progress={self.progress}"
                f"{', role_offsets=True' if self.role_offsets else ''})")
