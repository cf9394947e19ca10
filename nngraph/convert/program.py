"""The module of a ``torch.export`` program (``.pt2``), as nngraph converts and loads it.

``ExportedProgram.module()`` gives the program unlifted: a GraphModule of ATen operations that reads
the parameters as attributes, plus hooks and a guards submodule that check its inputs. A plain
:class:`torch.fx.GraphModule` of the same graph computes the same function without them, and
:func:`nngraph.to_graph` converts it through ``torch.export`` (:func:`nngraph.convert.trace.trace`).

:func:`load_program` is the public way in: a ``.pt2`` file (``torch.export.save``) to that module, its example
inputs in ``module.example_inputs``; :func:`read_program` loads the :class:`torch.export.ExportedProgram`
itself, with a one-line :class:`~nngraph.ProgramError` (naming any custom operator that is not registered)
instead of torch's logged tracebacks.
"""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import warnings
import zipfile
from typing import IO, Iterator

import torch
from torch import fx

from nngraph.errors import ProgramError

__all__ = ["load_program", "read_program", "program_module", "program_inputs", "module_and_inputs"]

#: torch.export's message for an operator it cannot resolve when deserializing (torch 2.5 - 2.13).
_UNRESOLVED = re.compile(r"failed to resolve (torch\.ops\.[\w.]+?)(?:\.default)? to an operator", re.IGNORECASE)
#: an operator target in the serialized graph (``models/*.json``)
_TARGET = re.compile(r'"target":\s*"torch\.ops\.(\w+)\.(\w+)\.(\w+)"')


def load_program(path: str | os.PathLike | IO[bytes]) -> fx.GraphModule:
    """A ``torch.export`` program saved with ``torch.export.save`` (a ``.pt2`` file), as a module that
    :func:`~nngraph.to_graph`, :func:`~nngraph.from_graph`, :func:`~nngraph.verify` and the functional API accept.

    The module computes the program's function; its ``state_dict()`` has the keys of the model that was
    exported. The program's example inputs are ``module.example_inputs`` (a tuple of tensors, or ``None`` if
    it recorded none or keyword ones): an ATen graph has no first layer to make inputs up from, so pass them
    to ``to_graph`` (``to_graph(torch.export.load(path))`` does that by itself).

    A ``.pt2`` is code (``torch.export.load`` unpickles parts of it): load only files you trust.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ProgramError: if the file is not a ``torch.export`` program this process can load, in one line:
            another kind of file, or one calling custom operators that are not registered (imported) here,
            which it names.
    """
    program = read_program(path)
    module = program_module(program)
    module.example_inputs = program_inputs(program)
    return module


def read_program(path: str | os.PathLike | IO[bytes]) -> torch.export.ExportedProgram:
    """``torch.export.load(path)``, quietly: torch's warnings and logged tracebacks are kept back and a file it
    cannot load raises one :class:`~nngraph.ProgramError` line (see :func:`load_program`)."""
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "the .pt2 file")
    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file (a torch.export program, .pt2 of torch.export.save)")
    if not isinstance(path, (str, os.PathLike)):  # read once: torch seeks in it, and we may read it again
        path = io.BytesIO(path.read())
    with _quiet_torch_export() as logged:
        try:
            return torch.export.load(path)
        except Exception as err:  # noqa: BLE001 - a zip of another kind, a truncated file, an unknown operator
            error = err
    missing = _unregistered_operators(path, [error, *logged])
    if missing:
        raise ProgramError(
            f"{name} calls custom operator{'s' if len(missing) > 1 else ''} {', '.join(missing)} not registered "
            "in this process: import the Python module that defines "
            f"{'them' if len(missing) > 1 else 'it'} (torch.library) before loading the program") from None
    first = (str(error).strip().splitlines() or [""])[0][:200]
    raise ProgramError(f"{name} is not a torch.export program (.pt2 of torch.export.save) that torch "
                       f"{torch.__version__} can load ({type(error).__name__}: {first})") from None


def program_inputs(program: torch.export.ExportedProgram) -> tuple[torch.Tensor, ...] | None:
    """The positional example inputs ``program`` was exported with, or ``None`` if it has none, keyword
    ones or any that is not a tensor."""
    args, kwargs = program.example_inputs or ((), {})
    if kwargs or not args or not all(isinstance(t, torch.Tensor) for t in args):
        return None
    return tuple(args)


def module_and_inputs(program: torch.export.ExportedProgram, example_inputs=None):
    """What :func:`nngraph.to_graph` converts for ``program``: its module (:func:`program_module`) and
    ``example_inputs``, else the program's own (:func:`program_inputs`)."""
    return program_module(program), example_inputs if example_inputs is not None else program_inputs(program)


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


class _Keep(logging.Filter):
    """Keeps back every record of one logger, remembering the exceptions they carry."""

    def __init__(self):
        super().__init__()
        self.errors: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])
        return False


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[list[BaseException]]:
    """Hold back what ``torch.export.load`` prints on a file it cannot read (a logged traceback per failure, and
    Python warnings); yields the list of the exceptions it logged."""
    logger = logging.getLogger("torch.export")
    keep = _Keep()
    logger.addFilter(keep)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield keep.errors
    finally:
        logger.removeFilter(keep)


def _unregistered_operators(path, errors: list[BaseException]) -> list[str]:
    """``namespace::name`` of the operators the program calls that this process does not know: those its
    serialized graphs name and ``torch.ops`` cannot resolve, else those torch's errors name."""
    found: list[str] = []
    try:
        if not isinstance(path, (str, os.PathLike)):
            path.seek(0)
        with zipfile.ZipFile(path) as archive:
            for entry in archive.namelist():
                if "/models/" in entry and entry.endswith(".json") or entry.startswith("models/"):
                    text = archive.read(entry).decode("utf-8", "replace")
                    for ns, op, _overload in _TARGET.findall(text):
                        if not _resolves(ns, op) and f"{ns}::{op}" not in found:
                            found.append(f"{ns}::{op}")
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError):
        pass
    if found:
        return found
    for error in errors:
        chain = error
        while chain is not None:
            for target in _UNRESOLVED.findall(str(chain)):
                parts = target.split(".")  # torch.ops.<ns>.<op>[.<overload>]
                name = f"{parts[2]}::{parts[3]}" if len(parts) >= 4 else target
                if name not in found:
                    found.append(name)
            chain = chain.__cause__ or chain.__context__
    return found


def _resolves(namespace: str, op: str) -> bool:
    """Whether ``torch.ops.<namespace>.<op>`` is a registered operator in this process."""
    try:
        getattr(getattr(torch.ops, namespace), op)
        return True
    except (AttributeError, RuntimeError):
        return False
