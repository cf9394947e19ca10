"""Fitting many SIRENs at once: stacked weights, batched matmuls, per-INR early stopping.

The ``B`` SIRENs of a batch share an architecture (a ``siren`` spec, see :mod:`nngraph.zoo.specs`)
and the coordinate grid, not their weights. Layer ``l`` is stored stacked as ``W_l: (B, out, in)``
and ``b_l: (B, out)``, the layout of ``nn.Linear``, so model ``k``'s state dict is
``{"<2l>.weight": W_l[k], "<2l>.bias": b_l[k]}`` (the keys of ``build_model(spec)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["INIT_SCHEMES", "init_siren", "init_sirens", "siren_forward", "fit_sirens", "SirenFit", "siren_state_dict", "psnr"]


INIT_SCHEMES = ("siren", "dwsnets")


def init_siren(spec: dict, generator: torch.Generator, scheme: str = "siren") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One SIREN's ``(weight, bias)`` per layer.

    ``scheme="siren"`` (the standard SIREN initialisation): first layer ``U(-1/in, 1/in)``, later layers
    ``U(-sqrt(6/in)/w0, sqrt(6/in)/w0)``; biases as ``nn.Linear``: ``U(-1/sqrt(in), 1/sqrt(in))``. With
    ``w0 = 30`` the first layer is a bank of random frequencies up to ``w0 / in`` that fitting barely moves.

    ``scheme="dwsnets"`` (the INRs of the DWSNets / neural-graphs MNIST datasets, ``nn/inr.py`` of
    AvivNavon/DWSNets): every sine layer, the first included, ``U(-sqrt(6/in)/w0, sqrt(6/in)/w0)`` with zero
    biases (low frequencies at init: fitting has to move the first layer); the linear output layer as
    ``nn.Linear``: weight and bias ``U(-1/sqrt(in), 1/sqrt(in))``. (DWSNets also adds 0.5 to the output;
    here the output bias has to learn that offset.)
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"Could not resolve init scheme {scheme!r} among choices {list(INIT_SCHEMES)}")
    widths = [spec["in_features"], *spec["hidden"], spec["out_features"]]
    last = len(widths) - 2
    layers = []
    for l, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        if scheme == "siren":
            bound = 1.0 / a if l == 0 else math.sqrt(6.0 / a) / spec["w0"]
        else:
            bound = 1.0 / math.sqrt(a) if l == last else math.sqrt(6.0 / a) / spec["w0"]
        w = (torch.rand(b, a, generator=generator) * 2 - 1) * bound  # (out, in)
        bias = (torch.rand(b, generator=generator) * 2 - 1) / math.sqrt(a)  # (out,)
        if scheme == "dwsnets" and l != last:
            bias = torch.zeros_like(bias)
        layers.append((w, bias))
    return layers


def init_sirens(spec: dict, generators: list[torch.Generator], scheme: str = "siren") -> list[torch.Tensor]:
    """Stacked parameters ``[W_0, b_0, W_1, b_1, ...]`` of ``B = len(generators)`` SIRENs
    (:func:`init_siren` with ``scheme``).

    Shapes:
        - **W_l:** :math:`(B, out_l, in_l)`; **b_l:** :math:`(B, out_l)`
    """
    per_model = [init_siren(spec, g, scheme) for g in generators]
    flat = []
    for l in range(len(per_model[0])):
        flat.append(torch.stack([m[l][0] for m in per_model]))  # (B, out, in)
        flat.append(torch.stack([m[l][1] for m in per_model]))  # (B, out)
    return flat


def siren_forward(params: list[torch.Tensor], coords: torch.Tensor, w0: float) -> torch.Tensor:
    """Evaluate ``B`` stacked SIRENs on shared coordinates.

    Shapes:
        - **coords:** :math:`(P, D_{in})`
        - **output:** :math:`(B, P, D_{out})`
    """
    B = params[0].shape[0]
    h = coords.unsqueeze(0).expand(B, -1, -1)  # (B, P, D_in)
    n_layers = len(params) // 2
    for l in range(n_layers):
        w, b = params[2 * l], params[2 * l + 1]
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # (B, P, out_l)
        if l < n_layers - 1:
            h = torch.sin(w0 * h)
    return h


def psnr(mse: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for signals in ``[0, peak]``."""
    return 10.0 * torch.log10(peak**2 / mse.clamp_min(1e-20))


