r"""The weights' graph and the model's outputs on probes read by one model (:class:`ProbeGraphHybrid`)."""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nngraph.convert import probe_features
from nngraph.gnn import NeuralGraphEncoder
from nngraph.gnn.kernel import MAX_KERNEL_BOX
from nngraph.schema import NodeType

from .generator import ProbeGenerator

__all__ = ["NUM_OUTPUT_STATS", "ProbeGraphHybrid", "output_neuron_values", "output_statistics"]

#: per probe, the softmax statistics :func:`output_statistics` adds to the class probabilities
NUM_OUTPUT_STATS = 3


def output_neuron_values(batch, values: Tensor, num_outputs: int) -> Tensor:
    """The output neurons' rows of ``values``, per graph in output order (``io_position``).

    Shapes:
        - **input:** ``values`` :math:`(N, P)` in the batch's node order
        - **output:** :math:`(B, C, P)`, :math:`C` = ``num_outputs``
    """
    out = (batch.node_type == int(NodeType.OUTPUT)).nonzero().flatten()  # (B C,)
    graph = batch.batch[out] if getattr(batch, "batch", None) is not None else torch.zeros_like(out)  # (B C,)
    num_graphs = int(getattr(batch, "num_graphs", 1) or 1)
    if out.numel() != num_graphs * num_outputs:
        raise ValueError(f"{num_graphs} graph(s) with {out.numel()} output neurons in all; every graph must have "
                         f"num_outputs={num_outputs}")
    key = graph * num_outputs + batch.io_position[out]  # (B C,) the output's slot, graph-major
    if not torch.equal(torch.sort(key).values, torch.arange(len(key), device=key.device)):
        raise ValueError(f"the output neurons' io_position must be 0..{num_outputs - 1} in every graph")
    rows = torch.empty_like(out)
    rows[key] = out
    return values[rows].view(num_graphs, num_outputs, -1)  # (B C, P) -> (B, C, P)


def output_statistics(logits: Tensor) -> Tensor:
    r"""What a probing baseline reads of a classifier's outputs on :math:`P` probes: the class probabilities and,
    per probe, the confidence (largest probability), the entropy and the margin (largest minus second largest).
    Non-finite logits (a diverged model) read as uniform probabilities.

    Shapes:
        - **input:** :math:`(B, P, C)` logits
        - **output:** :math:`(B, P (C + 3))`, the probabilities first, probe-major (as ``probs.flatten(1)``)
    """
    finite = torch.isfinite(logits).all(-1, keepdim=True)  # (B, P, 1)
    probs = torch.softmax(torch.where(finite, logits, torch.zeros_like(logits)), dim=-1)  # (B, P, C)
    top = probs.topk(min(2, probs.shape[-1]), dim=-1).values  # (B, P, 2)
    margin = top[..., 0] - top[..., 1] if top.shape[-1] > 1 else top[..., 0]  # (B, P)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)  # (B, P)
    stats = torch.stack([top[..., 0], entropy, margin], dim=-1)  # (B, P, 3)
    return torch.cat([probs.flatten(1), stats.flatten(1)], dim=-1)  # (B, P C + 3 P)


@contextlib.contextmanager
def _frozen(models: Sequence[nn.Module]):
    """The models' parameters out of autograd for the block (they are data here), restored afterwards."""
    flags = [[p.requires_grad for p in m.parameters()] for m in models]
    for m in models:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m, fs in zip(models, flags):
            for p, f in zip(m.parameters(), fs):
                p.requires_grad_(f)


class _DropNonFiniteGrad(torch.autograd.Function):
    """The identity whose backward passes the gradient on only when every entry is finite, else zeros: one
    model's share of the shared probes' gradient. A near-diverged model whose activations overflow on the probes
    reads as finite values forward (``nan_to_num``, uniform outputs), but its backward multiplies the zero
    gradient of those reads by infinite slopes (``0 * inf = nan``); dropping its share keeps the others'."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return torch.where(torch.isfinite(grad).all(), grad, torch.zeros_like(grad))  # no host sync per model


def _body(widths: Sequence[int], dropout: float = 0.0) -> nn.Module:
    """``Linear -> ReLU -> Dropout`` for every pair of consecutive ``widths`` (the identity for one width)."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers) if layers else nn.Identity()


