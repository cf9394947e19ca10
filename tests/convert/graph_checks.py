"""Checks shared by the converter tests."""
from __future__ import annotations

import re

import torch
from torch import nn
from torch_geometric.data import Data

import nngraph
from nngraph.kernels import edge_kernels

INTEGER_NODE_FIELDS = ("node_type", "node_kind", "io_position", "layer", "act", "pool")
#: per-node descriptions of operations, equal on every neuron of an activation space
OP_NODE_FIELDS = ("act_args", "conv_args", "pool_args")


def assert_round_trip(module: nn.Module, *inputs: torch.Tensor) -> Data:
    """``from_graph(to_graph(m), m)`` reproduces every parameter and buffer bit for bit and the outputs."""
    graph = nngraph.to_graph(module, inputs or None)
    back = nngraph.from_graph(graph, module, inputs or None)
    original = dict(module.state_dict())
    for name, value in back.state_dict().items():
        assert torch.equal(value, original[name]), f"{name} changed in the round trip"
    # a fresh copy with scrambled parameters must be fully overwritten by from_graph
    scrambled = _scrambled_copy(module)
    restored = nngraph.from_graph(graph, scrambled, inputs or None)
    for name, value in restored.state_dict().items():
        if value.is_floating_point() and not name.endswith("num_batches_tracked"):
            assert torch.equal(value, original[name]), f"{name} was not read back from the graph"
    if inputs:
        module.eval(), restored.eval()
        with torch.no_grad():
            assert torch.equal(_first(module(*inputs)), _first(restored(*inputs)))
    return graph


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _scrambled_copy(module: nn.Module) -> nn.Module:
    import copy

    out = copy.deepcopy(module)
    with torch.no_grad():
        for name, t in list(out.named_parameters()) + list(out.named_buffers()):
            if t.is_floating_point():
                t.copy_(torch.randn_like(t) + 7.0)
    return out


def edge_dict(graph: Data, perm: torch.Tensor | None = None) -> dict[tuple[int, int, int], torch.Tensor]:
    """``{(src, dst, type): kernel}`` (flattened, at its own size) with node ids mapped through ``perm`` (old -> new)."""
    src, dst = graph.edge_index
    if perm is not None:
        src, dst = perm[src], perm[dst]
    out = {}
    kernels = [k.reshape(-1) for k in edge_kernels(graph.edge_attr, graph.kernel_shape)]  # (K_e,) each
    for s, d, t, a in zip(src.tolist(), dst.tolist(), graph.edge_type.tolist(), kernels):
        key = (s, d, t)
        assert key not in out, f"parallel edge {key}"
        out[key] = a
    return out


def assert_same_up_to_relabelling(g1: Data, g2: Data, perm: torch.Tensor) -> None:
    """``g2`` is ``g1`` with old node ``i`` renamed ``perm[i]``: node features, integer node
    fields, and the edge set with its features, all exactly."""
    assert g1.num_nodes == g2.num_nodes and g1.num_edges == g2.num_edges
    assert torch.equal(torch.sort(perm).values, torch.arange(g1.num_nodes)), "perm is not a permutation"
    assert torch.equal(g2.x[perm], g1.x)
    for field in INTEGER_NODE_FIELDS + OP_NODE_FIELDS:
        assert torch.equal(getattr(g2, field)[perm], getattr(g1, field)), field
    e1, e2 = edge_dict(g1, perm), edge_dict(g2)
    assert e1.keys() == e2.keys()
    for key in e1:
        assert torch.equal(e1[key], e2[key]), key


def assert_function_preserved(m1: nn.Module, m2: nn.Module, *inputs: torch.Tensor, atol: float = 1e-10) -> None:
    """The permutation test checks itself: both models compute the same function."""
    m1.eval(), m2.eval()
    with torch.no_grad():
        a, b = _first(m1(*inputs)), _first(m2(*inputs))
    assert torch.allclose(a, b, atol=atol, rtol=0), f"outputs differ by {(a - b).abs().max():.3g}"


def assert_sound_under_random_permutations(model: nn.Module, x: torch.Tensor, seeds: int = 3,
                                           min_moved: float = 0.3) -> Data:
    """In the model's dtype (float64 in the callers): ``verify`` passes and moves at least ``min_moved`` of the
    hidden neurons, the round trip is exact, and for ``seeds`` random hidden permutations the permuted model
    computes the same function and its graph is the original's relabelled. Returns the original's graph."""
    report = nngraph.verify(model, x)
    assert report.ok and report.moved_fraction > min_moved, report
    g = assert_round_trip(model, x)
    for seed in range(seeds):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), (x,))
        assert not torch.equal(perm, torch.arange(perm.numel()))
        assert_function_preserved(model, permuted, x)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)
    return g


def assert_falls_back(model: nn.Module, inputs, match: str | None = None, method: str = "auto") -> tuple[str, ...]:
    """``model`` converts through the fallback: ``verify`` passes (sound, exact round trip) and
    ``build_layout(...).fallbacks`` is non-empty, with a line matching the regex ``match`` when given.
    Returns the fallback lines."""
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    report = nngraph.verify(model, inputs, method=method)
    assert report.ok, report
    assert report.round_trip_error == 0.0, report
    lines = nngraph.build_layout(model, inputs, method=method).fallbacks
    assert lines, "no fallback was used"
    if match is not None:
        assert any(re.search(match, line) for line in lines), f"no fallback line matches {match!r}: {lines}"
    return lines


def nodes_of(module: nn.Module, name: str, *inputs: torch.Tensor) -> torch.Tensor:
    """Graph node ids of the output neurons of submodule ``name``."""
    return nngraph.build_layout(module, inputs or None).module_nodes[name]