@dataclass
class SirenFit:
    """The result of :func:`fit_sirens`.

    Attributes:
        params: stacked parameters, as :func:`init_sirens`.
        psnr: ``(B,)`` PSNR (dB) of each SIREN's stored weights.
        steps: ``(B,)`` Adam steps each SIREN took before reaching the target (or ``max_steps``).
    """

    params: list[torch.Tensor]
    psnr: torch.Tensor
    steps: torch.Tensor


def fit_sirens(
    spec: dict,
    coords: torch.Tensor,
    targets: torch.Tensor,
    generators: list[torch.Generator],
    target_psnr: float = 40.0,
    max_steps: int = 500,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    init: str = "siren",
) -> SirenFit:
    """Fit ``B`` SIRENs (one per target) with Adam; each stops as soon as it reaches ``target_psnr``.

    A SIREN that reaches the target keeps exactly the weights it was evaluated with and leaves the
    batch (the batch shrinks as SIRENs finish), so the stored PSNR is the PSNR of the stored weights.

    Args:
        spec: a ``siren`` spec.
        coords: ``(P, D_in)`` shared input coordinates.
        targets: ``(B, P, D_out)`` values in [0, 1].
        generators: one seeded generator per SIREN (its initialisation).
        init: the initialisation scheme (:func:`init_siren`).

    Returns:
        A :class:`SirenFit`.
    """
    device = targets.device
    params = [p.to(device) for p in init_sirens(spec, generators, init)]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    B = targets.shape[0]
    final_psnr = torch.zeros(B)
    steps = torch.zeros(B, dtype=torch.long)
    active = torch.arange(B, device=device)
    coords = coords.to(device)
    b1, b2 = betas
    for step in range(max_steps + 1):
        sub = [p[active].requires_grad_(True) for p in params]
        pred = siren_forward(sub, coords, spec["w0"])  # (Ba, P, D_out)
        mse = (pred - targets[active]).pow(2).mean(dim=(1, 2))  # (Ba,)
        quality = psnr(mse.detach())
        finished = (quality >= target_psnr) | (step == max_steps)
        done_idx = active[finished]
        final_psnr[done_idx.cpu()] = quality[finished].cpu()
        steps[done_idx.cpu()] = step
        keep = ~finished
        if not bool(keep.any()):
            break
        grads = torch.autograd.grad(mse[keep].sum(), sub)
        rows = active[keep]
        t = step + 1
        for p, s, g, mm, vv in zip(params, sub, grads, m, v):
            g = g[keep]
            mk = mm[rows].mul_(b1).add_(g, alpha=1 - b1)
            vk = vv[rows].mul_(b2).addcmul_(g, g, value=1 - b2)
            mm[rows], vv[rows] = mk, vk
            step_size = lr / (1 - b1**t)
            denom = (vk / (1 - b2**t)).sqrt_().add_(eps)
            p[rows] = s.detach()[keep] - step_size * mk / denom
        active = rows
    return SirenFit(params=[p.detach() for p in params], psnr=final_psnr, steps=steps)


def siren_state_dict(params: list[torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """The state dict (``build_model(spec)`` keys) of SIREN ``k`` of a stacked batch."""
    out = {}
    for l in range(len(params) // 2):
        out[f"{2 * l}.weight"] = params[2 * l][k].clone()
        out[f"{2 * l}.bias"] = params[2 * l + 1][k].clone()
    return out
