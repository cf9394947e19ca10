"""A run's metrics file: one JSON object per epoch (JSON Lines)."""
from __future__ import annotations

import json
import math
import os
from typing import Any

from nngraph.io import atomic_write

__all__ = ["MetricsLog", "read_metrics"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Appends one line per epoch to ``path``; :meth:`truncate` drops epochs after a resumed checkpoint."""

    def __init__(self, path: str):
        self.path = path

    def truncate(self, last_epoch: int) -> None:
        """Keep only the lines of epochs ``<= last_epoch`` (a killed run may have logged past its checkpoint)."""
        rows = [r for r in read_metrics(self.path) if r.get("epoch", 0) <= last_epoch]
        atomic_write(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())

    def append(self, row: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: _clean(v) for k, v in row.items()}, sort_keys=True) + "\n")
            f.flush()


def read_metrics(path: str) -> list[dict[str, Any]]:
    """All complete lines of a metrics file (a line cut short by a kill is skipped)."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows
