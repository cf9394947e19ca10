"""The models the tasks train: the graph encoder with a readout or a per-weight head, and a plain MLP."""
from __future__ import annotations

import torch
from torch import nn

import nngraph
from nngraph import schema
from nngraph.zoo.specs import ACTIVATIONS

from .scaling import GraphScaler

__all__ = ["GraphPredictor", "GraphEditor", "VectorMLP", "apply_deltas"]


def max_box(kernel_box) -> tuple[int, int, int]:
    """The encoder's ``max_kernel_box``: its default (3, 7, 7), grown to fit the data's largest kernel."""
    return tuple(max(a, int(b)) for a, b in zip((3, 7, 7), kernel_box))


class GraphPredictor(nn.Module):
    """``NeuralGraphEncoder`` on scaled graphs: one output vector per graph (logits or a regression value).

    Args:
        scaler: a fitted :class:`GraphScaler`.
        out_dim, hidden_dim, num_layers, probe_dim, dropout: of the encoder.
    """

    def __init__(self, scaler: GraphScaler, out_dim: int, hidden_dim: int = 32, num_layers: int = 3,
                 probe_dim: int = 0, dropout: float = 0.0, kernel_box=(1, 1, 1)):
        super().__init__()
        self.scaler = scaler
        self.encoder = nngraph.NeuralGraphEncoder(out_dim, hidden_dim=hidden_dim, num_layers=num_layers,
                                                  probe_dim=probe_dim, dropout=dropout,
                                                  max_kernel_box=max_box(kernel_box))

    def forward(self, batch) -> torch.Tensor:
        return self.encoder(self.scaler(batch))  # (B, out_dim)


