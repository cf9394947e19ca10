r"""Flow matching in a low-rank code of the zoo's weights after aligning its models: the latent generator.

Why (``tasks.generation`` measures it, docs/tasks/generation.md): the flow on the full graph
(:class:`~nngraph.generate.FlowGenerator`) completes a zoo model noised to :math:`t \ge 0.9` into a working one, but
from :math:`t \le 0.5` it lands near chance. Between those times the best estimate of the clean weights is a
mixture over the zoo's models *each under its best relabelling*, which is weight matching, a combinatorial search
that a few message-passing layers do not learn from a few hundred models; and a flow on all :math:`D` entries
leaves noise in the directions the zoo never varies in, which breaks the classifier. Here both are taken out of
the learning problem, as p-diff and SANE do with an autoencoder:

1. **canonical frame** (Ainsworth et al., *Git Re-Basin*): every model is relabelled to a reference by weight
   matching (:func:`nngraph.symmetry.align_graph`), twice: to the first model, then to the mean of the aligned
   models;
2. **code**: the aligned, per-tensor normalised weights are projected on their ``rank`` first principal
   directions (a linear autoencoder), divided by one scale (the codes keep the zoo's spectrum: the flow's
   unit noise then weighs the directions the zoo varies most in most; whitening each direction gave samples
   that follow the condition less, ``whiten=True``);
3. **flow** on the codes with the non-equivariant MLP (:class:`~nngraph.generate.FlatDenoiser`), conditioned
   like the other flows;
4. **relabelling**: every sample is relabelled by a random symmetry of the architecture, so the samples'
   distribution is invariant to relabelling hidden neurons (canonicalise, generate, relabel: the invariance of
   the equivariant flow, by a frame instead of by the denoiser).

The decoder is linear, so it only produces models in the span of the zoo's aligned directions; with
``rank`` near the number of models the flow can memorise them (``tasks.generation`` counts copies).

The frame a fit computes (mean, basis, scales and the training models' codes) is kept beside its checkpoints
(:data:`FRAME_FILE`) and read back when the fit is run again on the same zoo with the same settings (a resumed
or finished run): the flow then decodes in the frame it was trained in. Aligning again would not be safe: weight
matching is a local search, and another version of it (or another float summation order) can settle some model
in another frame, which silently pairs a flow trained on one set of codes with another basis.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from nngraph.convert import build_layout

from .base import register_generator
from .denoisers import FlatDenoiser
from .flow import FlowGenerator

__all__ = ["LatentFlowGenerator", "align_zoo"]

#: the file, in a fit's ``out_dir``, of the frame of one zoo and settings (``{}``: a hash of both)
FRAME_FILE = "frame-{}.safetensors"


def align_zoo(space, graphs: Sequence[Data], layout, rounds: int = 2) -> Tensor:
    """The weight vectors ``(M, D)`` (float64) of ``graphs`` after weight matching: round 1 aligns every graph to
    the first, each further round to the mean of the previous round's aligned vectors."""
    from nngraph.symmetry import align_graph

    reference = graphs[0]
    flat = space.flatten(graphs).to(torch.float64)  # (M, D)
    for _ in range(rounds):
        aligned = [align_graph(g, reference, layout)[0] for g in graphs]
        flat = space.flatten(aligned).to(torch.float64)  # (M, D)
        reference = space.graphs(flat.mean(0, keepdim=True))[0]
    return flat


