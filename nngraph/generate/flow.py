"""The flow-matching generator of weights: noise -> weights along straight paths, the velocity predicted by a
denoiser on the neural graph.

Why flow matching with the equivariant encoder (Lipman et al., *Flow Matching for Generative Modeling*, ICLR
2023; Liu et al., *rectified flow*). Training regresses a velocity field on straight paths between Gaussian noise
:math:`\\mathbf{z}_0` and a zoo model's normalised weights :math:`\\mathbf{z}_1`; sampling integrates it from new
noise. It needs no noise schedule, trains with one MSE, and samples in a few dozen Euler steps. The permutation
argument: hidden neurons of a trained network can be relabelled without changing its function, so the true
distribution of weights gives every relabelling of a model the same probability. The noise is i.i.d. per weight,
so its distribution is invariant under every relabelling :math:`P`; the denoiser is equivariant,
:math:`v(P\\mathbf{z}, t, c) = P\\,v(\\mathbf{z}, t, c)`, so the flow map commutes with :math:`P` and the samples'
distribution is invariant too: every relabelling of a sample is drawn as often as the sample itself, as in the
true distribution, whatever neuron order the zoo's models happen to have. The noise also breaks the tie
between hidden neurons that an equivariant map cannot break on its own (a symmetric input stays symmetric). A
non-equivariant denoiser (the twin, ``denoiser="flat"``) must instead learn the same field separately for every
neuron order the zoo holds. An autoencoder with a latent sampler (SANE) is the other choice; its decoder has to
produce a neuron order from an invariant code, which an equivariant decoder cannot do without noise;
:class:`~nngraph.generate.LatentFlowGenerator` takes it with a frame instead (the zoo aligned by weight matching),
and is the one whose samples work on the digits zoo (:mod:`nngraph.generate.latent` says why this flow's do not).

Conditioning: time and condition are embedded once per graph and modulate every node and edge before every
layer (:class:`~nngraph.generate.layers.FiLM`); conditions are dropped with probability ``cond_drop`` in
training, so :meth:`FlowGenerator.sample` can use classifier-free guidance (``guidance`` > 1). Both denoisers
are preconditioned (:func:`~nngraph.generate.denoisers.velocity`): an untrained one samples the per-tensor
Gaussian.
"""
from __future__ import annotations

import hashlib
import os
from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from nngraph.train import FitResult, TrainConfig, fit as train_fit, seed_everything

from .base import WeightGenerator, register_generator
from .denoisers import DENOISERS, make_denoiser

__all__ = ["FlowGenerator"]


