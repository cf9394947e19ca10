"""What every weight generator shares: fitting a zoo's weight space, the template check, saving and loading.

A generator file is one ``torch.save`` of plain tensors, numbers, strings, lists and dicts, written atomically
(:func:`nngraph.io.atomic_write`) and read with ``torch.load(weights_only=True)``, so loading cannot run code.
"""
from __future__ import annotations

import abc
import io
import pickle
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from nngraph.convert import GraphMismatchError
from nngraph.errors import CheckpointError
from nngraph.io import atomic_write

from .condition import ConditionEncoder
from .normalize import TensorStats
from .space import WeightSpace

__all__ = ["WeightGenerator", "register_generator", "GENERATORS", "load_generator", "FORMAT"]

#: Generator classes by the name stored in their files.
GENERATORS: dict[str, type["WeightGenerator"]] = {}
FORMAT = "nngraph-weight-generator"
VERSION = 1


def register_generator(name: str):
    """Class decorator: store the class under ``name`` (the ``kind`` of its files); refuses duplicates."""
    def wrap(cls):
        if name in GENERATORS:
            raise ValueError(f"a generator named {name!r} is already registered ({GENERATORS[name].__name__})")
        cls.kind = name
        GENERATORS[name] = cls
        return cls
    return wrap


class WeightGenerator(abc.ABC):
    """Base of the generators: fitted on graphs of one architecture (the template), samples graphs of it.

    Subclasses implement :meth:`fit` (calling :meth:`prepare`) and :meth:`sample` (calling
    :meth:`check_template`), and store what they learned through :meth:`extra_state` / :meth:`load_extra_state`.
    """

    kind: ClassVar[str] = ""

    def __init__(self):
        self.space: WeightSpace | None = None
        self.stats: TensorStats | None = None
        self.condition = ConditionEncoder("none")

    # ------------------------------------------------------------ fitting
    def prepare(self, graphs: Sequence[Data], conditions, template: nn.Module,
                example_inputs: Sequence[Tensor] | Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Build the weight space of ``template``, check every graph against it, fit the per-tensor statistics and
        the condition encoder. Returns the weight vectors ``(M, D)`` and the condition values ``(M,)`` (or ``None``).

        Raises:
            GraphMismatchError: naming the first graph of another architecture.
        """
        if not isinstance(template, nn.Module):
            raise TypeError(f"template must be the architecture as an nn.Module (any weights), got "
                            f"{type(template).__name__}")
        graphs = list(graphs)
        if not graphs:
            raise ValueError("fit needs at least one graph")
        space = WeightSpace.of(template, example_inputs)
        for i, g in enumerate(graphs):
            space.check(g, what=f"graphs[{i}]")
        flat = space.flatten(graphs).to(torch.float32)  # (M, D)
        if not bool(torch.isfinite(flat).all()):
            bad = int((~torch.isfinite(flat)).any(1).nonzero()[0])
            raise ValueError(f"graphs[{bad}] holds NaN or Inf weights; drop it from the zoo")
        self.space = space
        self.stats = TensorStats.fit(flat, space.groups)
        self.condition = ConditionEncoder.fit(conditions, len(graphs))
        values = None if conditions is None else self.condition.values(conditions, len(graphs))
        return flat, values

    @property
    def fitted(self) -> bool:
        return self.space is not None

    def check_template(self, template: Data | nn.Module) -> None:
        """Raise :class:`~nngraph.GraphMismatchError` (one line) unless ``template`` is the architecture the generator
        was fitted on; ``RuntimeError`` if it was not fitted."""
        if self.space is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted: call fit(graphs, conditions, template=...) "
                               "or load a fitted one")
        self.space.check(template)

    @abc.abstractmethod
    def fit(self, graphs: Sequence[Data], conditions=None, *, template: nn.Module, **options):
        """Fit the generator on ``graphs`` of one architecture (``template``), with one condition per graph."""

    @abc.abstractmethod
    def sample(self, template: Data | nn.Module, n: int, condition=None, **options) -> list[Data]:
        """``n`` new graphs of ``template``'s architecture, under ``condition``."""

    # ------------------------------------------------------------ storage
    def settings(self) -> dict[str, Any]:
        """The constructor's arguments (JSON-able)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """What a subclass learned beyond the space, statistics and condition (plain tensors and values)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str) -> None:
        """Write the fitted generator to ``path`` (atomically); :func:`load_generator` reads it back."""
        if self.space is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted; there is nothing to save")
        state = {"format": FORMAT, "version": VERSION, "kind": self.kind, "settings": self.settings(),
                 "space": self.space.state(), "stats": self.stats.state(), "condition": self.condition.state(),
                 "extra": self.extra_state()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str) -> "WeightGenerator":
        """The generator saved at ``path`` (of this class, or of any when called on the base)."""
        out = load_generator(path)
        if cls is not WeightGenerator and not isinstance(out, cls):
            raise CheckpointError(f"{path} holds a {type(out).__name__}, not a {cls.__name__}")
        return out

    def __repr__(self) -> str:
        fitted = f"space={self.space!r}, condition={self.condition.kind!r}" if self.space is not None else "not fitted"
        return f"{type(self).__name__}({fitted})"


def load_generator(path: str) -> WeightGenerator:
    """Read a generator file with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: one line naming ``path`` when it is not a generator file or holds objects other
            than tensors and plain values.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds objects other than tensors and plain values; generator files are "
                              "read with torch.load(weights_only=True), which never unpickles code") from None
    except Exception as err:
        raise CheckpointError(f"{path} is not a generator file ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a weight-generator file of nngraph (no format {FORMAT!r})")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} is a generator file of format version {state.get('version')}; this nngraph "
                              f"reads version {VERSION}")
    kind = state.get("kind")
    if kind not in GENERATORS:
        raise CheckpointError(f"{path}: Could not resolve generator {kind!r} among choices {sorted(GENERATORS)}")
    gen = GENERATORS[kind](**state["settings"])
    try:
        gen.space = WeightSpace.from_state(state["space"])
        gen.stats = TensorStats.from_state(state["stats"])
        gen.condition = ConditionEncoder.from_state(state["condition"])
        gen.load_extra_state(state["extra"])
    except (KeyError, ValueError, RuntimeError, TypeError, GraphMismatchError) as err:
        raise CheckpointError(f"{path} is a damaged generator file ({type(err).__name__}: {err})") from None
    return gen
