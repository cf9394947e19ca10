"""ProbeGen: a model described by its outputs on learned probes, the outputs read by an MLP."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from .generator import ProbeGenerator

__all__ = ["OUTPUTS", "ProbeGen", "model_outputs"]

#: how a probed model's outputs are read: class probabilities (a diverged model's NaNs read as uniform) or the
#: raw outputs (non-finite entries read as 0)
OUTPUTS = ("softmax", "raw")


def model_outputs(model: nn.Module, inputs: torch.Tensor, output: str = "softmax") -> torch.Tensor:
    """``model``'s outputs on ``inputs``, in eval mode, differentiable in ``inputs`` only.

    The model's parameters are read detached (no gradient reaches them, nothing accumulates in their
    ``.grad``) and its train / eval mode is restored afterwards. ``inputs`` are cast to the model's
    parameter dtype, the outputs back to ``inputs``' dtype. A model whose outputs are not all finite is
    run again on detached inputs, so that it passes no NaN gradient to the probes.

    Args:
        model: a model mapping ``(P, *in_shape)`` to ``(P, C)``.
        inputs: ``(P, *in_shape)``.
        output: one of :data:`OUTPUTS` (default: ``"softmax"``).

    Shapes:
        - **output:** :math:`(P, C)`
    """
    if output not in OUTPUTS:
        raise ValueError(f"Could not resolve output {output!r} among choices {list(OUTPUTS)}")
    params = {k: v.detach() for k, v in model.named_parameters()}
    dtype = next(iter(params.values())).dtype if params else inputs.dtype
    was_training = model.training
    model.eval()
    try:
        out = functional_call(model, params, (inputs.to(dtype),))  # (P, C)
        if not torch.isfinite(out).all():
            out = functional_call(model, params, (inputs.detach().to(dtype),))  # (P, C), no gradient to the probes
    finally:
        model.train(was_training)
    if out.dim() != 2:
        raise ValueError(f"a probed model must map (P, ...) inputs to (P, C) outputs; got {tuple(out.shape)}")
    out = out.to(inputs.dtype)
    if output == "softmax":
        return torch.nan_to_num(torch.softmax(out, dim=-1), nan=1.0 / out.shape[-1])  # (P, C)
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)  # (P, C)


class ProbeGen(nn.Module):
    r"""ProbeGen: a property of a model (its test accuracy, say) predicted from the model's outputs on
    learned probes.

    From `Deep Linear Probe Generators for Weight Space Learning <https://arxiv.org/abs/2410.10811>`_
    (Kahana et al., ICLR 2025). The :math:`P` probes come from a :class:`ProbeGenerator` (learned latent codes
    through a shared deep linear generator); every probed model :math:`f` is run on them and its outputs,
    concatenated, are read by an MLP :math:`\rho`; generator and reader train end to end:

    .. math::
        \hat{y}(f) = \mu + \sigma \, \rho\big(\mathrm{vec}[\,o(f(x_1)), \dots, o(f(x_P))\,]\big),
        \qquad x_k = s_k + G(z_k)

    with :math:`o` the softmax (or the identity) and :math:`\mu, \sigma` the training targets' mean and spread
    (buffers, set by :func:`~nngraph.probing.fit_probegen`). It sees only the models' outputs, so it is
    invariant to every symmetry of their weights, and reads models of any architecture with the same input
    and output shapes. One prediction costs :math:`P` forward passes of the probed model (and the reader's).

    Args:
        start: the probes' starting inputs, ``(P, *in_shape)`` (fixed probe images, or zeros).
        num_outputs: :math:`C`, the probed models' output width.
        out_dim: number of predicted values (default: ``1``).
        latent_dim, generator_hidden, depth: the generator's (:class:`ProbeGenerator`; defaults ``16``,
            ``64``, ``3``).
        hidden: the reader's hidden widths (default: ``(64, 64)``).
        dropout: after each hidden layer of the reader (default: ``0.0``).
        output: how the outputs are read, one of :data:`OUTPUTS` (default: ``"softmax"``).

    Shapes:
        - **input:** a sequence of :math:`B` models, each mapping :math:`(P, *in\_shape)` to :math:`(P, C)`
        - **output:** :math:`(B, out\_dim)`
    """

    def __init__(self, start: torch.Tensor, num_outputs: int, out_dim: int = 1, latent_dim: int = 16,
                 generator_hidden: int = 64, depth: int = 3, hidden: Sequence[int] = (64, 64),
                 dropout: float = 0.0, output: str = "softmax"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"Could not resolve output {output!r} among choices {list(OUTPUTS)}")
        self.output = output
        self.num_outputs = num_outputs
        self.generator = ProbeGenerator(start, latent_dim, generator_hidden, depth)
        layers, width = [], start.shape[0] * num_outputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.reader = nn.Sequential(*layers)
        self.register_buffer("target_mean", torch.zeros(out_dim))
        self.register_buffer("target_std", torch.ones(out_dim))

    def responses(self, models: Sequence[nn.Module], probes: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, P, C)``: every model's outputs on the probes (``probes`` default: the generator's)."""
        probes = self.generator() if probes is None else probes  # (P, *in_shape)
        out = torch.stack([model_outputs(m, probes, self.output) for m in models])  # (B, P, C)
        if out.shape[-1] != self.num_outputs:
            raise ValueError(f"ProbeGen was built for models of {self.num_outputs} outputs; these have {out.shape[-1]}")
        return out

    def read(self, responses: torch.Tensor) -> torch.Tensor:
        """``(B, P, C)`` responses to ``(B, out_dim)`` predictions in the targets' units."""
        return self.target_mean + self.target_std * self.reader(responses.flatten(1))  # (B, P * C) -> (B, out_dim)

    def forward(self, models: Sequence[nn.Module]) -> torch.Tensor:
        return self.read(self.responses(models))  # (B, out_dim)

    @torch.no_grad()
    def predict(self, models: Sequence[nn.Module], batch_size: int = 64) -> torch.Tensor:
        """``(M, out_dim)``: predictions for ``models`` in eval mode (the probes generated once)."""
        was_training = self.training
        self.eval()
        try:
            probes = self.generator()  # (P, *in_shape)
            out = [self.read(self.responses(models[s:s + batch_size], probes))  # (b, out_dim)
                   for s in range(0, len(models), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(probes={self.generator.num_probes}, outputs={self.num_outputs}, "
                f"output={self.output!r}, reader={[m.out_features for m in self.reader if isinstance(m, nn.Linear)]})")
