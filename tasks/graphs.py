"""Loading zoo splits as in-memory neural graphs, with the extra node features the tasks use.

- probe features (``nngraph.probe_features``: each neuron's value on fixed probe inputs),
- random positional features on hidden neurons (breaks permutation equivariance on purpose: a baseline),
- :class:`GraphScaler`: per-depth RMS scaling of weights and biases (equivariant; commutes with sign flips).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import copy
import json

import torch
from torch import nn

import nngraph
from nngraph import schema
from nngraph.data import ZooDataset, example_inputs_for_spec
from nngraph.kernels import expand_to_entries
from nngraph.errors import ZooError
from nngraph.zoo import Zoo
from nngraph.zoo.inr_meta import INRMetadata

__all__ = ["Split", "open_zoo", "load_split", "max_kernel_shape", "zoo_kernel_box", "probe_inputs_for", "add_positional_features", "GraphScaler"]


@dataclass
class Split:
    """One split of a zoo: graphs (with ``probe`` if asked), the models, their manifest entries."""

    graphs: list
    models: list[nn.Module]
    entries: list[dict]
    dataset: ZooDataset = field(repr=False)

    def __len__(self) -> int:
        return len(self.graphs)


def open_zoo(root: str, kind: str, task: str) -> Zoo:
    """The zoo at ``root`` if it is of ``kind`` (``"inr"`` or ``"classifier"``), checked before a task
    converts anything or creates its output directory.

    Raises:
        ZooError: naming ``root`` if it is not a zoo, or a zoo of another kind.
    """
    zoo = Zoo(root)
    if zoo.config["kind"] != kind:
        build = {"inr": "inr", "classifier": "classifiers"}[kind]
        raise ZooError(f"{root} is a {zoo.config['kind']} zoo; {task} needs a {kind} zoo "
                       f"(python -m nngraph.zoo {build} --out ...)")
    return zoo


def probe_inputs_for(spec: dict, num: int, seed: int = 0, placement: str = "grid",
                     inr: INRMetadata | None = None) -> torch.Tensor:
    """``num`` fixed probe inputs for models of ``spec``.

    ``placement="grid"``: for 2-D coordinate inputs (an INR) with ``num`` a square ``k * k``, the ``k x k``
    grid of the zoo's coordinates (``inr``, the zoo's :class:`~nngraph.zoo.inr_meta.INRMetadata`: its range
    and column order; default ``[-1, 1]^2`` in ``(x, y)``, the zoos built here), row-major, so the output
    neuron's probe values are a ``k x k`` rendering of the image; otherwise (other inputs, ``num`` not a
    square, or ``placement="random"``) inputs uniform in ``[-1, 1]`` (an INR's: in its coordinate range).
    """
    if placement not in ("grid", "random"):
        raise ValueError(f"Could not resolve probe placement {placement!r} among choices ['grid', 'random']")
    shape = example_inputs_for_spec(spec, 1)[0].shape[1:]
    k = round(num ** 0.5)
    inr = inr or INRMetadata()
    if placement == "grid" and tuple(shape) == (2,) and k * k == num and k > 1:
        return inr.grid(k, k)  # (P, 2)
    g = torch.Generator().manual_seed(seed)
    lo, hi = inr.coord_range if tuple(shape) == (2,) else (-1.0, 1.0)
    return torch.rand(num, *shape, generator=g) * (hi - lo) + lo  # (P, *in_shape)


_BOXES: dict[str, tuple[int, int, int]] = {}


def max_kernel_shape(graphs) -> tuple[int, int, int]:
    """The elementwise largest edge kernel ``(depth, height, width)`` of ``graphs`` (to size an encoder's
    ``max_kernel_box``)."""
    box = [1, 1, 1]
    for g in graphs:
        if g.kernel_shape.numel():
            box = [max(a, int(b)) for a, b in zip(box, g.kernel_shape.amax(0))]
    return tuple(box)  # type: ignore[return-value]


def zoo_kernel_box(root: str) -> tuple[int, int, int]:
    """The elementwise largest edge kernel over every architecture of a zoo, read from the converter
    (one conversion per architecture; a flatten head's spatial maps count too)."""
    if root not in _BOXES:
        graphs, seen = [], set()
        zoo = Zoo(root)
        for e in zoo.entries:
            key = json.dumps(e["spec"], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            spec = e["spec"]
            graphs.append(nngraph.to_graph(zoo.build(spec), example_inputs_for_spec(spec)))
        _BOXES[root] = max_kernel_shape(graphs)
    return _BOXES[root]


def load_split(root: str, split: str, num_probes: int = 0, families=None, max_items: int | None = None,
               probe_seed: int = 0, probe_placement: str = "grid") -> Split:
    """The graphs and models of ``split`` of the zoo at ``root``, in memory.

    With ``num_probes > 0`` every graph gets ``probe`` ``(N, num_probes)`` from the same probe inputs
    (:func:`probe_inputs_for` with ``probe_placement`` and the coordinates the zoo's ``zoo.json`` records).
    Models the converter refuses are left out (with a warning from :class:`~nngraph.data.ZooDataset`).
    """
    ds = ZooDataset(root, split, families=families, in_memory=True, progress=False, skip_unsupported=True)
    n = len(ds) if max_items is None else min(len(ds), max_items)
    inr = INRMetadata.of_zoo(ds.zoo.config)
    graphs, models, entries = [], [], []
    for i in range(n):
        g = ds[i]
        model = ds.load_model(i)
        if num_probes > 0:
            inputs = probe_inputs_for(ds.entry(i)["spec"], num_probes, probe_seed, probe_placement, inr)
            g.probe = nngraph.probe_features(model, inputs).float()  # (N, P)
        graphs.append(g)
        models.append(model)
        entries.append(ds.entry(i))
    return Split(graphs, models, entries, ds)


def add_positional_features(graphs: list, dim: int, seed: int = 0) -> list:
    """Copies of ``graphs`` whose ``probe`` gains ``dim`` columns: a fixed random vector per node *position*
    for hidden neurons (zeros elsewhere). Relabelling hidden neurons no longer relabels the features, so
    an encoder reading them is no longer permutation-equivariant (the "broken symmetry" baseline).
    """
    max_nodes = max(int(g.num_nodes) for g in graphs)
    table = torch.randn(max_nodes, dim, generator=torch.Generator().manual_seed(seed))  # (N_max, dim)
    out = []
    for g in graphs:
        g = g.clone()
        hidden = (g.node_type == int(schema.NodeType.HIDDEN)).unsqueeze(-1)  # (N, 1)
        pos = table[: int(g.num_nodes)] * hidden  # (N, dim)
        old = getattr(g, "probe", None)
        g.probe = pos if old is None else torch.cat([old, pos], dim=-1)  # (N, P + dim)
        out.append(g)
    return out


class GraphScaler(nn.Module):
    """Divides weights by the RMS of their depth and biases by the RMS of theirs (fitted on training graphs).

    The depth of an edge is the ``layer`` of its target neuron. One scale per depth is the same for every
    neuron of a layer, so scaling commutes with relabelling hidden neurons, and (no centring) with sign flips.
    Scales are buffers, saved with the model.

    Args:
        max_layers: depths beyond this share the last scale.
    """

    def __init__(self, max_layers: int = 64):
        super().__init__()
        self.max_layers = max_layers
        self.register_buffer("edge_scale", torch.ones(max_layers))
        self.register_buffer("node_scale", torch.ones(max_layers))

    def _depth(self, layer: torch.Tensor) -> torch.Tensor:
        return layer.clamp(0, self.max_layers - 1)

    @torch.no_grad()
    def fit(self, graphs: list) -> "GraphScaler":
        """Set the scales from the RMS of weight edges and biases per depth over ``graphs``."""
        e_sum, e_cnt = torch.zeros(self.max_layers), torch.zeros(self.max_layers)
        n_sum, n_cnt = torch.zeros(self.max_layers), torch.zeros(self.max_layers)
        for g in graphs:
            w, d = self._weight_entries(g)  # (W,) bool, (W,) depth of every kernel entry
            a = g.edge_attr[w, 0]  # (W_w,)
            e_sum.index_add_(0, d[w], a.pow(2).float())
            e_cnt.index_add_(0, d[w], (a != 0).float())
            hidden_or_out = g.node_type != int(schema.NodeType.INPUT)
            dn = self._depth(g.layer[hidden_or_out])
            n_sum.index_add_(0, dn, g.x[hidden_or_out, schema.BIAS].pow(2).float())
            n_cnt.index_add_(0, dn, (g.x[hidden_or_out, schema.BIAS] != 0).float())
        self.edge_scale.copy_(torch.where(e_cnt > 0, (e_sum / e_cnt.clamp(min=1)).sqrt(), torch.ones(1)).clamp(min=1e-6))
        self.node_scale.copy_(torch.where(n_cnt > 0, (n_sum / n_cnt.clamp(min=1)).sqrt(), torch.ones(1)).clamp(min=1e-6))
        return self

    def _weight_entries(self, g) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W,)`` bool: the rows of ``edge_attr`` in weight edges, and ``(W,)`` the depth of every row."""
        w = g.edge_type == int(schema.EdgeType.WEIGHT)  # (E,)
        d = self._depth(g.layer[g.edge_index[1]])  # (E,)
        rows = g.edge_attr.size(0)
        return (expand_to_entries(w, g.kernel_shape, rows), expand_to_entries(d, g.kernel_shape, rows))

    def edge_factor(self, batch) -> torch.Tensor:
        """``(W, 1)``: the scale of every row of ``edge_attr`` (1 for identity / structural edges)."""
        s = self.edge_scale[self._depth(batch.layer[batch.edge_index[1]])]  # (E,)
        s = torch.where(batch.edge_type == int(schema.EdgeType.WEIGHT), s, torch.ones_like(s))
        return expand_to_entries(s, batch.kernel_shape, batch.edge_attr.size(0)).unsqueeze(-1)  # (W, 1)

    def node_factor(self, batch) -> torch.Tensor:
        """``(N,)``: the bias scale of every node."""
        return self.node_scale[self._depth(batch.layer)]

    def forward(self, batch):
        """A shallow copy of ``batch`` with scaled ``edge_attr`` and bias column."""
        out = copy.copy(batch)  # shallow: shares the untouched tensors
        out.edge_attr = batch.edge_attr / self.edge_factor(batch)  # (W, 1)
        x = batch.x.clone()
        x[:, schema.BIAS] = x[:, schema.BIAS] / self.node_factor(batch)
        out.x = x
        return out