@register_generator("flow")
class FlowGenerator(WeightGenerator):
    r"""Weights by flow matching in the per-tensor normalised weight space of one architecture.

    With :math:`\mathbf{z}_0 \sim \mathcal{N}(0, I)`, a zoo model :math:`\mathbf{z}_1` (normalised per tensor),
    its condition :math:`c` and :math:`t \sim U(0, 1)`:

    .. math::
        \mathbf{z}_t = (1 - t)\,\mathbf{z}_0 + t\,\mathbf{z}_1, \qquad
        \mathcal{L} = \big\lVert v_\theta(\mathbf{z}_t, t, c) - (\mathbf{z}_1 - \mathbf{z}_0) \big\rVert^2

    Sampling integrates :math:`d\mathbf{z}/dt = v_\theta` from :math:`t = 0` to 1 with ``steps`` Euler steps
    and undoes the normalisation.

    Args:
        denoiser (str): ``"graph"``, the equivariant encoder with its node/edge head
            (:class:`~nngraph.generate.GraphDenoiser`), or ``"flat"``, the twin without equivariance
            (:class:`~nngraph.generate.FlatDenoiser`). (default: :obj:`"graph"`)
        hidden_dim (int, optional): width of the denoiser. (default: the denoiser's, 64 / 512)
        num_layers (int, optional): its layers. (default: the denoiser's, 4 / 3)
        cond_drop (float): probability of dropping a model's condition in training (for guidance and
            unconditional samples). (default: :obj:`0.1`)
    """

    def __init__(self, denoiser: str = "graph", hidden_dim: int | None = None, num_layers: int | None = None,
                 cond_drop: float = 0.1):
        super().__init__()
        if denoiser not in DENOISERS:
            raise ValueError(f"Could not resolve denoiser {denoiser!r} among choices {sorted(DENOISERS)}")
        if not 0.0 <= cond_drop < 1.0:
            raise ValueError(f"cond_drop must be in [0, 1), got {cond_drop}")
        self.denoiser_name, self.hidden_dim, self.num_layers, self.cond_drop = denoiser, hidden_dim, num_layers, cond_drop
        self.model: nn.Module | None = None

    def settings(self) -> dict:
        return {"denoiser": self.denoiser_name, "hidden_dim": self.hidden_dim, "num_layers": self.num_layers,
                "cond_drop": self.cond_drop}

    def _build(self) -> nn.Module:
        return make_denoiser(self.denoiser_name, self.space, self.condition.dim, self.hidden_dim, self.num_layers)

    # ------------------------------------------------------------ training
    def fit(self, graphs: Sequence[Data], conditions=None, *, template: nn.Module, out_dir: str,
            example_inputs: Sequence[Tensor] | Tensor | None = None, epochs: int = 100, batch_size: int = 32,
            lr: float = 1e-3, weight_decay: float = 0.0, val_fraction: float = 0.1, seed: int = 0,
            progress: bool = True, device: str = "cpu", repeats: int = 1) -> FitResult:
        """Fit the generator on ``graphs`` (all of ``template``'s architecture) with ``conditions`` ``(M,)``.

        Trains with the shared loop (:func:`nngraph.train.fit`): checkpoints in ``out_dir`` after every epoch
        (safetensors + JSON, atomic), a progress bar, and a killed fit resumes where it stopped when called
        again with the same arguments (its result is that of an uninterrupted fit). The denoiser of the epoch
        with the lowest validation loss (``val_fraction`` of the models, fixed noise) is kept, and the fitted
        generator is saved as ``out_dir/generator.pt``. ``repeats`` passes over the training models make one
        epoch (fresh noise and times each pass: more steps per checkpoint for small zoos).

        Returns:
            the loop's :class:`~nngraph.train.FitResult` (history, best epoch, seconds).
        """
        flat, values = self.prepare(graphs, conditions, template, example_inputs)
        m = flat.shape[0]
        if m < 2:
            raise ValueError(f"fit needs at least 2 graphs (one held out for validation), got {m}")
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        z = self._encode(flat, seed).to(torch.float32)  # (M, d)
        c = torch.zeros(m) if values is None else values  # (M,)
        order = torch.randperm(m, generator=torch.Generator().manual_seed(seed))
        n_val = min(max(1, round(val_fraction * m)), m - 1)
        items = [(z[i], c[i:i + 1]) for i in order.tolist()]  # (D,), (1,) each
        train_items, val_items = items[n_val:] * repeats, items[:n_val]
        seed_everything(seed)
        self.model = self._build()
        config = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                             schedule="cosine", patience=None, seed=seed, device=device, progress=progress,
                             monitor="val_loss", mode="min")
        data_sha = hashlib.sha256(flat.numpy().tobytes() + c.to(torch.float64).numpy().tobytes()).hexdigest()[:16]
        settings = {"generator": self.kind, **self.settings(), "fingerprint": self.space.fingerprint,
                    "condition": self.condition.state(), "models": m, "val_fraction": val_fraction,
                    "repeats": repeats, "data_sha256": data_sha}
        result = train_fit(self.model, train_items, val_items, self._loss, self._make_eval(seed), config, settings)
        self.model.cpu().eval()
        self.save(os.path.join(out_dir, "generator.pt"))
        return result

    def _encode(self, flat: Tensor, seed: int) -> Tensor:
        """The vectors ``(M, d)`` the flow is fitted on, from the zoo's weight vectors ``(M, D)``: here the
        per-tensor normalised weights (``d = D``); a subclass may fit more (a frame, a basis) on them."""
        return self.stats.normalize(flat)

    def _decode(self, z: Tensor) -> Tensor:
        """Weight vectors ``(B, D)`` from the flow's samples ``(B, d)``: the inverse of :meth:`_encode`."""
        return self.stats.denormalize(z)

    def _finish(self, graphs: list[Data], template, seed: int | None) -> list[Data]:
        """The sampled graphs as :meth:`sample` returns them (a subclass may relabel them)."""
        return graphs

    def _features(self, c: Tensor, drop: Tensor) -> Tensor:
        values = None if self.condition.kind == "none" else c.reshape(-1)
        return self.condition.features(values, drop)

    def _flow_loss(self, model: nn.Module, z1: Tensor, c: Tensor, t: Tensor, z0: Tensor, drop: Tensor) -> Tensor:
        t_ = t.unsqueeze(-1)  # (B, 1)
        zt = (1 - t_) * z0 + t_ * z1  # (B, D)
        v = model(zt, t, self._features(c, drop).to(z1.device))  # (B, D)
        return nn.functional.mse_loss(v, z1 - z0)

    def _loss(self, model: nn.Module, batch) -> Tensor:
        z1, c = batch  # (B, D), (B, 1)
        b = z1.shape[0]
        t = torch.rand(b, device=z1.device)
        drop = torch.rand(b) < self.cond_drop
        return self._flow_loss(model, z1, c, t, torch.randn_like(z1), drop)

    def _make_eval(self, seed: int):
        def eval_fn(model: nn.Module, loader) -> dict[str, float]:
            generator = torch.Generator().manual_seed(seed + 1)  # the same noise and times every epoch
            total, count = 0.0, 0
            for z1, c in loader:
                b = z1.shape[0]
                t = torch.rand(b, generator=generator).to(z1.device)
                z0 = torch.randn(z1.shape, generator=generator).to(z1.device)
                loss = self._flow_loss(model, z1, c, t, z0, torch.zeros(b, dtype=torch.bool))
                total, count = total + float(loss) * b, count + b
            return {"val_loss": total / count}
        return eval_fn

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, template: Data | nn.Module, n: int, condition=None, steps: int = 50, guidance: float = 1.0,
               seed: int | None = None, batch_size: int = 256) -> list[Data]:
        """``n`` graphs of the template's architecture; ``from_graph(g, module)`` makes each a module.

        Args:
            template: the architecture (a graph of it or the module); another one is a
                :class:`~nngraph.GraphMismatchError`.
            n: number of samples.
            condition: one condition for all samples or one per sample (a target accuracy, a class), ``None``
                for unconditional samples (needs ``cond_drop > 0`` for a conditional generator).
            steps: Euler steps from noise to weights.
            guidance: classifier-free guidance weight :math:`w` (1: none).
            seed: seeds the noise (``None``: torch's global generator).
            batch_size: samples per denoiser call.
        """
        self.check_template(template)
        if self.model is None:
            raise RuntimeError("the generator has no denoiser: fit it or load a fitted one")
        if steps < 1 or n < 1:
            raise ValueError(f"steps and n must be at least 1, got steps={steps}, n={n}")
        values = self.condition.values(condition, n)
        if values is None and self.condition.kind != "none" and self.cond_drop == 0:
            raise ValueError("this generator was fitted on conditions without dropping any (cond_drop=0); give a condition")
        self.model.eval()
        dtype = next(self.model.parameters()).dtype
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=generator).to(dtype)  # (n, d)
        out = []
        for s in range(0, n, batch_size):
            zb = z[s:s + batch_size]
            cb = None if values is None else values[s:s + batch_size]
            out.append(self._integrate(zb, cb, steps, guidance))
        graphs = self.space.graphs(self._decode(torch.cat(out).to(torch.float64)))
        return self._finish(graphs, template, seed)

    @property
    def latent_dim(self) -> int:
        """Width ``d`` of the vectors the flow moves (the weight space's ``D`` here)."""
        return self.space.dim

    def _integrate(self, z: Tensor, values: Tensor | None, steps: int, guidance: float) -> Tensor:
        """Euler steps of the flow from noise ``z`` ``(B, D)`` at ``t = 0`` to ``t = 1``."""
        b = z.shape[0]
        cond = self.condition.features(values, torch.zeros(b, dtype=torch.bool), z.dtype)  # (B, C)
        null = self.condition.features(None, torch.ones(b, dtype=torch.bool), z.dtype)
        guided = values is not None and guidance != 1.0
        for k in range(steps):
            t = torch.full((b,), k / steps, dtype=z.dtype)
            v = self.model(z, t, cond)  # (B, D)
            if guided:
                v_null = self.model(z, t, null)
                v = v_null + guidance * (v - v_null)
            z = z + v / steps
        return z

    # ------------------------------------------------------------ storage
    def extra_state(self) -> dict:
        if self.model is None:
            raise RuntimeError("the generator has no denoiser to save; fit it first")
        return {"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    def load_extra_state(self, state: dict) -> None:
        self.model = self._build()
        self.model.load_state_dict(state["model"])
        self.model.eval()
