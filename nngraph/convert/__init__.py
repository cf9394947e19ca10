"""``nngraph.convert``: PyTorch modules to neural graphs and back.

Every module in this package other than the infrastructure below is a converter family and is
imported here so that it registers itself: adding a family is adding one file.
"""
from __future__ import annotations

import importlib
import pkgutil

from .api import (
    batch_graphs,
    build_layout,
    clear_cache,
    from_graph,
    pad_kernel_box,
    random_hidden_permutation,
    to_graph,
)
from .checkpoint import load_mapped, parameters_on_meta
from .errors import GraphMismatchError, UnsupportedError
from .layout import Layout, SymmetryGroup
from .probe import probe_features
from .registry import register_function, register_module, supported_functions, supported_modules
from .trace import trace
from .verify import SoundnessError, VerifyReport, verify

_INFRASTRUCTURE = {"api", "builder", "building", "checkpoint", "errors", "export_lift", "export_patterns", "flatten", "probe", "program",
                   "layout", "precision", "registry", "residual", "softmax_patterns", "trace", "values", "verify",
                   "walk"}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name not in _INFRASTRUCTURE and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "GraphMismatchError",
    "Layout",
    "SoundnessError",
    "SymmetryGroup",
    "UnsupportedError",
    "VerifyReport",
    "batch_graphs",
    "build_layout",
    "clear_cache",
    "from_graph",
    "load_mapped",
    "pad_kernel_box",
    "parameters_on_meta",
    "probe_features",
    "random_hidden_permutation",
    "register_function",
    "register_module",
    "supported_functions",
    "supported_modules",
    "to_graph",
    "trace",
    "verify",
]
