"""Random-symmetry augmentation: every training graph relabelled by a fresh hidden-neuron permutation of its model.

The equivariant encoder gains nothing from it (relabelling is invisible to it), but the equivariance-broken twin
(random positional features on hidden neurons, :func:`tasks.common.features.add_positional_features`) does: seeing every
model under many relabellings is how a non-equivariant network learns the symmetry, so a comparison with the
twin is fair only when the twin is trained with it. The positional features stay with the node *position*
(that is what breaks the symmetry); every other node feature, and the edges, move with the neurons.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

import nngraph
from nngraph.convert.layout import inputs_from_spec

__all__ = ["SymmetryAugmented"]


class SymmetryAugmented(Dataset):
    """``graphs[i]`` relabelled by a random symmetry of ``models[i]``, drawn afresh at every access.

    Permutations are drawn from ``torch``'s global generator (which :func:`nngraph.train.fit` seeds per
    epoch), so a training run stays reproducible.

    Args:
        graphs: neural graphs, e.g. a zoo split's.
        models: the model of each graph (its layout gives the symmetries; models of one architecture share
            one cached layout).
        fixed_columns: the last ``fixed_columns`` columns of ``probe`` are positional and do not move.
        inputs: the example inputs each graph was converted with (default: the graph's ``input_spec``;
            graphs cached by a zoo dataset have none, give the zoo spec's: ``example_inputs_for_spec``).

    Shapes:
        - every field keeps its shape; ``x`` :math:`(N, F)` and ``probe[:, :-fixed_columns]`` are permuted
          over nodes, ``edge_attr`` :math:`(W, 1)` is reordered with the edges.
    """

    def __init__(self, graphs: Sequence, models: Sequence[torch.nn.Module], fixed_columns: int = 0,
                 inputs: Sequence[tuple[torch.Tensor, ...]] | None = None):
        if len(graphs) != len(models) or (inputs is not None and len(inputs) != len(graphs)):
            raise ValueError(f"{len(graphs)} graphs but {len(models)} models"
                             + ("" if inputs is None else f" and {len(inputs)} inputs"))
        self.graphs = list(graphs)
        self.fixed_columns = fixed_columns
        if inputs is None:
            inputs = [inputs_from_spec(g.input_spec) for g in self.graphs]
        self.layouts = [nngraph.build_layout(m, x) for m, x in zip(models, inputs)]
        for i, (g, layout) in enumerate(zip(self.graphs, self.layouts)):
            if layout.num_nodes != g.num_nodes:
                raise ValueError(f"graph {i} has {g.num_nodes} nodes, its model's layout {layout.num_nodes}")

    @classmethod
    def of_split(cls, graphs: Sequence, split, fixed_columns: int = 0) -> "SymmetryAugmented":
        """For ``graphs`` of the models of a zoo ``split`` (:class:`tasks.common.splits.Split`; the graphs may carry
        extra features, e.g. positional ones), traced with the inputs the zoo's specs give."""
        from nngraph.data.zoo_dataset import example_inputs_for_spec

        return cls(graphs, split.models, fixed_columns, [example_inputs_for_spec(e["spec"]) for e in split.entries])

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int):
        graph, layout = self.graphs[i], self.layouts[i]
        perm = layout.random_node_permutation()  # (N,) old node -> new node
        out = layout.permute_graph(graph, perm)
        probe = getattr(graph, "probe", None)
        if probe is not None:
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(perm.numel())  # new node -> old node
            moving = probe.shape[1] - self.fixed_columns
            out.probe = torch.cat([probe[inverse, :moving], probe[:, moving:]], dim=1)  # (N, P)
        return out
