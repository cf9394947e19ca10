"""Running a module with the parameters held by a batch of its neural graphs, differentiably.

:func:`gather_params` reads every parameter out of graph features (edited ones included) without
building modules, and :func:`batched_forward` evaluates the module on them with
:func:`torch.func.functional_call`, vectorised over the graphs with :func:`torch.func.vmap`. A loss on
the outputs trains whatever produced the features (an editor predicting weight deltas): no renderer
or hand-written forward per architecture is needed.

Example:
    >>> batch = Batch.from_data_list([nngraph.to_graph(m) for m in models])  # one architecture
    >>> params = nngraph.gather_params(batch, models[0])  # {name: (B, *shape)}
    >>> logits = nngraph.batched_forward(models[0], params, images)  # (B, n, classes)
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map
from torch_geometric.data import Data

from .convert import build_layout
from .convert.layout import inputs_from_spec
from .convert.probe import neuron_values

__all__ = ["gather_params", "batched_forward", "batched_probe_features"]


def gather_params(
    graphs: Data, module: nn.Module, example_inputs: Sequence[torch.Tensor] | torch.Tensor | None = None,
    x: torch.Tensor | None = None, edge_attr: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """``{name: (B, *shape)}``: the parameters of ``module``'s architecture held by ``graphs``.

    ``graphs`` is one graph or a PyG ``Batch`` of graphs of ``module``'s architecture
    (:meth:`~nngraph.convert.Layout.gather_params` on the module's layout; the structure of a batch is
    checked with :meth:`~nngraph.convert.Layout.check_batch`). ``x`` / ``edge_attr``, when given, are
    read instead of ``graphs.x`` / ``graphs.edge_attr`` (edited features, ``batch.x + dx``), and the
    result is differentiable in them. ``example_inputs`` is needed only for graphs that do not record
    the shapes they were traced with (as :func:`nngraph.from_graph`).

    Raises:
        GraphMismatchError: when a graph is not of ``module``'s architecture.
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    is_batch = "ptr" in graphs
    spec = getattr(graphs, "input_spec", None)
    if example_inputs is None and spec is not None:
        # a Batch collects every graph's spec into a list; one architecture has one spec
        example_inputs = inputs_from_spec(spec[0] if is_batch else spec)
    layout = build_layout(module, example_inputs)
    if is_batch:
        layout.check_batch(graphs)
    else:
        layout.check_fits(graphs)
    return layout.gather_params(graphs.x if x is None else x, graphs.edge_attr if edge_attr is None else edge_attr,
                                getattr(graphs, "batch", None))


def batched_forward(
    module: nn.Module, params: dict[str, torch.Tensor], *inputs, per_model_inputs: bool = False,
    vectorize: bool = True,
):
    """``module``'s forward once per model of ``params``, stacked: ``(B, *output)``.

    ``params`` is :func:`gather_params`' ``{name: (B, *shape)}`` (missing names take the module's own
    tensors, as in :func:`torch.func.functional_call`). The inputs are shared by all ``B`` models,
    or with ``per_model_inputs`` carry a leading ``B`` axis. The models run vectorised with
    :func:`torch.func.vmap`; where vmap cannot follow the forward (data-dependent control flow, an
    op without a batching rule) or ``vectorize`` is false, they run one after another. The module
    runs in the mode it is in: call ``module.eval()`` first for BatchNorm's running statistics (in
    training mode it normalizes by batch statistics, and the running statistics it updates are copies,
    discarded), which then pass gradients too (torch's own batch norm refuses gradients for them; an evaluation-mode batch
    norm whose statistics require grad is computed as ``(x - mean) / sqrt(var + eps) * weight + bias``).

    Shapes:
        - **params:** ``{name: (B, *shape)}``
        - **output:** :math:`(B, *)` (every tensor of a tuple or dict output stacked the same way)
    """
    if not params:
        raise ValueError("batched_forward needs at least one parameter to batch over; got an empty dict")
    num = next(iter(params.values())).shape[0]
    buffers = {n for n, _ in module.named_buffers(remove_duplicate=False)}
    # gathered tensors may be views of the graph features; a forward that updates buffers in place
    # (batch norm in training mode) updates copies, never the graph
    params = {k: v.clone() if k in buffers else v for k, v in _every_slot(module, params).items()}
    # only models with batch norms need the mode (it sees every op of the forward)
    mode = _DifferentiableRunningStats if any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                              for m in module.modules()) else contextlib.nullcontext

    def one(p, *args):
        with mode():
            return torch.func.functional_call(module, p, args, tie_weights=False)

    if vectorize:
        try:
            return torch.func.vmap(one, in_dims=(0, *([0 if per_model_inputs else None] * len(inputs))),
                                   randomness="different")(params, *inputs)
        except (RuntimeError, NotImplementedError, ValueError):
            pass  # vmap cannot follow this forward; the loop below computes the same function
    outs = [one({k: v[b] for k, v in params.items()}, *(a[b] if per_model_inputs else a for a in inputs))
            for b in range(num)]
    return tree_map(lambda *xs: torch.stack(xs), outs[0], *outs[1:])


