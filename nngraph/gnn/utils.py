"""Small building blocks shared by the GNN modules."""
from __future__ import annotations

from torch import nn
from torch_geometric.nn.resolver import activation_resolver


def make_act(act: str) -> nn.Module:
    """An activation module from its name (``"silu"``, ``"relu"``, ``"gelu"``, ...)."""
    return activation_resolver(act)


def make_mlp(in_dim: int, hidden_dim: int, out_dim: int, act: str = "silu") -> nn.Sequential:
    """``Linear -> act -> Linear``."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), make_act(act), nn.Linear(hidden_dim, out_dim))


