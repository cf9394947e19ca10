"""The module of a ``torch.export`` program (``.pt2``), as nngraph converts and loads it.

``ExportedProgram.module()`` gives the program unlifted: a GraphModule of ATen operations that reads
the parameters as attributes, plus hooks and a guards submodule that check its inputs. A plain
:class:`torch.fx.GraphModule` of the same graph computes the same function without them, and
:func:`nngraph.to_graph` converts it through ``torch.export`` (:func:`nngraph.convert.trace.trace`).
"""
from __future__ import annotations

import functools

from torch import fx

__all__ = ["program_module"]


def program_module(program) -> fx.GraphModule:
    """The unlifted ``program`` (a :class:`torch.export.ExportedProgram`) as a plain GraphModule.

    Its ``state_dict()`` has the keys of the module that was exported. (``fx.GraphModule`` registers
    every tensor its graph reads as a persistent buffer, in the constructor and again in every
    ``copy.deepcopy``; the program's non-persistent buffers and tensor constants are marked
    non-persistent again, after copies too: they are constants of the forward, not weights.)
    """
    unlifted = program.module(check_guards=False)
    gm = fx.GraphModule(unlifted, unlifted.graph, "ExportedProgram")
    persistent = set(unlifted.state_dict())
    constants = frozenset(name for name, _ in gm.named_buffers() if name not in persistent)
    _mark_non_persistent(gm, constants)
    gm._register_deepcopy_hook(functools.partial(_mark_non_persistent, names=constants))
    return gm


def _mark_non_persistent(gm: fx.GraphModule, names: frozenset[str]) -> None:
    """Leave the buffers ``names`` (dotted) out of ``gm.state_dict()``."""
    for name in names:
        owner, _, field = name.rpartition(".")
        gm.get_submodule(owner)._non_persistent_buffers_set.add(field)
