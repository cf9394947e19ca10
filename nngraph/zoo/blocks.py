"""The layers of the zoo families beyond plain stacks: a small patch transformer, gated MLP blocks and a
recurrent sequence classifier.

Both use only standard ``torch.nn`` layers and a plain ``forward``, so ``torch.fx`` traces them and every
model converts soundly (``nngraph.verify``; tested in ``tests/zoo/test_specs.py``).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["CELLS", "PatchTransformer", "GatedBlock", "GatedMLP", "SequenceClassifier"]


class PatchTransformer(nn.Module):
    r"""A ViT-like classifier: non-overlapping ``patch x patch`` patches embedded by a strided conv, a learned
    positional embedding, ``depth`` pre-norm ``nn.TransformerEncoderLayer`` s, the mean over patches, LayerNorm
    and a linear head.

    Shapes:
        - **input:** :math:`(B, C, H, W)` with ``H``, ``W`` multiples of ``patch``
        - **output:** :math:`(B, \text{num\_classes})`
    """

    def __init__(self, in_shape, patch: int, dim: int, depth: int, heads: int, mlp_ratio: int, act: str,
                 dropout: float, num_classes: int):
        super().__init__()
        c, h, w = in_shape
        self.patch = nn.Conv2d(c, dim, patch, stride=patch)
        num_patches = (h // patch) * (w // patch)
        self.pos = nn.Parameter(torch.randn(1, num_patches, dim) * 0.02)  # (1, P, dim)
        self.blocks = nn.Sequential(*[
            nn.TransformerEncoderLayer(dim, heads, mlp_ratio * dim, dropout, activation=act, batch_first=True,
                                       norm_first=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos  # (B, dim, h, w) -> (B, P, dim)
        tokens = self.blocks(tokens)  # (B, P, dim)
        return self.head(self.norm(tokens.mean(1)))  # (B, num_classes)


class GatedBlock(nn.Module):
    r"""``x + W_2 (act(W_1 LN(x)) * W_3 LN(x))``: a pre-norm gated MLP block (SwiGLU with ``act = silu``).

    Shapes:
        - **input:** :math:`(B, \text{dim})`
        - **output:** :math:`(B, \text{dim})`
    """

    def __init__(self, dim: int, hidden: int, act: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.gate = nn.Linear(dim, hidden)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        return x + self.down(self.act(self.gate(y)) * self.up(y))


class GatedMLP(nn.Module):
    r"""``Flatten, Linear(in, dim)``, ``depth`` :class:`GatedBlock` s, a linear head.

    Shapes:
        - **input:** :math:`(B, C, H, W)`
        - **output:** :math:`(B, \text{num\_classes})`
    """

    def __init__(self, in_shape, dim: int, hidden: int, depth: int, act, num_classes: int):
        super().__init__()
        c, h, w = in_shape
        self.flatten = nn.Flatten()
        self.embed = nn.Linear(c * h * w, dim)
        self.blocks = nn.Sequential(*[GatedBlock(dim, hidden, act()) for _ in range(depth)])
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(self.flatten(x))))  # (B, num_classes)


#: Recurrent cells accepted in ``rnn`` specs: ``(layer class, extra arguments, gates per unit)``.
CELLS = {"rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}, 1), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}, 1),
         "lstm": (nn.LSTM, {}, 4), "gru": (nn.GRU, {}, 3)}


class SequenceClassifier(nn.Module):
    r"""Reads an image row by row (``H`` steps of ``C * W`` features) with a recurrent layer and classifies
    from the last step's output (``readout="last"``: both directions' units at the last step) or from the
    last layer's final hidden state (``readout="h_n"``: ``h_n[-1]``, with ``h_n[-2]`` before it when
    bidirectional).

    Shapes:
        - **input:** :math:`(B, C, H, W)`
        - **output:** :math:`(B, \text{num_classes})`
    """

    def __init__(self, in_shape, cell: str, hidden: int, num_layers: int, bidirectional: bool, readout: str,
                 num_classes: int, dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"Could not resolve cell {cell!r} among choices {sorted(CELLS)}")
        if readout not in ("last", "h_n"):
            raise ValueError(f"readout must be 'last' or 'h_n', got {readout!r}")
        c, _, w = in_shape
        kind, extra, _ = CELLS[cell]
        self.rnn = kind(c * w, hidden, num_layers=num_layers, bidirectional=bidirectional, batch_first=True,
                        dropout=dropout if num_layers > 1 else 0.0, **extra)
        self.readout = readout
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.transpose(1, 2).flatten(2)  # (B, H, C * W): row t is step t
        out, state = self.rnn(seq)  # out: (B, H, D * hidden)
        if self.readout == "last":
            return self.head(out[:, -1])  # (B, D * hidden)
        h_n = state[0] if isinstance(self.rnn, nn.LSTM) else state  # (L * D, B, hidden)
        if self.rnn.bidirectional:
            return self.head(torch.cat([h_n[-2], h_n[-1]], dim=1))  # the last layer's two directions
        return self.head(h_n[-1])