def _zero_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A linear layer that starts at zero (its output, until trained)."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ProbeGraphHybrid(nn.Module):
    r"""A property of classifiers (their test accuracy, say) from their weights' graph and their outputs on probes.

    Every model is run on :math:`P` probes, fixed or learned (a :class:`ProbeGenerator`). Every neuron's values on
    them are the graph's node features (``asinh``-squashed, as ``probe``), read by a
    :class:`~nngraph.gnn.NeuralGraphEncoder` into the pooled embedding :math:`\mathbf{g}`; the output neurons'
    values, the logits, are also read directly, with no GNN between them and the readout: their softmax
    statistics :math:`\mathbf{r}` (:func:`output_statistics`) go through the reader MLP
    :math:`\rho = \rho_{\mathrm{out}} \circ \rho_{\mathrm{body}}`. The prediction is

    .. math::
        \hat{y} = \pi + \rho_{\mathrm{out}}(\rho_{\mathrm{body}}(\mathbf{r}))
                  + \phi\big[\mathbf{g} \,\|\, \rho_{\mathrm{body}}(\mathbf{r})\big]

    with :math:`\pi` an optional prior per model (``batch.prior``, e.g. the cross-fitted prediction of gradient
    boosting on the same probe outputs, :func:`~nngraph.probing.cross_fit`) and :math:`\phi` a joint MLP.
    The last layers of :math:`\rho` and :math:`\phi` start at zero, so the untrained model *is* the prior, and
    with :math:`\phi = 0` it is a probing model (an MLP on the probe outputs, ProbeGen when learned, added to
    the prior): it contains the probing models it competes with and adds what the weights' graph explains.
    The same probes feed the graph and the readout. Invariant to relabelling the probed models' hidden neurons
    (the graph branch is, and the outputs do not move).

    Ablations: ``graph=False`` (no GNN), ``node_probes=False`` (the GNN reads the weights only),
    ``readout_probes=False`` (no direct reading of the outputs), ``learned=False`` (fixed probes).

    Args:
        probes: the probes' starting inputs, ``(P, *in_shape)``.
        num_outputs: :math:`C`, the classifiers' number of outputs.
        out_dim: predicted values per model. (default: ``1``)
        hidden_dim, num_layers, dropout, max_kernel_box: of the encoder (defaults ``32``, ``3``, ``0.0``,
            ``(3, 7, 7)``).
        graph: read the weights' graph. (default: ``True``)
        node_probes: give the encoder every neuron's values on the probes. (default: ``True``)
        readout_probes: read the output neurons' values directly. (default: ``True``)
        learned: train the probes through a :class:`ProbeGenerator`; else they stay ``probes``.
            (default: ``True``)
        generator: keyword arguments of the :class:`ProbeGenerator`. (default: its own)
        reader_hidden: hidden widths of :math:`\rho` (default: ``(64, 64)``)
        scaler: a module applied to the batch before the encoder (weight scaling), or ``None``.

    Shapes:
        - **input:** a batch of :math:`B` graphs (``to_graph`` of the models), the :math:`B` models themselves
          (or, with fixed probes, ``batch.probe`` :math:`(N, P)` holding the raw neuron values,
          :func:`nngraph.probe_features`), optionally ``batch.prior`` :math:`(B, out\_dim)`
        - **output:** :math:`(B, out\_dim)`
    """

    def __init__(self, probes: Tensor, num_outputs: int, out_dim: int = 1, hidden_dim: int = 32, num_layers: int = 3,
                 dropout: float = 0.0, max_kernel_box: Sequence[int] = MAX_KERNEL_BOX, graph: bool = True,
                 node_probes: bool = True, readout_probes: bool = True, learned: bool = True,
                 generator: dict | None = None, reader_hidden: Sequence[int] = (64, 64),
                 scaler: nn.Module | None = None):
        super().__init__()
        if not (graph or readout_probes):
            raise ValueError("the hybrid needs graph=True or readout_probes=True: it would read nothing")
        self.num_outputs, self.out_dim = num_outputs, out_dim
        self.num_probes = probes.shape[0]
        self.graph, self.node_probes, self.readout_probes, self.learned = graph, node_probes, readout_probes, learned
        self.uses_probes = readout_probes or (graph and node_probes)
        if learned and self.uses_probes:
            self.probe_generator = ProbeGenerator(probes, **(generator or {}))
        else:
            self.register_buffer("fixed_probes", probes.detach().clone().to(torch.get_default_dtype()))
        self.scaler = scaler
        parts = 0
        if graph:
            self.encoder = NeuralGraphEncoder(hidden_dim, hidden_dim=hidden_dim, num_layers=num_layers,
                                              probe_dim=self.num_probes if node_probes else 0, dropout=dropout,
                                              max_kernel_box=max_kernel_box)
            parts += hidden_dim
        if readout_probes:
            widths = [self.num_probes * (num_outputs + NUM_OUTPUT_STATS), *reader_hidden]
            self.reader_body = _body(widths, dropout)  # (B, P (C + 3)) -> (B, R)
            self.reader_out = _zero_linear(widths[-1], out_dim)
            parts += widths[-1]
        self.joint = nn.Sequential(_body([parts, hidden_dim], dropout), _zero_linear(hidden_dim, out_dim))

    def current_probes(self) -> Tensor:
        """``(P, *in_shape)``: the probes as they stand."""
        return self.probe_generator() if hasattr(self, "probe_generator") else self.fixed_probes

    def neuron_values(self, batch, models: Sequence[nn.Module] | None) -> Tensor:
        """``(N, P)``: every neuron's raw value on the probes, in the batch's node order (from ``models``,
        differentiable in the probes; or ``batch.probe`` when no models are given and the probes are fixed)."""
        if models is None:
            if self.learned:
                raise ValueError("learned probes are run through the models: call hybrid(batch, models)")
            if getattr(batch, "probe", None) is None:
                raise ValueError("give the models, or batch.probe (N, P) from nngraph.probe_features")
            return batch.probe
        if len(models) != int(getattr(batch, "num_graphs", 1) or 1):
            raise ValueError(f"{len(models)} models for a batch of {int(getattr(batch, 'num_graphs', 1) or 1)} graphs")
        probes = self.current_probes()  # (P, *in_shape)
        with _frozen(models):
            grad = self.learned and torch.is_grad_enabled()  # not under torch.no_grad (prediction)
            share = _DropNonFiniteGrad.apply if grad else (lambda p: p)  # noqa: E731 (each model's gradient share)
            rows = [probe_features(m, share(probes).to(next(m.parameters()).dtype), grad=grad).to(probes.dtype)
                    for m in models]  # B x (N_b, P)
        values = torch.cat(rows)  # (N, P)
        if values.shape[0] != batch.x.shape[0]:
            raise ValueError(f"the models have {values.shape[0]} neurons in all but the batch {batch.x.shape[0]} "
                             "nodes: give the models of the batch's graphs, in its order")
        return values

    def forward(self, batch, models: Sequence[nn.Module] | None = None) -> Tensor:
        return self.read(batch, self.neuron_values(batch, models) if self.uses_probes else None)  # (B, out_dim)

    def read(self, batch, values: Tensor | None) -> Tensor:
        """The prediction from the neurons' raw values on the probes ``(N, P)`` (:meth:`neuron_values`; ``None``
        without probes): ``(B, out_dim)``."""
        parts, out = [], 0.0
        if self.graph:
            graphs = copy.copy(self.scaler(batch) if self.scaler is not None else batch)  # shallow: batch kept
            graphs.probe = None
            if self.node_probes:  # asinh: a near-diverged model's activations reach 1e6 and more
                squashed = torch.asinh(torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0))  # (N, P)
                graphs.probe = squashed.to(graphs.x.dtype)
            parts.append(self.encoder(graphs))  # (B, H)
        if self.readout_probes:
            logits = output_neuron_values(batch, values, self.num_outputs).transpose(1, 2)  # (B, C, P) -> (B, P, C)
            hidden = self.reader_body(output_statistics(logits))  # (B, P (C + 3)) -> (B, R)
            parts.append(hidden)
            out = self.reader_out(hidden)  # (B, out_dim)
        out = out + self.joint(torch.cat(parts, dim=-1))  # (B, out_dim)
        prior = getattr(batch, "prior", None)
        if prior is not None:
            out = out + prior.view(-1, self.out_dim).to(out.dtype)  # (B, out_dim)
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(probes={self.num_probes}, outputs={self.num_outputs}, graph={self.graph}, "
                f"node_probes={self.node_probes}, readout_probes={self.readout_probes}, learned={self.learned})")
