"""What an INR zoo's coordinates mean: their range, their column order, ω0 and the image size.

Zoos built here fit SIRENs on :func:`~nngraph.zoo.images.coordinate_grid` (``[-1, 1]^2``, columns
``(x, y)``). Imported zoos may differ (DWSNets: ``[-1, 1]^2`` in ``(x, y)``; others fit on ``[0, 1]``
or feed ``(row, col)``), so an import records :class:`INRMetadata` under ``"inr"`` in ``zoo.json`` and
the probes (``tasks/common/features.py``) and the renderer (``tasks/inr_editing/render.py``) place their grids with
:meth:`INRMetadata.grid`. A zoo without the record keeps the default, which is the grid of the zoos
built here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["INRMetadata", "COORD_ORDERS"]

#: ``"xy"``: column 0 is the horizontal coordinate; ``"rowcol"``: column 0 is the vertical one (the row).
COORD_ORDERS = ("xy", "rowcol")


@dataclass(frozen=True)
class INRMetadata:
    """How an INR zoo's networks read coordinates.

    Args:
        coord_range (tuple[float, float]): the coordinates of the first and the last pixel centre on
            both axes. (default: :obj:`(-1.0, 1.0)`)
        coord_order (str): ``"xy"`` (column 0 is ``x``, the column index) or ``"rowcol"`` (column 0 is
            the row index). (default: :obj:`"xy"`)
        w0 (float, optional): the SIREN frequency factor ω0 (as in ``sin(w0 * (W x + b))``).
        image_size (tuple[int, int], optional): ``(height, width)`` of the images the INRs represent.
    """

    coord_range: tuple[float, float] = (-1.0, 1.0)
    coord_order: str = "xy"
    w0: float | None = None
    image_size: tuple[int, int] | None = None

    def __post_init__(self):
        lo, hi = (float(v) for v in self.coord_range)
        if not lo < hi:
            raise ValueError(f"coord_range must be (low, high) with low < high, got {self.coord_range!r}")
        object.__setattr__(self, "coord_range", (lo, hi))
        if self.coord_order not in COORD_ORDERS:
            raise ValueError(f"Could not resolve coord_order {self.coord_order!r} among choices {list(COORD_ORDERS)}")
        if self.w0 is not None:
            object.__setattr__(self, "w0", float(self.w0))
        if self.image_size is not None:
            h, w = (int(v) for v in self.image_size)
            if h < 1 or w < 1:
                raise ValueError(f"image_size must be two positive ints (height, width), got {self.image_size!r}")
            object.__setattr__(self, "image_size", (h, w))

    def to_json(self) -> dict[str, Any]:
        """The ``"inr"`` record of ``zoo.json``."""
        out = asdict(self)
        out["coord_range"] = list(self.coord_range)
        out["image_size"] = None if self.image_size is None else list(self.image_size)
        return out

    @classmethod
    def from_json(cls, record: Any) -> "INRMetadata":
        """Inverse of :meth:`to_json`; ``ValueError`` naming the bad field."""
        if not isinstance(record, dict):
            raise ValueError(f"the 'inr' record of zoo.json must be a JSON object, got {type(record).__name__}")
        unknown = set(record) - {"coord_range", "coord_order", "w0", "image_size"}
        if unknown:
            raise ValueError(f"the 'inr' record of zoo.json has unknown fields {sorted(unknown)}")
        return cls(**record)

    @classmethod
    def of_zoo(cls, config: dict[str, Any]) -> "INRMetadata":
        """The metadata a zoo's ``zoo.json`` records, or the default (the grid of zoos built here)."""
        record = config.get("inr")
        return cls() if record is None else cls.from_json(record)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Pixel coordinates, row-major (``grid[i * width + j]`` is pixel row ``i``, column ``j``).

        Shapes:
            - **output:** :math:`(H \\cdot W, 2)`, columns in :attr:`coord_order`.
        """
        lo, hi = self.coord_range
        rows = torch.linspace(lo, hi, height)
        cols = torch.linspace(lo, hi, width)
        gr, gc = torch.meshgrid(rows, cols, indexing="ij")  # (H, W) each
        pair = [gc, gr] if self.coord_order == "xy" else [gr, gc]
        return torch.stack(pair, dim=-1).reshape(height * width, 2)  # (H*W, 2)