@register_generator("latent")
class LatentFlowGenerator(FlowGenerator):
    r"""Flow matching on whitened principal-component codes of the zoo's aligned, normalised weights.

    With :math:`\mathbf{z}` a model's weights aligned to the zoo's frame and normalised per tensor, its code is
    :math:`\mathbf{u} = S^{-1} V (\mathbf{z} - \bar{\mathbf{z}})` (:math:`V` the ``rank`` first principal
    directions over the zoo, :math:`S` the codes' overall standard deviation, or each direction's with
    ``whiten``); the flow of :class:`FlowGenerator` is fitted on
    the codes with a :class:`~nngraph.generate.FlatDenoiser`, and a sample decodes to
    :math:`\bar{\mathbf{z}} + V^\top S\,\mathbf{u}`, denormalised and relabelled by a random symmetry
    (module docstring).

    Args:
        rank (int): principal directions kept (at most the number of models minus one). (default: :obj:`32`)
        hidden_dim (int): width of the MLP. (default: :obj:`256`)
        num_layers (int): its hidden layers. (default: :obj:`3`)
        cond_drop (float): probability of dropping a model's condition in training. (default: :obj:`0.1`)
        relabel (bool): relabel every sample by a random symmetry. (default: :obj:`True`)
        whiten (bool): scale every direction of the code to unit variance instead of all by one scale.
            (default: :obj:`False`)
        align (bool): align the zoo by weight matching before fitting the basis; ``False`` with
            ``relabel=False`` is the twin without the frame, on the neuron order the models were trained with.
            (default: :obj:`True`)

    Shapes:
        - codes :math:`(M, r)`; basis :math:`(r, D)`; mean :math:`(D,)`; scales :math:`(r,)`
    """

    def __init__(self, rank: int = 32, hidden_dim: int | None = 256, num_layers: int | None = 3,
                 cond_drop: float = 0.1, relabel: bool = True, whiten: bool = False, denoiser: str = "flat",
                 align: bool = True):
        if denoiser != "flat":
            raise ValueError(f"the latent generator's denoiser is the flat MLP on codes, got denoiser={denoiser!r}")
        super().__init__("flat", hidden_dim, num_layers, cond_drop)
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        self.rank, self.relabel, self.whiten, self.align = int(rank), bool(relabel), bool(whiten), bool(align)
        self.mean: Tensor | None = None  # (D,)
        self.basis: Tensor | None = None  # (r, D)
        self.scales: Tensor | None = None  # (r,)
        self._layout = None
        self._code_noise: tuple[float, int | None] = (0.0, None)  # (std, seed) while sample() runs

    def settings(self) -> dict:
        return {**super().settings(), "rank": self.rank, "relabel": self.relabel, "whiten": self.whiten,
                "align": self.align}

    def fit(self, graphs: Sequence[Data], conditions=None, *, template: nn.Module, out_dir: str,
            example_inputs: Sequence[Tensor] | Tensor | None = None, **options):
        """Align ``graphs``, fit the basis on them, then fit the flow on their codes (the options of
        :meth:`FlowGenerator.fit`; resumable)."""
        inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else example_inputs
        self._layout = build_layout(template, inputs)
        self._graphs, self._out_dir = list(graphs), out_dir
        try:
            return super().fit(self._graphs, conditions, template=template, out_dir=out_dir,
                               example_inputs=example_inputs, **options)
        finally:
            del self._graphs, self._out_dir

    def _encode(self, flat: Tensor, seed: int) -> Tensor:
        path = self._frame_path(flat)
        if os.path.exists(path):  # this zoo's frame, fitted before: the flow in out_dir was trained on its codes
            from safetensors.torch import load_file

            stored = load_file(path)
            self.mean, self.basis, self.scales = stored["mean"], stored["basis"], stored["scales"]
            return stored["codes"]
        frame = align_zoo(self.space, self._graphs, self._layout) if self.align else flat.to(torch.float64)  # (M, D)
        z = self.stats.normalize(frame)  # (M, D)
        rank = min(self.rank, z.shape[0] - 1)
        self.mean = z.mean(0)  # (D,)
        _, _, vh = torch.linalg.svd(z - self.mean, full_matrices=False)  # vh (min(M, D), D)
        self.basis = vh[:rank].contiguous()  # (r, D)
        codes = (z - self.mean) @ self.basis.t()  # (M, r)
        scales = codes.std(0) if self.whiten else codes.std().expand(rank)  # (r,)
        self.scales = scales.clamp_min(1e-8).contiguous()
        codes = (codes / self.scales).contiguous()  # (M, r)
        self._write_frame(path, codes)
        return codes

    def _frame_path(self, flat: Tensor) -> str:
        """``out_dir/frame-<hash>.safetensors``: the hash of the zoo's weights ``flat`` ``(M, D)`` and the settings
        that shape the frame."""
        key = json.dumps({"rank": self.rank, "align": self.align, "whiten": self.whiten}, sort_keys=True)
        digest = hashlib.sha256(flat.to(torch.float64).contiguous().numpy().tobytes() + key.encode()).hexdigest()
        return os.path.join(self._out_dir, FRAME_FILE.format(digest[:16]))

    def _write_frame(self, path: str, codes: Tensor) -> None:
        from safetensors.torch import save_file

        from nngraph.io import atomic_path

        with atomic_path(path) as tmp:
            save_file({"mean": self.mean.contiguous(), "basis": self.basis, "scales": self.scales, "codes": codes},
                      tmp)

    def _decode(self, u: Tensor) -> Tensor:
        std, seed = self._code_noise
        if std > 0:  # code noise of sample(): Gaussian in code units, its own stream of the sample's seed
            generator = None if seed is None else torch.Generator().manual_seed(seed + 2)
            u = u + std * torch.randn(u.shape, generator=generator, dtype=u.dtype)  # (B, r)
        z = (u * self.scales.to(u)) @ self.basis.to(u) + self.mean.to(u)  # (B, r) -> (B, D)
        return self.stats.denormalize(z)

    def sample(self, template: Data | nn.Module, n: int, condition=None, steps: int = 50, guidance: float = 1.0,
               seed: int | None = None, batch_size: int = 256, code_noise: float = 0.0) -> list[Data]:
        """:meth:`FlowGenerator.sample`, with ``code_noise``: the standard deviation of Gaussian noise added to
        every sampled code before decoding (in code units, where the zoo's codes have standard deviation 1
        overall). It moves samples away from the zoo's models they were drawn near (fewer copies), at a cost
        in accuracy (``tasks.generation`` measures both)."""
        if not code_noise >= 0:
            raise ValueError(f"code_noise must be a standard deviation >= 0, got {code_noise}")
        self._code_noise = (float(code_noise), seed)
        try:
            return super().sample(template, n, condition, steps=steps, guidance=guidance, seed=seed,
                                  batch_size=batch_size)
        finally:
            self._code_noise = (0.0, None)

    def encode(self, graphs: Sequence[Data], template: nn.Module | None = None) -> Tensor:
        """``(B, r)``: the codes of ``graphs`` (of the fitted architecture, in any neuron order) in the generator's
        frame: every graph aligned by weight matching to the frame's reference (the decoded mean), normalised and
        projected on the basis, in the units the flow samples in (the inverse of the decoding for graphs in the
        basis' span). ``template`` (the module) is needed only on a loaded generator. With one hidden layer weight
        matching is an exact assignment and the code does not depend on the graph's neuron order; with more, its
        coordinate descent may end in another local optimum for another order."""
        from nngraph.symmetry import align_graph

        layout = self._frame_layout(template)
        reference = self.space.graphs(self.stats.denormalize(self.mean.unsqueeze(0)))[0]
        graphs = list(graphs)
        for i, g in enumerate(graphs):
            self.space.check(g, what=f"graphs[{i}]")
        if self.align:
            graphs = [align_graph(g, reference, layout)[0] for g in graphs]
        z = self.stats.normalize(self.space.flatten(graphs).to(torch.float64))  # (B, D)
        return (z - self.mean) @ self.basis.t() / self.scales  # (B, r)

    def project(self, graphs: Sequence[Data], template: nn.Module | None = None) -> list[Data]:
        """``graphs`` through the code: :meth:`encode`, then decoded (in the frame, not relabelled). What the
        generator's rank can represent of a model: the distance to the (aligned) original is what the code loses."""
        return self.space.graphs(self._decode(self.encode(graphs, template)))

    def _frame_layout(self, template):
        if self._layout is None:
            if not isinstance(template, nn.Module):
                raise ValueError("relabelling samples or aligning graphs to the generator's frame needs the "
                                 "architecture: pass the module as template (or sample with relabel=False)")
            self._layout = build_layout(template)
        return self._layout

    @property
    def latent_dim(self) -> int:
        return int(self.basis.shape[0])

    def _build(self) -> nn.Module:
        sizes = {k: v for k, v in (("hidden_dim", self.hidden_dim), ("num_layers", self.num_layers)) if v is not None}
        return FlatDenoiser(self.latent_dim, self.condition.dim, **sizes)

    def _finish(self, graphs: list[Data], template, seed: int | None) -> list[Data]:
        if not self.relabel:
            return graphs
        layout = self._frame_layout(template)
        generator = None if seed is None else torch.Generator().manual_seed(seed + 1)
        return [layout.permute_graph(g, layout.random_node_permutation(generator)) for g in graphs]

    def extra_state(self) -> dict:
        return {**super().extra_state(), "mean": self.mean, "basis": self.basis, "scales": self.scales}

    def load_extra_state(self, state: dict) -> None:
        self.mean, self.basis, self.scales = state["mean"], state["basis"], state["scales"]
        super().load_extra_state(state)
