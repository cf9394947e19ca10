"""``matplotlib.pyplot`` for code that writes plot files, without taking a user's backend away."""
from __future__ import annotations

import os
import sys

__all__ = ["pyplot", "save_figure"]


def pyplot():
    """``matplotlib.pyplot``, imported on first use.

    If nothing chose a backend yet (pyplot not imported, no ``MPLBACKEND``), the non-interactive
    ``Agg`` is selected, so that writing a PNG on a machine without a display works; a backend the
    user chose (a notebook's, ``MPLBACKEND``, an earlier ``matplotlib.use``) is left as it is.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, dpi: int = 110) -> str:
    """Lay out ``fig``, write it to ``path``, close it (figures are not kept open by scripts); returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