def apply_deltas(x: torch.Tensor, edge_attr: torch.Tensor, dx: torch.Tensor,
                 de: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` edited feature tables of an ensemble edit: ``x + dx_j`` and ``edge_attr + de_j``.

    Shapes:
        - **input:** ``x`` :math:`(N, F)`, ``edge_attr`` :math:`(W, 1)`, ``dx`` :math:`(N, k F)` (delta-major,
          as :class:`~nngraph.gnn.NodeEdgeHead` lays it out), ``de`` :math:`(W, k)`
        - **output:** :math:`(k, N, F)`, :math:`(k, W, 1)`
    """
    k = de.shape[1]
    if dx.shape != (x.shape[0], k * x.shape[1]) or de.shape[0] != edge_attr.shape[0]:
        raise ValueError(f"deltas {tuple(dx.shape)}, {tuple(de.shape)} do not fit features {tuple(x.shape)}, "
                         f"{tuple(edge_attr.shape)}: expected (N, k * F) and (W, k)")
    xs = x.unsqueeze(0) + dx.view(x.shape[0], k, x.shape[1]).transpose(0, 1)  # (k, N, F)
    edge_attrs = edge_attr.unsqueeze(0) + de.t().unsqueeze(-1)  # (k, W, 1)
    return xs, edge_attrs


class GraphEditor(nn.Module):
    """Predicts ``k`` deltas for every weight and bias: ``encoder.encode`` + ``NodeEdgeHead``.

    The deltas are multiplied back by the scaler's per-depth scales (so a unit output moves a weight by
    the typical size of the weights of its layer) and masked to entries that hold parameters (the bias
    column of non-input neurons; weight edges). With ``num_outputs=k > 1`` the edit is an output
    ensemble: the edited INR is the pixel-wise mean of the ``k`` INRs of :func:`apply_deltas`.

    Args:
        init_scale: initial value of the head's learnable output scale.
        depth_gain: optional fixed factors on the deltas per depth, ``depth_gain[d - 1]`` for the weights
            into and the biases of layer ``d`` (``[0.1]``: first-layer deltas ten times smaller; ``0`` freezes
            that layer). Default: 1 everywhere.
        num_outputs: ``k``, the deltas per parameter. (default: 1, a single edited INR)
        head_dim: width of the head's hidden layers. (default: ``hidden_dim``)

    Shapes:
        - **output:** ``dx`` :math:`(N, 5k)` (delta-major: ``dx.view(N, k, 5)``), ``de`` :math:`(W, k)` (rows
          laid out as ``edge_attr``); for ``k = 1`` :math:`(N, 5)` and :math:`(W, 1)`
    """

    def __init__(self, scaler: GraphScaler, hidden_dim: int = 32, num_layers: int = 3, probe_dim: int = 0,
                 init_scale: float = 0.01, depth_gain=None, num_outputs: int = 1, head_dim: int | None = None):
        super().__init__()
        self.scaler = scaler
        self.num_outputs = num_outputs
        self.encoder = nngraph.NeuralGraphEncoder(1, hidden_dim=hidden_dim, num_layers=num_layers,
                                                  probe_dim=probe_dim)
        self.encoder.readout.requires_grad_(False)  # unused: per-weight outputs only
        self.head = nngraph.NodeEdgeHead(hidden_dim, init_scale=init_scale, num_outputs=num_outputs,
                                         head_dim=head_dim)
        gain = torch.ones(scaler.max_layers)
        if depth_gain is not None:
            for depth, g in enumerate(depth_gain, start=1):  # depth d: the weights into / biases of layer d
                gain[min(depth, scaler.max_layers - 1)] = float(g)
        self.register_buffer("depth_gain", gain)  # (max_layers,) a fixed factor on the deltas of each depth

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        h, e = self.encoder.encode(self.scaler(batch))  # (N, H), (E, H)
        dx, de = self.head(h, e, batch.kernel_shape, batch.edge_attr.size(0))  # (N, 5k), (W, k)
        n, k = dx.shape[0], self.num_outputs
        dx = dx.view(n, k, -1)  # (N, k, 5)
        node_gain = self.depth_gain[self.scaler._depth(batch.layer)]  # (N,)
        node_mask = torch.zeros_like(dx[:, :1])  # (N, 1, 5)
        node_mask[..., schema.BIAS] = (batch.node_type != int(schema.NodeType.INPUT)).to(dx.dtype).unsqueeze(-1)
        dx = dx * node_mask * (self.scaler.node_factor(batch) * node_gain).view(n, 1, 1)
        weight, depth = self.scaler._weight_entries(batch)  # (W,) each: per row of edge_attr
        edge_mask = weight.to(de.dtype).unsqueeze(-1)  # (W, 1)
        edge_gain = self.depth_gain[depth].unsqueeze(-1)  # (W, 1)
        de = de * edge_mask * self.scaler.edge_factor(batch) * edge_gain  # (W, k)
        return dx.reshape(n, -1), de  # (N, 5k), (W, k)

    def edit(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k, N, 5)``, ``(k, W, 1)``: the features of the ``k`` edited INRs of every graph of ``batch``."""
        dx, de = self(batch)
        return apply_deltas(batch.x, batch.edge_attr, dx, de)


class VectorMLP(nn.Module):
    """``Linear -> act -> ... -> Linear`` on standardised feature vectors (mean/std are buffers).

    Args:
        in_dim, out_dim: widths; ``hidden``: hidden widths; ``dropout``: after each hidden layer.
        mean, std: ``(in_dim,)`` feature standardisation (fit on the training set).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden=(128, 128), dropout: float = 0.0,
                 mean: torch.Tensor | None = None, std: torch.Tensor | None = None, act: str = "relu"):
        super().__init__()
        if act not in ACTIVATIONS:  # the zoos' activation names
            raise ValueError(f"Could not resolve activation {act!r} among choices {sorted(ACTIVATIONS)}")
        layers, width = [], in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[act](), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(in_dim) if mean is None else mean.float())
        self.register_buffer("std", torch.ones(in_dim) if std is None else std.float().clamp(min=1e-8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)  # (B, out_dim)
