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


def reset(module: nn.Module):
    """Calls ``reset_parameters`` on every child that has one."""
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()
