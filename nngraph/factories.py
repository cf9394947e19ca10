"""The functions a ``--factory package.module:function`` names: imported from ``sys.path`` or, as ``python -m``
does, from the current directory, so a ``mymodels.py`` next to the user's files is found.

One resolver for every place that takes a factory: ``nngraph convert / inspect / verify --factory``
(:func:`nngraph.cli.load_model`), ``nngraph zoo import --factory`` and the zoos it builds
(:func:`nngraph.zoo.architectures.build_zoo_model`).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Callable

from nngraph.errors import SpecError

__all__ = ["FACTORY", "resolve_factory"]

#: ``package.module:function``: dotted identifiers, a colon, an identifier.
FACTORY = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")


def resolve_factory(name: str, what: str = "factory") -> Callable:
    """The function ``"package.module:function"`` names, imported from ``sys.path`` or the current directory.

    The current directory is put on ``sys.path`` for the import only (unless it, or ``""``, is there already),
    so a library caller's ``sys.path`` is left as it was. ``what`` starts the error messages (``"--factory"`` for
    a command-line flag).

    Raises:
        SpecError: one line naming the factory: not ``package.module:function``, its module cannot be imported
            (with the import error and the directory searched), it has no such attribute, or that is not callable.
    """
    if not isinstance(name, str) or not FACTORY.fullmatch(name):
        raise SpecError(f"{what} {name!r} is not package.module:function")
    module_name, _, attr = name.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:  # as `python -m` does: a module next to the user's files imports
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SpecError(f"{what} {name!r}: cannot import {module_name!r} ({err}); is it on PYTHONPATH or in the "
                        f"current directory ({cwd})?") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    fn = getattr(module, attr, None)
    if fn is None:
        raise SpecError(f"{what} {name!r}: {module_name} has no function {attr!r}")
    if not callable(fn):
        raise SpecError(f"{what} {name!r}: {module_name}.{attr} is a {type(fn).__name__}, not a function")
    return fn
