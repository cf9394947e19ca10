"""The soundness check users can run: does the graph's claimed symmetry preserve the model's function?

:func:`verify` converts a float64 copy of the model, draws random permutations of its hidden neurons
from the graph's symmetry groups, writes every permuted graph back into the model and compares the
outputs with the original's. It also checks that ``from_graph(to_graph(m), m)`` restores every
parameter bit for bit. A converter bug that claims a symmetry the model does not have shows up here
as an output error far above float64 round-off.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import NNGraphError
from ..schema import NodeKind
from .building import build_layout
from .errors import GraphMismatchError, UnsupportedError
from .layout import constant_buffers, named_tensors
from .module_info import output_tensors, parameter_dtype
from .repair import check_tolerance, forward, output_error, reference_outputs

#: The default tolerance of :func:`verify`, relative to ``max |output|``.
DEFAULT_TOLERANCE = 1e-9

#: Builds a model's layout (a module attribute, so that a test can hand verify a lying builder)
_build_layout = build_layout


class SoundnessError(NNGraphError, AssertionError):
    """The graph of a model claims a symmetry that changes the model's function (a converter bug)."""


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` measured.

    Attributes:
        max_output_error: largest ``|f_perm(x) - f(x)|`` over all permutations and outputs, divided by
            ``max |f(x)|`` (float64; ``inf`` if a permutation does not even keep the graph's edges).
        output_scale: ``max |f(x)|``. A tiny scale (a deep randomly initialised model whose outputs
            vanish) makes the check weak: re-initialise the model or give other inputs.
        round_trip_error: largest ``|p' - p|`` over all parameters after ``from_graph(to_graph(m), m)``
            (0.0 when the inverse is exact).
        num_permutations: how many random symmetries were drawn.
        num_nodes: nodes of the graph.
        num_hidden: hidden neurons (``node_type == HIDDEN``).
        num_permutable: hidden neurons some symmetry group moves; the others are fixed.
        moved_fraction: fraction of parameter entries the permutations changed (0 means the check
            tested nothing: the model has no symmetry nngraph could use).
        tolerance: the tolerance the errors were compared with.
        fallbacks: what the fallback did for operations no converter names, one line each (the operation,
            its fx node, the neurons it fixed; :mod:`nngraph.convert.fallback`); empty when none ran.
    """

    max_output_error: float
    output_scale: float
    round_trip_error: float
    num_permutations: int
    num_nodes: int
    num_hidden: int
    num_permutable: int
    moved_fraction: float
    tolerance: float
    fallbacks: tuple = ()

    @property
    def ok(self) -> bool:
        return self.max_output_error <= self.tolerance and self.round_trip_error == 0.0

    def __str__(self) -> str:
        verdict = "sound" if self.ok else "UNSOUND"
        return (
            f"{verdict}: relative output error {self.max_output_error:.2e} (tolerance {self.tolerance:.0e}, "
            f"outputs up to {self.output_scale:.2g}) over "
            f"{self.num_permutations} permutations, round-trip error {self.round_trip_error:.2e}; "
            f"{self.num_permutable} of {self.num_hidden} hidden neurons permutable, "
            f"{100 * self.moved_fraction:.1f}% of parameter entries moved"
            + (" (the permutations moved nothing: the graph claims no symmetry, so there was nothing to check)"
               if self.moved_fraction == 0 else "")
            + "".join(f"\n  fallback: {line}" for line in self.fallbacks)
        )


def verify(
    module: nn.Module,
    example_inputs: Sequence[Any] | torch.Tensor | None = None,
    num_permutations: int = 8,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    method: str = "auto",
    raise_on_failure: bool = False,
) -> VerifyReport:
    """Check in float64 that ``module``'s neural graph is sound and its inverse exact.

    Args:
        module: the model (left unchanged: a float64 copy in eval mode is checked).
        example_inputs: a tensor or tuple of inputs; floating-point ones are cast to float64, integer
            ones (token ids) kept. Made up from the first layer when omitted.
        num_permutations: random hidden-neuron permutations to draw (default: 8).
        tolerance: largest output error accepted, relative to ``max |f(x)|`` (default: ``1e-9``). A forward
            that casts activations to a lower precision (Hugging Face's float32 RMSNorm, rotary angles and
            softmax) is run with those casts lifted to float64 (:mod:`nngraph.convert.precision`), so the
            default holds there too; only where the lifted forward fails or still returns a lower
            precision is it ``1000`` times that precision's epsilon (``1.2e-4`` for float32).
        seed: seed of the permutations (default: 0).
        method: the tracer, as for :func:`~nngraph.convert.to_graph`.
        raise_on_failure: raise :class:`SoundnessError` with the report instead of returning it.

    Returns:
        a :class:`VerifyReport`; ``report.ok`` says whether the graph is sound.

    Example:
        >>> report = nngraph.verify(model, (torch.randn(2, 3, 32, 32),))
        >>> print(report)
        sound: output error 3.1e-16 ...
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    # float64 where the forward allows it (grouped matrix products of mixtures of experts do not), else the
    # model's own dtype with that dtype's tolerance
    for dtype in dict.fromkeys((torch.float64, parameter_dtype(module))):
        model = copy.deepcopy(module).eval().to(dtype)
        inputs = None if example_inputs is None else tuple(_to_float(x, dtype) for x in example_inputs)
        layout = _build_layout(model, inputs, cache=False, method=method)
        if inputs is None:
            inputs = layout.example_inputs()
        try:
            reference, lifted = reference_outputs(model, inputs, dtype)
            break
        except Exception:
            if dtype == parameter_dtype(module):
                raise
    if tolerance == DEFAULT_TOLERANCE and not lifted:  # a forward computing in lower precision in places cannot
        tolerance = max(tolerance, check_tolerance(layout, dtype))  # reach float64's tolerance
    with torch.no_grad():
        if not reference:
            raise UnsupportedError(f"{type(module).__name__} returns no tensor to compare")
        if not all(bool(t.isfinite().all()) for t in reference if t.is_floating_point()):
            raise SoundnessError(f"{type(module).__name__}: its outputs on the example inputs are not finite (NaN or "
                                 "Inf weights or inputs), so a comparison would check nothing")
        largest = max((float(t.abs().max()) for t in reference if t.numel()), default=0.0)
        scale = largest if largest > 0 else 1.0
        graph = layout.to_graph(model)
        round_trip = _max_param_difference(model, layout.from_graph(graph, _scrambled(model)))
        generator = torch.Generator().manual_seed(seed)
        worst, moved, total = 0.0, 0, 0
        for _ in range(num_permutations):
            perm = layout.random_node_permutation(generator)
            try:
                permuted = layout.from_graph(layout.permute_graph(graph, perm), model)
            except GraphMismatchError:  # a claimed symmetry that does not even keep the graph's edges
                worst = float("inf")
                continue
            outputs = forward(permuted, inputs, lift=lifted)
            if len(outputs) != len(reference):
                raise SoundnessError("the permuted model returns another number of tensors")
            for a, b in zip(outputs, reference):
                if a.shape != b.shape:
                    raise SoundnessError(f"the permuted model returns shape {tuple(a.shape)} for {tuple(b.shape)}")
            worst = max(worst, output_error(outputs, reference, scale))
            changed, count = _changed_entries(model, permuted)
            moved, total = moved + changed, total + count
    hidden = (layout.node_type == 1) & (layout.node_kind != NodeKind.PARAMETER)  # neurons, not parameter rows
    permutable = torch.zeros(layout.num_nodes, dtype=torch.bool)
    for group in layout.symmetries:
        permutable[group.rows.reshape(-1)] = True
    report = VerifyReport(
        max_output_error=worst,
        output_scale=largest,
        round_trip_error=round_trip,
        num_permutations=num_permutations,
        num_nodes=layout.num_nodes,
        num_hidden=int(hidden.sum()),
        num_permutable=int((permutable & hidden).sum()),
        moved_fraction=moved / total if total else 0.0,
        tolerance=tolerance,
        fallbacks=tuple(layout.fallbacks),
    )
    if raise_on_failure and not report.ok:
        raise SoundnessError(f"{type(module).__name__}: {report}")
    return report


def _to_float(x: Any, dtype: torch.dtype) -> Any:
    return x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def _named_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Floating-point parameters and persistent buffers (non-persistent ones are constants of the
    forward, such as rotary frequencies, not part of the graph)."""
    constants = constant_buffers(module)
    return {k: v for k, v in named_tensors(module).items() if v.is_floating_point() and k not in constants}


def _scrambled(module: nn.Module) -> nn.Module:
    """A copy whose floating-point parameters and buffers hold other values (ties kept), so that a
    round trip into it shows every entry ``from_graph`` does not write."""
    out = copy.deepcopy(module)
    generator = torch.Generator().manual_seed(1234)
    for value in _named_state(out).values():
        value.copy_(torch.randn(value.shape, generator=generator, dtype=value.dtype) + 7.0)
    return out


def _max_param_difference(a: nn.Module, b: nn.Module) -> float:
    sa, sb = _named_state(a), _named_state(b)
    worst = 0.0
    for name, value in sa.items():
        other = sb[name]
        if value.shape != other.shape:
            return float("inf")
        if value.numel():
            diff = (value - other).abs()
            diff = torch.where(torch.isnan(value) & torch.isnan(other), torch.zeros_like(diff), diff)
            worst = max(worst, float(diff.max()))
    return worst


def _changed_entries(a: nn.Module, b: nn.Module) -> tuple[int, int]:
    sa, sb = _named_state(a), _named_state(b)
    changed = sum(int((sa[k] != sb[k]).sum()) for k in sa)
    return changed, sum(v.numel() for v in sa.values())
