"""Random-symmetry augmentation: every training graph relabelled by a fresh hidden-neuron permutation of its model.

The equivariant encoder gains nothing from it (relabelling is invisible to it), but the equivariance-broken twin
(random positional features on hidden neurons, :func:`tasks.features.add_positional_features`) does: seeing every
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
        graphs: neural graphs (with ``input_spec``), e.g. a zoo split's.
        models: the model of each graph (its layout gives the symmetries; models of one architecture share
            one cached layout).
        fixed_columns: the last ``fixed_columns`` columns of ``probe`` are positional and do not move.

    Shapes:
        - every field keeps its shape; ``x`` :math:`(N, F)` and ``probe[:, :-fixed_columns]`` are permuted
          over nodes, ``edge_attr`` :math:`(W, 1)` is reordered with the edges.
    """

    def __init__(self, graphs: Sequence, models: Sequence[torch.nn.Module], fixed_columns: int = 0):
        if len(graphs) != len(models):
            raise ValueError(f"{len(graphs)} graphs but {len(models)} models")
        self.graphs = list(graphs)
        self.fixed_columns = fixed_columns
        self.layouts = [nngraph.build_layout(m, inputs_from_spec(g.input_spec)) for g, m in zip(self.graphs, models)]
        for i, (g, layout) in enumerate(zip(self.graphs, self.layouts)):
            if layout.num_nodes != g.num_nodes:
                raise ValueError(f"graph {i} has {g.num_nodes} nodes, its model's layout {layout.num_nodes}")

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
