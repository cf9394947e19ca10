"""Every neuron's values on data, positions kept: what activation matching correlates.

A convolution's channel or a transformer's residual feature takes one value per input *and per position* (pixel,
token). Correlating neurons over all ``(input, position)`` pairs, as Git Re-Basin and REPAIR do (Ainsworth et al.
2023; Jordan et al. 2023), tells them apart far better than correlating their per-input averages over positions
(:func:`nngraph.probe_features`): two channels with equal image means can still fire at different pixels.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import fx, nn

from ..convert import build_layout
from ..convert.layout import Layout

__all__ = ["neuron_samples"]


class _Recorder(fx.Interpreter):
    """Runs the traced model and keeps the values of the named fx nodes."""

    def __init__(self, gm: fx.GraphModule, wanted: set[str]):
        super().__init__(gm)
        self.wanted, self.values = wanted, {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.wanted:
            self.values[n.name] = out
        return out


def neuron_samples(module: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], layout: Layout | None = None,
                   max_samples: int = 8192, seed: int = 0) -> torch.Tensor:
    """``(N, S)``: each neuron's values on ``inputs`` over every ``(input, position)`` pair, standardised per
    neuron (mean 0, norm 1: the dot product of two rows of one activation space is their correlation).

    Rows of neurons of one activation space share their sample order (the same inputs and positions), in
    ``module`` and in any model of its architecture, so ``A[rows] @ B[rows].T`` correlates two models' neurons.
    Spaces with fewer samples than ``S`` are zero-padded; nodes that hold no value of their own (queries, keys,
    heads, norm groups) are zero rows. The neurons inside a layer the converter takes whole (the feed-forward
    and attention outputs of ``nn.TransformerEncoderLayer``) get their submodule's output, read by a forward
    hook (before the activation that follows it, where the traced values are after it).

    Args:
        module: the model (one converted through torch.export, such as Hugging Face's GPT-2, has values only on
            the outputs of its submodules).
        inputs: a batch ``(P, ...)``, or a tuple for several model inputs.
        layout: the model's layout, if already built.
        max_samples: at most this many samples per space: a larger ``P x positions`` is subsampled at positions
            drawn once from ``seed`` (the same for every model).

    Shapes:
        - **output:** :math:`(N, S)`, ``S <= max_samples``
    """
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    layout = layout if layout is not None else build_layout(module, inputs)
    traced = layout.fx_graph is not None  # else converted through torch.export: only the hooks see values
    recorder = _Recorder(fx.GraphModule(module, layout.fx_graph), set(layout.value_nodes)) if traced else None
    submodules = dict(module.named_modules())
    submodules.update({name.replace(".", "_"): m for name, m in list(submodules.items())})  # export's names
    inner = {}  # module name -> its output, for modules inside a layer the converter took whole
    hooks = [submodules[name].register_forward_hook(_keep(inner, name))
             for name in layout.module_nodes if name in submodules]
    hooks += [m.register_forward_pre_hook(_projections(inner, name, m), with_kwargs=True)
              for name, m in submodules.items()
              if isinstance(m, nn.MultiheadAttention) and f"{name}.query" in layout.module_nodes]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            recorder.run(*inputs) if traced else module(*inputs)
    finally:
        module.train(was_training)
        for hook in hooks:
            hook.remove()
    num_inputs = inputs[0].shape[0]
    spaces, seen = [], torch.zeros(layout.num_nodes, dtype=torch.bool)
    for name, (nodes, axis, spatial, head_axis) in layout.value_nodes.items():  # graph order: later values win
        value = recorder.values.get(name) if traced else None
        if isinstance(value, torch.Tensor):
            spaces.append((nodes, _columns(value, num_inputs, nodes.numel(), axis, spatial, head_axis)))
            seen[nodes] = True
    for name, value in inner.items():  # what the traced values do not show (a TransformerEncoder's insides)
        nodes = layout.module_nodes[name]
        if not bool(seen[nodes].any()) and isinstance(value, torch.Tensor):
            axis = 1 if isinstance(submodules.get(name), _CHANNEL_FIRST) else value.dim() - 1
            if value.dim() > axis and value.shape[axis] == nodes.numel() and value.shape[0] == num_inputs:
                spaces.append((nodes, _columns(value, num_inputs, nodes.numel(), axis, (), -1)))
                seen[nodes] = True
    width = min(max_samples, max((v.shape[1] for _, v in spaces), default=1))
    out = torch.zeros(layout.num_nodes, width, dtype=torch.float32)  # (N, S)
    generator = torch.Generator().manual_seed(seed)
    for nodes, values in spaces:  # values (C, P * positions)
        if values.shape[1] > width:
            keep = torch.randperm(values.shape[1], generator=generator)[:width].sort().values
            values = values[:, keep]  # (C, S)
        values = values.double()
        centred = values - values.mean(1, keepdim=True)
        out[nodes, :values.shape[1]] = (centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)).float()
    return out


#: modules whose output holds the channels on axis 1 (every other module's: on the last axis)
_CHANNEL_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
                  nn.modules.instancenorm._InstanceNorm)


def _keep(store: dict, name: str):
    """A forward hook that keeps a module's output (the first of a tuple, as attention's) under ``name``."""
    def hook(module, args, output):
        store[name] = output[0] if isinstance(output, tuple) else output
    return hook


def _projections(store: dict, name: str, attention: nn.MultiheadAttention):
    """A forward pre-hook that keeps the queries, keys and values ``nn.MultiheadAttention`` computes inside
    (``in_proj_weight``'s three row blocks applied to its three inputs) under ``name.query`` / ``.key`` / ``.value``."""
    def hook(module, args, kwargs):
        inputs = list(args[:3]) + [kwargs[k] for k in ("query", "key", "value")[len(args):] if k in kwargs]
        if attention.in_proj_weight is None or len(inputs) < 3:
            return  # separate q / k / v projections: their neurons stay without values
        bias = attention.in_proj_bias
        for part, tensor, rows in zip(("query", "key", "value"), inputs, attention.in_proj_weight.chunk(3)):
            b = None if bias is None else bias[rows.shape[0] * ("query", "key", "value").index(part):][:rows.shape[0]]
            store[f"{name}.{part}"] = nn.functional.linear(tensor, rows, b)  # (..., E)
    return hook


def _columns(value: torch.Tensor, num_inputs: int, channels: int, axis: int, spatial, head_axis: int) -> torch.Tensor:
    """``(C, P * positions)``: the ``C`` neurons of one traced value as rows (as
    :func:`nngraph.convert.probe.neuron_values`, without the average over positions)."""
    try:
        if head_axis >= 0:  # neurons split into groups (attention heads): merge them in the nodes' order
            value = value.movedim((head_axis, axis), (-2, -1)).flatten(-2)  # (P, ..., H * D)
            axis = value.dim() - 1
        if spatial:  # a flattened (P, C * S) map: the neuron is the channel
            return value.reshape(num_inputs, channels, -1).transpose(0, 1).reshape(channels, -1)  # (C, P * S)
        return value.movedim(axis, -1).reshape(-1, channels).T  # (C, P * positions)
    except RuntimeError as e:
        raise ValueError(f"a traced value of shape {tuple(value.shape)} does not hold {num_inputs} inputs of "
                         f"{channels} neurons: data must be batched along dimension 0") from e