def batched_probe_features(
    graphs: Data, module: nn.Module, inputs: Sequence[torch.Tensor] | torch.Tensor,
    x: torch.Tensor | None = None, edge_attr: torch.Tensor | None = None,
) -> torch.Tensor:
    """Probe features (:func:`nngraph.probe_features`) of a batch of graphs of one architecture, computed from
    the graphs' own features and differentiable in them and in ``inputs``.

    :func:`~nngraph.probe_features` runs a module; this runs ``module``'s traced forward with the parameters
    :func:`gather_params` reads out of ``graphs`` (``x`` / ``edge_attr`` when given), vectorised over the
    graphs, and records every neuron's value on the ``P`` probe inputs. So a graph that was relabelled or
    sign-flipped gets the probe features of the model it now describes, and the probe inputs themselves can
    be trained (learned probes). ``module`` gives the architecture (its own values are not used) and should
    be in evaluation mode, as :func:`~nngraph.probe_features` runs it.

    Shapes:
        - **inputs:** ``P`` probe inputs along dimension 0 (a tuple for several model inputs)
        - **output:** :math:`(\sum_b N_b, P)`, rows in the batch's node order
    """
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    layout = build_layout(module, inputs)
    if layout.fx_graph is None:
        raise ValueError("probe features need a model torch.fx can trace; this one was converted through "
                         "torch.export")
    params = gather_params(graphs, module, inputs, x, edge_attr)  # {name: (B, *shape)}
    traced, wanted, owned = _recording_module(module, layout)
    values = batched_forward(traced, {k: v for k, v in params.items() if k in owned}, *inputs)
    values = dict(zip(wanted, values))  # {name: (B, *value)}
    num_graphs, num_probes = next(iter(params.values())).shape[0], inputs[0].shape[0]
    dtype = (x if x is not None else graphs.x).dtype
    probe = torch.zeros(num_graphs, layout.num_nodes, num_probes, dtype=dtype, device=inputs[0].device)  # (B, N, P)
    for name, (nodes, axis, spatial, head_axis) in layout.value_nodes.items():  # graph order: later values win
        value = values.get(name)
        if not isinstance(value, torch.Tensor):
            continue
        probe[:, nodes] = neuron_values(value, num_probes, nodes, axis, spatial, head_axis).transpose(1, 2).to(dtype)
    return probe.reshape(num_graphs * layout.num_nodes, num_probes)  # (B N, P)


#: ``(id(module), id(layout), training, (device, dtype)) -> (module ref, layout ref, traced, wanted, owned)``, a few entries:
#: building the recording ``GraphModule`` generates and compiles Python code, once per training step of learned
#: probes without it. Weak references: a dead module's or layout's id may be reused, so a hit is checked.
_RECORDING_CACHE: dict = {}
_RECORDING_CACHE_SIZE = 8


def _recording_module(module: nn.Module, layout) -> tuple[nn.Module, list[str], set[str]]:
    """``(traced, wanted, owned)``: ``module``'s traced forward returning the values of ``layout.value_nodes``
    (their names in ``wanted``, in graph order) and the names of the parameters and buffers it holds."""
    import weakref

    from torch import fx

    first = next(iter((*module.parameters(), *module.buffers())), None)
    where = None if first is None else (first.device, first.dtype)  # a moved module's buffers are new tensors
    key = (id(module), id(layout), module.training, where)
    hit = _RECORDING_CACHE.get(key)
    if hit is not None and hit[0]() is module and hit[1]() is layout:
        return hit[2:]
    recorded = fx.Graph()
    env: dict = {}
    recorded.graph_copy(layout.fx_graph, env)
    wanted = [n for n in layout.fx_graph.nodes if n.name in layout.value_nodes]
    recorded.output(tuple(env[n] for n in wanted))
    traced = fx.GraphModule(module, recorded).train(module.training)
    owned = {n for n, _ in (*traced.named_parameters(remove_duplicate=False),
                            *traced.named_buffers(remove_duplicate=False))}
    entry = (weakref.ref(module), weakref.ref(layout), traced, [n.name for n in wanted], owned)
    if len(_RECORDING_CACHE) >= _RECORDING_CACHE_SIZE:
        _RECORDING_CACHE.pop(next(iter(_RECORDING_CACHE)))
    _RECORDING_CACHE[key] = entry
    return entry[2:]


def _every_slot(module: nn.Module, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``params`` given to every attribute that holds the same tensor (tied weights), under one name per
    attribute: a submodule reached under two names (one layer applied twice) is one attribute, and
    ``functional_call`` would restore it wrongly if it were swapped twice."""
    slots: dict[int, dict[tuple[int, str], str]] = {}  # tensor -> (owner module, attribute) -> a name
    tensor_of = {}
    for name, t in (*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)):
        owner, _, attr = name.rpartition(".")
        slots.setdefault(id(t), {}).setdefault((id(module.get_submodule(owner)), attr), name)
        tensor_of[name] = t
    out = {}
    for name, value in params.items():
        if name not in tensor_of:
            raise KeyError(f"batched_forward: {type(module).__name__} has no parameter or buffer {name!r}")
        for slot_name in slots[id(tensor_of[name])].values():
            out[slot_name] = value
    return out


class _DifferentiableRunningStats(TorchFunctionMode):
    """Evaluation-mode ``F.batch_norm`` with running statistics that require grad, written out so that
    autograd reaches them (``native_batch_norm`` is not differentiable in them); every other call as is."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            bound = _BATCH_NORM.bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            stats = (a["running_mean"], a["running_var"])
            if not a["training"] and all(t is not None for t in stats) and any(t.requires_grad for t in stats):
                shape = (1, -1) + (1,) * (a["input"].dim() - 2)  # per channel, broadcast over positions
                out = (a["input"] - a["running_mean"].view(shape)) * torch.rsqrt(a["running_var"].view(shape) + a["eps"])
                if a["weight"] is not None:
                    out = out * a["weight"].view(shape)
                if a["bias"] is not None:
                    out = out + a["bias"].view(shape)
                return out
        return func(*args, **kwargs)


_BATCH_NORM = inspect.signature(F.batch_norm)
