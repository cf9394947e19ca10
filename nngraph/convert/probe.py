"""Probe features: every neuron's activation on a few fixed inputs, as a node feature."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import fx, nn

from .api import build_layout
from .errors import UnsupportedError
from .layout import Layout
from .module_info import parameter_dtype


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, wanted: set[str]):
        super().__init__(gm)
        self.wanted = wanted
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.wanted:
            self.values[n.name] = out
        return out


def probe_features(
    module: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    layout: Layout | None = None,
    grad: bool = False,
) -> torch.Tensor:
    r"""Each neuron's value on ``P`` probe inputs, as node features of ``to_graph(module)``.

    Runs ``inputs`` through ``module`` and reads, for every node of the graph, the last value its
    neuron takes in the forward pass (after its activation, where one is recorded on it), averaged
    over positions (pixels, tokens) — so relabelling hidden neurons of the model permutes the rows
    exactly like the graph's nodes. Nodes that are not neurons of an activation (attention heads,
    norm groups, queries and keys) get zeros. This is the one place where the source model is needed
    rather than its graph: store the result as ``graph.probe`` and build the encoder with
    ``probe_dim=P``.

    Args:
        module: the model the graph is built from (fx-traceable: not a torch.export fallback).
        inputs: a batch of ``P`` probe inputs along dimension 0 (a tuple for several model inputs).
        layout: the model's layout, if already built.
        grad: keep the autograd graph, so the features are differentiable in ``inputs`` (learned probes; the
            module's parameters that require grad get gradients too: freeze them if they are data).
            (default: ``False``)

    Shapes:
        - **output:** :math:`(N, P)`
    """
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    layout = layout if layout is not None else build_layout(module, inputs)
    if layout.fx_graph is None:
        raise UnsupportedError("probe features need a model torch.fx can trace; this one was converted through torch.export")
    gm = fx.GraphModule(module, layout.fx_graph)
    recorder = _Recorder(gm, set(layout.value_nodes))
    was_training = module.training
    module.eval()
    try:
        with torch.set_grad_enabled(grad):
            recorder.run(*inputs)
    finally:
        module.train(was_training)
    num_probes = inputs[0].shape[0]
    probe = torch.zeros(layout.num_nodes, num_probes, dtype=parameter_dtype(module),
                        device=inputs[0].device)  # (N, P)
    for name, (nodes, axis, spatial, head_axis) in layout.value_nodes.items():  # graph order: later values win
        value = recorder.values.get(name)
        if not isinstance(value, torch.Tensor):
            continue
        probe[nodes] = neuron_values(value.unsqueeze(0), num_probes, nodes, axis, spatial, head_axis)[0].t().to(probe.dtype)
    return probe


def neuron_values(value: torch.Tensor, num_probes: int, nodes: torch.Tensor, axis: int, spatial,
                  head_axis: int) -> torch.Tensor:
    """``(B, P, C)``: the value of each of the ``C`` neurons ``nodes`` on each of ``P`` probes, averaged over
    positions.

    ``value`` is one traced value for ``B`` models stacked on a leading axis; ``axis``, ``spatial`` and
    ``head_axis`` are the layout's record of where its neurons are in a single model's value
    (:attr:`Layout.value_nodes`).
    """
    b = value.shape[0]
    try:
        if head_axis >= 0:  # neurons split into groups (attention heads, a recurrent h_n's layers): merge them
            value = value.movedim((head_axis + 1, axis + 1), (-2, -1)).flatten(-2)  # (B, ..., H * D), nodes' order
            axis = value.dim() - 2
        if spatial:  # a flattened (P, C * S) map: the neuron is the channel
            return value.reshape(b, num_probes, nodes.numel(), -1).mean(-1)  # (B, P, C)
        return value.movedim(axis + 1, -1).reshape(b, num_probes, -1, nodes.numel()).mean(2)  # (B, P, C)
    except RuntimeError as e:  # the shape does not split into the probes and the neurons
        raise ValueError(f"a traced value of shape {tuple(value.shape[1:])} does not hold {num_probes} probes of "
                         f"{nodes.numel()} neurons: probe inputs must be batched along dimension 0 of the model's "
                         "values (a time-first recurrent layer reads them along dimension 1: use batch_first=True)"
                         ) from e
