"""Symmetry checks for models that read neural graphs (e3nn style: transform, run, compare, return the error).

Both helpers relabel the hidden neurons of a source model with
:func:`nngraph.convert.random_hidden_permutation`, first check that the permuted model computes the
same function and that its graph is the relabelled graph (the check checks itself), then compare the
encoder's outputs on both graphs and return the measured error::

    err = assert_invariant(NeuralGraphEncoder(10).double(), mlp.double())
    errs = assert_equivariant(encoder, cnn, example_inputs=(torch.randn(2, 3, 8, 8),))

Tolerances are per dtype (:data:`TOLERANCES`), relative to the size of the outputs (``max(1, |y|)``).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .kernels import reorder_kernels
from .convert.module_info import output_tensors, parameter_dtype
from .convert.trace import example_inputs_for

#: Default absolute tolerance per dtype, scaled by ``max(1, max |output|)``.
TOLERANCES = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-4, torch.float64: 1e-10}


def _dtype_of(model: nn.Module) -> torch.dtype:
    return parameter_dtype(model, torch.get_default_dtype())


def _max_err(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


def _tol(dtype: torch.dtype, ref: Tensor, atol: float | None) -> float:
    base = TOLERANCES.get(dtype, 1e-4) if atol is None else atol
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return base * max(1.0, scale)


def default_example_inputs(module: nn.Module, batch: int = 4, generator: torch.Generator | None = None,
                           dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
    """Random inputs made up from the model's first layer (Linear, Conv, Embedding, attention): the converter's
    guesser (:func:`nngraph.convert.trace.example_inputs_for`) with 8 positions per spatial axis and 5 tokens."""
    return example_inputs_for(module, batch=batch, spatial=8, tokens=5, generator=generator,
                              dtype=dtype or _dtype_of(module))


def edge_permutation(g1, g2, node_perm: Tensor) -> Tensor:
    r"""The edge relabelling implied by ``node_perm``: edge ``k`` of ``g1`` is edge ``perm[k]`` of ``g2``.

    Edges are matched by ``(source, target, edge_type)`` after relabelling the nodes of ``g1``.

    Shapes:
        - **output:** :math:`(E,)` long
    """
    if g1.num_edges != g2.num_edges:
        raise AssertionError(f"the permuted graph has {g2.num_edges} edges, the original {g1.num_edges}")
    n = max(g1.num_nodes, g2.num_nodes)
    t = int(max(int(g1.edge_type.max()), int(g2.edge_type.max()))) + 1 if g1.num_edges else 1
    ei1 = node_perm[g1.edge_index]  # (2, E)
    key1 = (ei1[0] * n + ei1[1]) * t + g1.edge_type  # (E,)
    key2 = (g2.edge_index[0] * n + g2.edge_index[1]) * t + g2.edge_type  # (E,)
    s1, o1 = torch.sort(key1)
    s2, o2 = torch.sort(key2)
    if not torch.equal(s1, s2):
        raise AssertionError("the permuted graph's edges are not the relabelled original edges")
    if bool((s1[1:] == s1[:-1]).any()):
        raise ValueError("parallel edges of one type: edges cannot be matched by their end nodes")
    perm = torch.empty_like(o1)
    perm[o1] = o2
    return perm


def permuted_graphs(module: nn.Module, example_inputs: Sequence[Tensor] | Tensor | None = None, *,
                    generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
                    probe_inputs: Tensor | None = None,
                    permute: Callable | None = None, to_graph: Callable | None = None):
    """Relabels the hidden neurons of ``module`` and returns ``(g1, g2, node_perm, edge_perm)``.

    Checks that the permuted model computes the same function on ``example_inputs`` and that ``g2`` is
    ``g1`` relabelled (node features and edge features), raising :class:`AssertionError` otherwise.
    ``permute`` and ``to_graph`` default to :func:`nngraph.convert.random_hidden_permutation` and
    :func:`nngraph.to_graph`. With ``probe_inputs``, both graphs get ``probe`` features
    (:func:`nngraph.convert.probe_features`).
    """
    if permute is None or to_graph is None:
        from nngraph import convert  # the GNN never imports the converter; the test helpers may

        permute = permute or convert.random_hidden_permutation
        to_graph = to_graph or convert.to_graph
    module = copy.deepcopy(module)
    if dtype is not None:
        module = module.to(dtype)
    module.eval()
    if isinstance(example_inputs, Tensor):
        example_inputs = (example_inputs,)
    if example_inputs is None:
        example_inputs = default_example_inputs(module, generator=generator)
    example_inputs = tuple(t.to(_dtype_of(module)) if t.is_floating_point() else t for t in example_inputs)

    permuted, node_perm = permute(module, generator=generator, example_inputs=example_inputs)
    with torch.no_grad():
        outputs = zip(output_tensors(module(*example_inputs)), output_tensors(permuted(*example_inputs)))
    for y1, y2 in outputs:
        fn_err = _max_err(y1, y2)
        if fn_err > _tol(y1.dtype, y1, None):
            raise AssertionError(f"the permutation changed the model's function (max error {fn_err:.3g})")

    g1, g2 = to_graph(module, example_inputs), to_graph(permuted, example_inputs)
    if not torch.equal(g2.x[node_perm], g1.x):
        raise AssertionError("node features of the permuted graph are not the relabelled original ones")
    for key in ("node_kind", "node_type", "layer", "act", "act_args", "conv_args", "pool", "pool_args", "op_code",
                "norm_eps"):
        if key in g1 and not torch.equal(g2[key][node_perm], g1[key]):
            raise AssertionError(f"{key} of the permuted graph is not the relabelled original one")
    edge_perm = edge_permutation(g1, g2, node_perm)
    if not torch.equal(reorder_kernels(g2.edge_attr, getattr(g2, "kernel_shape", None), edge_perm), g1.edge_attr):
        raise AssertionError("edge features of the permuted graph are not the relabelled original ones")
    if probe_inputs is not None:
        from nngraph.convert import probe_features

        probe_inputs = probe_inputs.to(_dtype_of(module))
        g1.probe = probe_features(module, probe_inputs)
        g2.probe = probe_features(permuted, probe_inputs)
    return g1, g2, node_perm, edge_perm


def assert_invariant(encoder: nn.Module, module: nn.Module, example_inputs: Sequence[Tensor] | Tensor | None = None,
                     *, generator: torch.Generator | None = None, atol: float | None = None,
                     probe_inputs: Tensor | None = None, permute: Callable | None = None,
                     to_graph: Callable | None = None) -> float:
    """Checks ``encoder(graph)`` is unchanged by relabelling hidden neurons of ``module``; returns the error.

    ``module`` is cast to the encoder's dtype. The error is the largest absolute difference between
    the outputs; it must not exceed ``atol`` (default: :data:`TOLERANCES` of the dtype) times
    ``max(1, max |output|)``.
    """
    dtype = _dtype_of(encoder)
    g1, g2, _, _ = permuted_graphs(module, example_inputs, generator=generator, dtype=dtype,
                                   probe_inputs=probe_inputs, permute=permute, to_graph=to_graph)
    with torch.no_grad():
        y1, y2 = encoder(g1), encoder(g2)
    err = _max_err(y1, y2)
    tol = _tol(dtype, y1, atol)
    if not err <= tol:
        raise AssertionError(f"{type(encoder).__name__} is not invariant: max error {err:.3g} > {tol:.3g}")
    return err


def assert_equivariant(encoder: nn.Module, module: nn.Module,
                       example_inputs: Sequence[Tensor] | Tensor | None = None, *,
                       generator: torch.Generator | None = None, atol: float | None = None,
                       head: nn.Module | None = None, probe_inputs: Tensor | None = None,
                       permute: Callable | None = None, to_graph: Callable | None = None) -> dict[str, float]:
    """Checks ``encoder.encode(graph)`` permutes with the hidden neurons of ``module``; returns the errors.

    Compares node embeddings (``"node"``) and edge embeddings (``"edge"``) row by row after relabelling,
    and with a ``head`` (e.g. :class:`~nngraph.gnn.NodeEdgeHead`) also its node and edge outputs
    (``"head_node"``, ``"head_edge"``). Tolerances as in :func:`assert_invariant`.
    """
    dtype = _dtype_of(encoder)
    g1, g2, node_perm, edge_perm = permuted_graphs(module, example_inputs, generator=generator, dtype=dtype,
                                                   probe_inputs=probe_inputs, permute=permute,
                                                   to_graph=to_graph)
    with torch.no_grad():
        (h1, e1), (h2, e2) = encoder.encode(g1), encoder.encode(g2)
        pairs = {"node": (h1, h2[node_perm]), "edge": (e1, e2[edge_perm])}
        if head is not None:
            (dx1, de1) = head(h1, e1, getattr(g1, "kernel_shape", None), g1.edge_attr.size(0))
            (dx2, de2) = head(h2, e2, getattr(g2, "kernel_shape", None), g2.edge_attr.size(0))
            pairs["head_node"] = (dx1, dx2[node_perm])
            pairs["head_edge"] = (de1, reorder_kernels(de2, getattr(g2, "kernel_shape", None), edge_perm))
    errors = {}
    for name, (a, b) in pairs.items():
        errors[name] = _max_err(a, b)
        tol = _tol(dtype, a, atol)
        if not errors[name] <= tol:
            raise AssertionError(f"{type(encoder).__name__} is not equivariant on {name} outputs: "
                                 f"max error {errors[name]:.3g} > {tol:.3g}")
    return errors


def reinitialise(model: nn.Module, seed: int = 0, all_buffers: bool = False) -> nn.Module:
    """``model`` with weights ~ N(0, 1 / fan_in), norm scales near 1 and biases near 0, in place: Hugging Face's
    initialisation (std 0.02) makes deep models' outputs vanish (1e-26 for MobileNetV2), and a soundness check on
    vanishing outputs tests nothing. Running variances are drawn in [0.5, 1.5]. Among the other floating buffers
    only running means change, unless ``all_buffers`` (rotary frequencies, relative-position tables and
    spectral-norm vectors are part of an architecture, not weights)."""
    generator = torch.Generator().manual_seed(seed)
    buffers = [(n, b) for n, b in model.named_buffers()
               if all_buffers or n.endswith(("running_var", "running_mean"))]
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + buffers:
            if not p.is_floating_point():
                continue
            if name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=generator) + 0.5)
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / fan_in ** 0.5)
            else:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=generator))
    return model
