"""Probe features: the activations of every neuron of the source model on a few fixed inputs."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nngraph.schema import NodeType


def probe_features(module: nn.Module, graph, inputs: Tensor) -> Tensor:
    r"""Runs ``inputs`` through ``module`` and returns each neuron's value as a node feature.

    Unlike the rest of :mod:`nngraph.gnn`, this needs the source model, not only its graph. Store the
    result as ``graph.probe`` and build the encoder with ``probe_dim=P``. The value of a neuron is the
    output of its ``nn.Linear`` after the element-wise activation *module* that follows it, if any
    (activations called functionally are not seen: then the pre-activation is used). Input nodes get
    the inputs themselves. Relabelling hidden neurons of the model relabels the rows of the result
    exactly like the graph's nodes.

    Supported: stacks of ``nn.Linear`` and element-wise modules (``nn.Sequential`` MLPs, SIRENs), whose
    graphs list the input nodes first (``io_position`` order), then each layer's neurons in order.
    Other architectures raise :class:`NotImplementedError` (they need the converter's neuron map).

    Args:
        module (nn.Module): the model the graph was built from.
        graph (Data): its neural graph (only ``num_nodes``, ``node_type``, ``layer`` are read).
        inputs (Tensor): :math:`P` probe inputs, shape :math:`(P, \text{in\_features})`.

    Shapes:
        - **output:** :math:`(N, P)`
    """
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise NotImplementedError(f"probe_features supports stacks of nn.Linear; {type(module).__name__} has none")
    leaves = [m for m in module.modules() if len(list(m.children())) == 0]
    calls: list[tuple[nn.Module, Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, args, out: calls.append((m, out))) for m in leaves]
    first_in: list[Tensor] = []
    hooks.append(linears[0].register_forward_pre_hook(lambda m, args: first_in.append(args[0])))
    try:
        with torch.no_grad():
            module(inputs)
    finally:
        for h in hooks:
            h.remove()

    values = [first_in[0].reshape(inputs.size(0), -1)]  # (P, n_in)
    i = 0
    while i < len(calls):
        m, out = calls[i]
        i += 1
        if not isinstance(m, nn.Linear):
            continue
        # Follow element-wise modules that keep the shape (activations, dropout): the neuron's value.
        while i < len(calls) and not isinstance(calls[i][0], nn.Linear) and calls[i][1].shape == out.shape:
            out = calls[i][1]
            i += 1
        values.append(out.reshape(inputs.size(0), -1))  # (P, n_out)
    probe = torch.cat(values, dim=1).t().contiguous()  # (N, P)

    num_nodes = int(graph.num_nodes)
    n_in = int((graph.node_type == NodeType.INPUT).sum())
    layer = graph.layer
    if (probe.size(0) != num_nodes or n_in != values[0].size(1) or bool((layer[1:] < layer[:-1]).any())):
        raise NotImplementedError(
            f"probe_features found {probe.size(0)} neurons ({values[0].size(1)} inputs) in "
            f"{type(module).__name__} but the graph has {num_nodes} nodes ({n_in} inputs) or is not ordered by "
            "layer; it supports plain Linear stacks only (other models need the converter's neuron map)")
    return probe.to(graph.x.dtype)
