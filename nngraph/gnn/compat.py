"""Loading checkpoints written before the graph format grew.

The enums of :mod:`nngraph.schema` whose values index embedding tables (``NodeKind``, ``Activation``,
``EdgeType``) only ever gain values at the end, so a table saved before a value was added is the first
rows of today's table. :func:`load_appended_rows` lets such a checkpoint load strictly: the saved rows
replace the first ones and the rows of the new values keep their initialisation (no graph of the old
format uses them, so the module computes on old graphs exactly what it computed when it was saved).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["load_appended_rows", "load_slotted_rows"]


def load_appended_rows(module: nn.Module, state_dict: dict, prefix: str, tables: Iterable[str]) -> None:
    """Pad ``state_dict``'s ``<prefix><table>.weight`` ``(R_saved, D)`` to the module's ``(R, D)`` in place,
    for each embedding ``table`` of ``module`` with ``R_saved < R``; call from ``_load_from_state_dict``.
    Tables saved with more rows than the module has, or another width, are left for ``load_state_dict``
    to refuse."""
    for name in tables:
        key = f"{prefix}{name}.weight"
        saved = state_dict.get(key)
        current = getattr(module, name).weight
        if (not isinstance(saved, torch.Tensor) or saved.dim() != 2 or saved.shape[1] != current.shape[1]
                or saved.shape[0] >= current.shape[0]):
            continue
        grown = current.detach().clone().to(saved.dtype)  # (R, D): the new rows keep their initialisation
        grown[: saved.shape[0]] = saved
        state_dict[key] = grown


def load_slotted_rows(module: nn.Module, state_dict: dict, prefix: str, table: str, slots: int) -> None:
    """Like :func:`load_appended_rows` for a table laid out as a padding row 0 then ``slots`` groups of
    one row per kind (row ``1 + s * K + k - 1`` for kind ``k`` in slot ``s``, ``K`` kinds): a table saved
    with ``K_saved < K`` kinds has each slot's rows moved to where today's layout puts them, the rows of
    the new kinds keeping their initialisation. Anything else is left for ``load_state_dict`` to refuse."""
    key = f"{prefix}{table}.weight"
    saved = state_dict.get(key)
    current = getattr(module, table).weight
    if not isinstance(saved, torch.Tensor) or saved.dim() != 2 or saved.shape[1] != current.shape[1]:
        return
    rows, total = saved.shape[0] - 1, current.shape[0] - 1
    if rows >= total or rows % slots or total % slots:
        return
    old, new = rows // slots, total // slots
    grown = current.detach().clone().to(saved.dtype)  # (1 + S * K, D)
    grown[0] = saved[0]
    for s in range(slots):
        grown[1 + s * new: 1 + s * new + old] = saved[1 + s * old: 1 + (s + 1) * old]
    state_dict[key] = grown
