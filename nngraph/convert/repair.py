"""The proof a fallback graph gets before it is returned: every symmetry it claims is tried on the model.

:func:`repair` draws random permutations of the layout's symmetry groups, writes them into a float64 copy of
the model and compares its outputs with the original's, as :func:`nngraph.convert.verify.verify` does. A group
whose permutations change the function is found by bisection over the groups (symmetries compose, so a set of
true ones never fails) and fixed; the check is repeated until what remains passes. ``to_graph`` therefore never
returns a graph whose claimed symmetry changes the model's function, even where a fallback saw through an
operation on the strength of a float64 sample (:mod:`nngraph.convert.fallback`).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import torch
from torch import nn

from .errors import GraphMismatchError
from .layout import Layout
from .module_info import output_tensors
from .precision import float64_islands

#: Random permutations tried per set of groups.
PERMUTATIONS = 3
#: Rounds of finding and fixing failing groups before every remaining group is fixed.
ROUNDS = 4


def check_tolerance(layout: Layout, dtype: torch.dtype = torch.float64) -> float:
    """The largest relative output error a sound graph can show when the model runs in ``dtype``: ``1e-9`` in
    float64, or ``1000`` times the epsilon of the least precise dtype the forward casts to."""
    lowest = max((torch.finfo(d).eps for d in (*layout.casts, dtype)), default=torch.finfo(dtype).eps)
    return 1e-9 if lowest <= torch.finfo(torch.float64).eps else 1e3 * lowest


def forward(model: nn.Module, inputs: Sequence[Any], lift: bool = False) -> list[torch.Tensor]:
    """``model``'s output tensors on ``inputs`` without gradients; with ``lift``, its lower-precision casts run
    in float64 (:func:`~nngraph.convert.precision.float64_islands`)."""
    with torch.no_grad():
        if not lift:
            return output_tensors(model(*inputs))
        with float64_islands():
            return output_tensors(model(*inputs))


def reference_outputs(model: nn.Module, inputs: Sequence[Any], dtype: torch.dtype) -> tuple[list[torch.Tensor], bool]:
    """The outputs a soundness check compares with, and whether they were computed wholly in float64.

    A float64 model is run with its lower-precision islands lifted; when that forward fails or still returns a
    lower-precision tensor, it is run as written (``False``: the check then needs :func:`check_tolerance`).
    """
    if dtype == torch.float64:
        try:
            outputs = forward(model, inputs, lift=True)
            if all(t.dtype == torch.float64 for t in outputs if t.is_floating_point()):
                return outputs, True
        except Exception:  # a forward the lifted casts break: checked as written, at its own precision
            pass
    return forward(model, inputs), False


def output_error(outputs: list[torch.Tensor], reference: list[torch.Tensor], scale: float) -> float:
    """The largest ``|a - b| / scale`` over paired output tensors; ``inf`` where their number, a shape, the places
    of NaN or an integer value differ (a NaN never passes)."""
    if len(outputs) != len(reference):
        return float("inf")
    worst = 0.0
    for a, b in zip(outputs, reference):
        if a.shape != b.shape:
            return float("inf")
        if not a.numel():
            continue
        if not a.is_floating_point():
            if not torch.equal(a, b):
                return float("inf")
            continue
        if not torch.equal(a.isnan(), b.isnan()):
            return float("inf")
        worst = max(worst, float((a - b).nan_to_num(0.0).abs().max()) / scale)
    return worst


def repair(module: nn.Module, layout: Layout, example_inputs: Sequence[Any] | None = None, seed: int = 0) -> Layout:
    """``layout`` with every symmetry group fixed that changes ``module``'s outputs when permuted.

    Args:
        module: the model the layout was built from (left unchanged: a float64 copy in eval mode is run).
        layout: its layout.
        example_inputs: inputs as for ``to_graph``; the traced ones (``layout.example_inputs()``) when omitted.
        seed: seed of the permutations.

    Returns:
        ``layout`` itself when every group passes, else a copy without the failing groups, with a line in
        ``fallbacks`` saying how many neurons were fixed.
    """
    if not layout.symmetries:
        return layout
    check = _Check(module, layout, example_inputs, seed)
    groups = list(range(len(layout.symmetries)))
    bad: list[int] = []
    for _ in range(ROUNDS):
        found = check.failing(groups)
        if not found:
            break
        bad += found
        groups = [g for g in groups if g not in found]
    else:
        if groups and check.fails(groups):
            bad += groups
    if not bad:
        return layout
    fixed = sum(layout.symmetries[g].rows.numel() for g in bad)
    kept = tuple(s for i, s in enumerate(layout.symmetries) if i not in set(bad))
    note = f"check: {len(bad)} symmetry group(s) ({fixed} neurons) changed the outputs when permuted; fixed"
    return dataclasses.replace(layout, symmetries=kept, fallbacks=(*layout.fallbacks, note))


class _Check:
    """Runs a copy of the model with some groups permuted and compares its outputs with the original's."""

    def __init__(self, module: nn.Module, layout: Layout, example_inputs, seed: int):
        self.layout = layout
        self.generator = torch.Generator().manual_seed(seed)
        inputs = example_inputs if example_inputs is not None else layout.example_inputs()
        candidates = tuple(dict.fromkeys((torch.float64, layout.dtype, torch.float32)))
        for dtype in candidates:  # float64 where the forward allows it
            try:
                self.model = copy.deepcopy(module).eval().to(dtype)
                self.inputs = tuple(x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                                    for x in inputs)
                self.reference, self.lifted = reference_outputs(self.model, self.inputs, dtype)
                break
            except Exception:
                if dtype == candidates[-1]:
                    raise
        self.tolerance = 1e-9 if self.lifted else check_tolerance(layout, dtype)
        finite = [t for t in self.reference if t.is_floating_point() and t.numel()]
        self.scale = max((float(t.nan_to_num(0.0, 0.0, 0.0).abs().max()) for t in finite), default=0.0) or 1.0
        self.graph = layout.to_graph(self.model)

    def failing(self, groups: list[int]) -> list[int]:
        """The groups among ``groups`` whose permutations change the outputs (bisection)."""
        if not groups or not self.fails(groups):
            return []
        if len(groups) == 1:
            return groups
        half = len(groups) // 2
        found = self.failing(groups[:half]) + self.failing(groups[half:])
        return found or groups  # each half passes alone but not together: a chance draw; fix them all (sound)

    def fails(self, groups: list[int]) -> bool:
        """Whether permuting only ``groups`` changes the outputs in any of :data:`PERMUTATIONS` draws."""
        layout = self.layout
        for _ in range(PERMUTATIONS):
            perm = torch.arange(layout.num_nodes)
            for g in groups:
                old, new = _moving_sample(layout.symmetries[g], self.generator)
                step = torch.arange(layout.num_nodes)
                step[old] = new
                perm = step[perm]
            try:
                permuted = layout.from_graph(layout.permute_graph(self.graph, perm), self.model)
            except GraphMismatchError:
                return True
            outputs = forward(permuted, self.inputs, lift=self.lifted)
            if not output_error(outputs, self.reference, self.scale) <= self.tolerance:
                return True
        return False


def _moving_sample(group, generator: torch.Generator, tries: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A random symmetry of ``group`` that moves something, if one is drawn within ``tries``."""
    old, new = group.sample(generator)
    for _ in range(tries):
        if not torch.equal(old, new):
            break
        old, new = group.sample(generator)
    return old, new
