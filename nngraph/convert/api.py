"""The public conversion functions: module -> graph, graph -> module, and their helpers."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch_geometric.data import Batch, Data

from .building import _LAYOUT_CACHE, _no_kernel_box, build_layout, clear_cache  # noqa: F401 (re-exported)
from .errors import GraphMismatchError
from .layout import inputs_from_spec

def to_graph(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor] | torch.Tensor | None = None,
    kernel_box: tuple[int, int, int] | None = None,
    method: str = "auto",
    verify: bool = False,
) -> Data:
    """Turn ``module`` into a neural graph (see :mod:`nngraph.schema` for the fields).

    Args:
        module: a model built from supported layers (``nngraph.convert.supported_modules()``).
        example_inputs: a tensor or tuple of tensors to trace shapes with. Needed only when the
            shapes cannot be made up from the first layer (a CNN with a flatten head whose input
            is not 16 pixels wide, for instance).
        kernel_box: deprecated and ignored: every edge kernel is stored at its own size, and
            graphs of any architectures batch with a plain PyG ``DataLoader``.
        method: the tracer: ``"fx"``, ``"export"`` or ``"auto"`` (fx, and export where fx fails).
        verify: also run :func:`~nngraph.convert.verify` (random hidden permutations checked in
            float64 against the model's outputs) and raise
            :class:`~nngraph.convert.verify.SoundnessError` if the graph is not sound.

    Returns:
        :class:`torch_geometric.data.Data` with ``x (N, 5)``, ``edge_index (2, E)``, the kernels
        ``edge_attr (W, 1)`` (one row per kernel entry; ``W == E`` when all kernels are 1x1),
        ``kernel_shape (E, 3)`` and the integer fields of :mod:`nngraph.schema`.

    Raises:
        UnsupportedError: for a layer or operation nngraph cannot represent faithfully.

    Example:
        >>> mlp = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 1))
        >>> g = to_graph(mlp)
        >>> g.num_nodes, g.num_edges
        (35, 96)
    """
    if isinstance(module, torch.export.ExportedProgram):  # torch.export.load(path): its module and example inputs
        from .program import module_and_inputs

        module, example_inputs = module_and_inputs(module, example_inputs)
    _check_module(module, "to_graph")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if example_inputs is None:  # a program of nngraph.load_program carries the inputs it was exported with
        example_inputs = getattr(module, "example_inputs", None)
    _check_inputs(example_inputs, "to_graph")
    layout = build_layout(module, example_inputs, kernel_box, method=method)
    if verify:
        from .verify import verify as check

        check(module, example_inputs, method=method, raise_on_failure=True)
    return layout.to_graph(module)


def from_graph(
    graph: Data,
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor] | torch.Tensor | None = None,
    method: str = "auto",
) -> nn.Module:
    """A copy of ``module`` whose parameters and normalization buffers are read from ``graph``.

    ``from_graph(to_graph(m), m)`` reproduces every parameter bit for bit. ``graph`` may carry
    edited features (weight deltas added); its structure must be ``module``'s, otherwise
    :class:`~nngraph.convert.GraphMismatchError` is raised and nothing is loaded. The graph records
    the shapes of the inputs it was traced with, so ``example_inputs`` is needed only for graphs
    made without that record. A shared parameter (tied weights) is read from its first place.
    """
    _check_module(module, "from_graph")
    if not isinstance(graph, Data):
        raise TypeError(f"from_graph(graph, module): graph must be a torch_geometric Data of nngraph.to_graph, "
                        f"got {type(graph).__name__} (the arguments are graph first, then the module)")
    missing = [k for k in ("x", "edge_attr") if getattr(graph, k, None) is None]
    if getattr(graph, "edge_index", None) is None and getattr(graph, "edge_blocks", None) is None:
        missing.insert(1, "edge_index")
    if missing:
        raise GraphMismatchError(f"from_graph: the graph has no {', '.join(missing)}; it must be a graph of "
                                 "nngraph.to_graph (its features are read from x and edge_attr)")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if example_inputs is None and getattr(graph, "input_spec", None) is not None:
        example_inputs = inputs_from_spec(graph.input_spec)
    layout = build_layout(module, example_inputs, method=method)
    return layout.from_graph(graph, module)


def _check_inputs(example_inputs, where: str) -> None:
    """A clear error for example inputs that are not tensors (nngraph traces ``module(*example_inputs)``)."""
    if example_inputs is None:
        return
    if not isinstance(example_inputs, (tuple, list)):
        raise TypeError(f"{where}: example_inputs must be a tensor or a tuple of tensors, got "
                        f"{type(example_inputs).__name__}")
    for i, x in enumerate(example_inputs):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{where}: example_inputs[{i}] is a {type(x).__name__}; nngraph traces "
                            "module(*example_inputs) and needs tensors")


def _check_module(module, where: str) -> None:
    """A clear error for what is not a model with values: a non-Module, a model on the meta device."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"{where} needs a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, torch.jit.ScriptModule):
        raise TypeError(f"{where}: {type(module).__name__} is a TorchScript module (torch.jit.trace / script), whose "
                        "code nngraph cannot trace; pass the nn.Module it was made from, or a torch.export program")
    for name, tensor in (*module.named_parameters(), *module.named_buffers()):
        if tensor.is_meta:
            raise ValueError(f"{where}: {type(module).__name__} has {name!r} on the meta device (shapes without "
                             "values); materialise it first: module.to_empty(device='cpu'), then load_state_dict")


def random_hidden_permutation(
    module: nn.Module,
    generator: torch.Generator | None = None,
    example_inputs: Sequence[torch.Tensor] | torch.Tensor | None = None,
) -> tuple[nn.Module, torch.Tensor]:
    """Permute the hidden neurons of ``module`` in a function-preserving way.

    Returns:
        ``(permuted_module, node_perm)`` where old node ``i`` of ``to_graph(module)`` is node
        ``node_perm[i]`` of ``to_graph(permuted_module)``.
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    layout = build_layout(module, example_inputs)
    perm = layout.random_node_permutation(generator)
    graph = layout.to_graph(module)
    permuted = layout.permute_graph(graph, perm)
    return layout.from_graph(permuted, module), perm


def pad_kernel_box(graph: Data, kernel_box: tuple[int, int, int]) -> Data:
    """Removed: edge kernels are stored at their own size, there is no box to pad into."""
    raise TypeError("pad_kernel_box is gone: neural graphs store every edge kernel at its own size "
                    "(see nngraph.schema), so graphs of different kernel sizes batch as they are, with "
                    "torch_geometric.loader.DataLoader or Batch.from_data_list")


def batch_graphs(graphs: Sequence[Data], kernel_box: tuple[int, int, int] | None = None) -> Batch:
    """``Batch.from_data_list(graphs)``: neural graphs of any architectures batch as they are (every
    edge kernel at its own size), as a plain PyG ``DataLoader`` does. ``kernel_box`` is deprecated
    and ignored."""
    _no_kernel_box(kernel_box)
    graphs = list(graphs)
    if not graphs:
        raise ValueError("batch_graphs needs at least one graph, got an empty sequence")
    return Batch.from_data_list(graphs)
