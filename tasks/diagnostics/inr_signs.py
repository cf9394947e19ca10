"""How far apart two INRs of one digit are after weight matching, with and without sign flips, in two INR zoos.

    python -m tasks.diagnostics.inr_signs --shared runs/gen_inr_s0 --own runs/gen_inr_own_s0

A SIREN has two exact symmetries of its hidden neurons: permutations, and sign flips (``sin`` is odd: negating a
neuron's incoming weights and bias and its outgoing weights keeps the function). :func:`nngraph.symmetry.align_graph`
matches both where the activation is odd (a neuron pair scores the better of its two signs). This measures what
each buys on the zoos of two ``python -m tasks.generation.inr`` runs (their ``zoo.pt``, built here if missing): one
fitted from a single shared initialisation, one with an initialisation per INR (``--init own``). For ``--pairs``
random pairs of same-digit INRs per digit, the second is aligned to the first and their weight distance
``||w_a - w_b||`` is taken:

- ``none``: unaligned (the order the INRs were fitted in);
- ``permutation``: weight matching over permutations only (the reference's activations read as not odd, so no
  neuron may be negated);
- ``permutation + sign``: weight matching with sign flips (the library's alignment for odd activations).

Printed per zoo: the median distance of each, the median share of hidden neurons negated, and the own-init
medians over the shared-init ones; a check that the aligned model of one pair computes the same function as the
original in float64 (max absolute difference of the outputs on the pixel grid).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import numpy as np
import torch

import nngraph
from nngraph import schema
from nngraph.symmetry import align_graph
from nngraph.zoo import build_model
from nngraph.zoo.images import coordinate_grid

from ..generation import inr
from ..generation.task import zoo_modules

__all__ = ["ALIGNMENTS", "without_signs", "pair_distances", "function_change", "main"]

ALIGNMENTS = ("none", "permutation", "permutation + sign")


def without_signs(graph):
    """A copy of ``graph`` whose neurons record no activation: weight matching to it as the reference matches
    permutations only (:func:`nngraph.symmetry.flippable_nodes` reads the reference's activations)."""
    plain = graph.clone()
    plain.act = torch.full_like(plain.act, int(schema.Activation.NONE))
    return plain


def _aligned(graph, reference, layout, alignment: str):
    """``(aligned graph, sign (N,))`` of ``graph`` to ``reference`` by ``alignment`` (one of :data:`ALIGNMENTS`)."""
    if alignment == "none":
        return graph, torch.ones(layout.num_nodes, dtype=torch.float64)
    target = without_signs(reference) if alignment == "permutation" else reference
    aligned, _, sign = align_graph(graph, target, layout)
    return aligned, sign


def _flat(graph) -> torch.Tensor:
    """``(D,)`` float64: the graph's parameters (edge entries, then node biases)."""
    return torch.cat([graph.edge_attr[:, 0], graph.x[:, schema.BIAS]]).double()


def _layer_of_entries(graph) -> torch.Tensor:
    """``(D,)``: the layer of every entry of :func:`_flat` (an edge's: its head's layer)."""
    return torch.cat([graph.layer[graph.edge_index[1]], graph.layer])


def pair_distances(graphs, labels: np.ndarray, layout, pairs: int, seed: int) -> dict:
    """``{alignment: (P,) distances, "negated": (P,) share of hidden neurons negated, "layers": {layer: (P,)
    distances of that layer's weights and biases after permutation + sign}}`` over ``pairs`` random same-digit
    pairs per digit of ``graphs`` (``labels`` ``(M,)``)."""
    rng = np.random.default_rng(seed)
    hidden = graphs[0].node_type == int(schema.NodeType.HIDDEN)  # (N,)
    layer = _layer_of_entries(graphs[0])  # (D,)
    layers = [int(v) for v in torch.unique(layer[_flat(graphs[0]) != 0])]  # layers holding parameters
    out = {a: [] for a in ALIGNMENTS} | {"negated": [], "layers": {v: [] for v in layers}}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for _ in range(pairs):
            a, b = rng.choice(members, 2, replace=False)
            for alignment in ALIGNMENTS:
                aligned, sign = _aligned(graphs[b], graphs[a], layout, alignment)
                diff = _flat(aligned) - _flat(graphs[a])  # (D,)
                out[alignment].append(float(diff.norm()))
                if alignment == "permutation + sign":
                    out["negated"].append(float((sign[hidden] < 0).double().mean()))
                    for v in layers:
                        out["layers"][v].append(float(diff[layer == v].norm()))
    return {k: (np.array(v) if k != "layers" else {u: np.array(d) for u, d in v.items()}) for k, v in out.items()}


@torch.no_grad()
def function_change(module_a, module_b, coords: torch.Tensor, alignment: str) -> tuple[float, int]:
    """``(change, negated)``: the max absolute change of ``module_b``'s outputs on ``coords`` ``(P, 2)`` when it
    is aligned to ``module_a`` by ``alignment``, all in float64 (0 up to rounding: the alignment keeps the
    function), and how many neurons the alignment negated."""
    a, b = copy.deepcopy(module_a).double(), copy.deepcopy(module_b).double()
    x = coords.double()  # (P, 2)
    layout = nngraph.build_layout(b, (x[:2],))
    aligned, sign = _aligned(layout.to_graph(b), layout.to_graph(a), layout, alignment)
    return float((layout.from_graph(aligned, b)(x) - b(x)).abs().max()), int((sign < 0).sum())


def _zoo(out: str, init: str, seed: int) -> dict:
    """The ``zoo.pt`` of the INR generation run in ``out`` (built with the task's default settings if missing)."""
    args = inr.build_parser().parse_args(["--out", out, "--init", init, "--seed", str(seed)])
    path = os.path.join(out, "zoo.pt")
    if os.path.exists(path):
        key = torch.load(path, weights_only=True)["key"]
        args.images, args.resolution, args.hidden = key["images"], key["resolution"], key["spec"]["hidden"][0]
        args.init, args.seed = key["init"], key["seed"]
    os.makedirs(out, exist_ok=True)
    return inr.build_zoo(args)


def measure(out: str, init: str, pairs: int, seed: int) -> dict:
    """:func:`pair_distances` and one pair's float64 function check on the zoo of the run in ``out``."""
    zoo = _zoo(out, init, seed)
    modules = zoo_modules(zoo)
    resolution = int(zoo["key"]["resolution"])
    coords = coordinate_grid(resolution, resolution)  # (P, 2)
    layout = nngraph.build_layout(modules[0], (coords[:2],))
    graphs = [layout.to_graph(m) for m in modules]
    result = pair_distances(graphs, zoo["labels"].numpy(), layout, pairs, seed)
    a, b = np.flatnonzero(zoo["labels"].numpy() == int(zoo["labels"][0]))[:2]  # two INRs of the first digit
    result["function_change"] = {alignment: function_change(modules[a], modules[b], coords, alignment)
                                 for alignment in ALIGNMENTS[1:]}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tasks.diagnostics.inr_signs", description=__doc__.split("\n")[0])
    p.add_argument("--shared", default="runs/gen_inr_s0", help="an INR generation run with --init shared")
    p.add_argument("--own", default="runs/gen_inr_own_s0", help="an INR generation run with --init own")
    p.add_argument("--pairs", type=int, default=10, help="random same-digit pairs per digit")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairs (and of a zoo built here)")
    args = p.parse_args(argv)
    medians = {}
    for name, out, init in (("shared", args.shared, "shared"), ("own", args.own, "own")):
        r = measure(out, init, args.pairs, args.seed)
        medians[name] = {a: float(np.median(r[a])) for a in ALIGNMENTS}
        print(f"{name} initialisation ({out}, {len(r['none'])} same-digit pairs): median distance "
              + ", ".join(f"{a} {medians[name][a]:.3f}" for a in ALIGNMENTS)
              + f"; hidden neurons negated {np.median(r['negated']):.2f}; per layer after permutation + sign "
              + ", ".join(f"{v} {np.median(d):.3f}" for v, d in r["layers"].items())
              + "; float64 output change after alignment "
              + ", ".join(f"{a} {v:.1e} ({k} neurons negated)" for a, (v, k) in r["function_change"].items()),
              flush=True)
    print("own / shared: " + ", ".join(f"{a} {medians['own'][a] / medians['shared'][a]:.2f}x" for a in ALIGNMENTS))
    print("own-init after sign matching over own-init with permutations only: "
          f"{medians['own']['permutation + sign'] / medians['own']['permutation']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
