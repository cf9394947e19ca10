"""Architectures of imported zoos that the spec families of :mod:`nngraph.zoo.specs` do not describe.

A manifest ``spec`` of an imported model is one of the built-in families or one of:

``factory``       ``factory`` (``"package.module:function"``), ``kwargs`` (JSON object), ``inputs``
                  -> ``function(**kwargs)``.
``transformers``  ``class`` (a model class of the ``transformers`` package), ``config`` (the JSON of
                  its ``config.json``), ``inputs`` -> ``transformers.<class>(<class>.config_class(**config))``.
``program``       ``file`` (a ``torch.export`` program, ``.pt2``, stored in the zoo: ``architecture/<sha256>.pt2``),
                  ``sha256`` (of that file), ``inputs`` -> the unlifted program as a plain ``torch.fx.GraphModule``
                  (:func:`nngraph.convert.program.program_module`).

``inputs`` lists the example inputs the converter traces with: ``[{"shape": [...], "dtype": "float32",
"high": n}]`` (``high``: integer inputs are drawn below it, e.g. a vocabulary size).

Manifests are data from strangers. Calling a factory runs code a manifest names, so it runs only if
the user trusts it: the process that imports it (:func:`trust`), or the names in the environment
variable :data:`TRUST_ENV` (``NNGRAPH_TRUSTED_CODE="pkg.mod:fn,other.mod:fn"``, ``*`` for any). A
``.pt2`` is code too (``torch.export.load`` unpickles it): a program is trusted by the name
``sha256:<hex digest of the file>`` (:func:`program_name`), and its file is loaded only if its sha256 is
the manifest's, so a file swapped in the zoo is refused even where its name (or ``*``) is trusted. A
``transformers`` spec is data (a class name that must be a ``PreTrainedModel`` of the installed
package, and a config); it is built on the meta device first so its size is checked before anything
is allocated.
"""
from __future__ import annotations

import io
import os
import re
from typing import Any

import torch
from torch import nn

from nngraph.errors import SpecError
from nngraph.factories import FACTORY, resolve_factory  # re-exported: the one resolver of --factory
from nngraph.zoo.files import inside, read_with_sha256
from nngraph.zoo.specs import DEFAULT_LIMITS, FAMILIES, SpecLimits, build_model, check_spec

__all__ = ["IMPORTED_FAMILIES", "TRUST_ENV", "PROGRAM_DIR", "trust", "program_name", "check_zoo_spec",
           "build_zoo_model", "example_inputs", "resolve_factory", "load_program"]

IMPORTED_FAMILIES = ("factory", "transformers", "program")
TRUST_ENV = "NNGRAPH_TRUSTED_CODE"
#: Where an import stores the ``.pt2`` of a ``program`` architecture, relative to the zoo.
PROGRAM_DIR = "architecture"
SHA256 = re.compile(r"[0-9a-f]{64}")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32}
_TRUSTED: set[str] = set()


def trust(name: str) -> None:
    """Let this process call the factory ``name`` when a manifest names it."""
    _TRUSTED.add(name)


def program_name(digest: str) -> str:
    """The name a ``torch.export`` program is trusted by: ``sha256:<hex digest of its .pt2 file>``."""
    return f"sha256:{digest}"


def _trusted(name: str) -> bool:
    env = {t.strip() for t in os.environ.get(TRUST_ENV, "").split(",") if t.strip()}
    return name in _TRUSTED or name in env or "*" in env


def _refuse(what: str, name: str) -> SpecError:
    return SpecError(f"the zoo builds its models with {what} {name!r}, code nngraph runs only if you trust it: "
                     f"set {TRUST_ENV}={name} (comma-separated, '*' for any) if you know where the zoo comes from")


def _check_inputs(spec: dict, limits: SpecLimits) -> None:
    inputs = spec.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise SpecError(f"{spec['family']} spec needs 'inputs', a non-empty list of {{'shape', 'dtype'}}")
    for item in inputs:
        shape = item.get("shape") if isinstance(item, dict) else None
        if (not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                                    for s in shape)):
            raise SpecError(f"{spec['family']} spec: input {item!r} needs 'shape', a list of positive ints")
        if item.get("dtype", "float32") not in DTYPES:
            raise SpecError(f"Could not resolve input dtype {item.get('dtype')!r} among choices {sorted(DTYPES)}")
        if int(torch.tensor(shape).prod()) > limits.max_input_elements:
            raise SpecError(f"{spec['family']} spec: input of shape {shape} is over max_input_elements "
                            f"{limits.max_input_elements}")


def check_zoo_spec(spec: Any, limits: SpecLimits | None = None) -> None:
    """Validate a manifest spec of any family (built-in: :func:`~nngraph.zoo.specs.check_spec`).

    Imported families are checked for their fields only; their size is checked when built.

    Raises:
        SpecError: naming the bad field.
    """
    if not isinstance(spec, dict) or spec.get("family") not in IMPORTED_FAMILIES:
        check_spec(spec, limits)
        return
    limits = limits or DEFAULT_LIMITS
    family = spec["family"]
    _check_inputs(spec, limits)
    if family == "factory":
        if not isinstance(spec.get("factory"), str) or not FACTORY.fullmatch(spec["factory"]):
            raise SpecError(f"factory spec: 'factory' must be 'package.module:function', got {spec.get('factory')!r}")
        if not isinstance(spec.get("kwargs", {}), dict):
            raise SpecError("factory spec: 'kwargs' must be a JSON object")
    elif family == "program":
        _check_program_fields(spec)
    else:
        if not isinstance(spec.get("class"), str) or not spec["class"].isidentifier():
            raise SpecError(f"transformers spec: 'class' must be a class name, got {spec.get('class')!r}")
        if not isinstance(spec.get("config"), dict):
            raise SpecError("transformers spec: 'config' must be a JSON object (a config.json)")


def _check_program_fields(spec: dict) -> None:
    """``file``: a relative path into the zoo (``/``-separated, no ``..``, ending in ``.pt2``); ``sha256``."""
    file = spec.get("file")
    parts = file.split("/") if isinstance(file, str) else [""]
    if (not isinstance(file, str) or not file.endswith(".pt2") or "\\" in file or "\x00" in file or ":" in file
            or any(p in ("", ".", "..") for p in parts)):
        raise SpecError(f"program spec: 'file' must be a relative path inside the zoo ending in .pt2 (no '..', "
                        f"not absolute, e.g. '{PROGRAM_DIR}/<sha256>.pt2'), got {file!r}")
    if not isinstance(spec.get("sha256"), str) or not SHA256.fullmatch(spec["sha256"]):
        raise SpecError(f"program spec: 'sha256' must be 64 lowercase hex digits, got {spec.get('sha256')!r}")


def _check_size(model: nn.Module, family: str, limits: SpecLimits) -> None:
    n = sum(p.numel() for p in model.parameters())
    if n > limits.max_parameters:
        raise SpecError(f"{family} model has {n} parameters > max_parameters {limits.max_parameters}; pass larger "
                        "nngraph.zoo.specs.SpecLimits(...) if the model is meant to be this big")


def _transformers_class(name: str):
    try:
        import transformers
    except ImportError:
        raise SpecError("the zoo's models are transformers models: pip install transformers") from None
    cls = getattr(transformers, name, None)
    if not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedModel):
        raise SpecError(f"{name!r} is not a model class of transformers (e.g. 'BertModel')")
    return cls


def build_transformers(name: str, config: dict[str, Any], limits: SpecLimits | None = None) -> nn.Module:
    """``transformers.<name>`` from a config dict, size-checked on the meta device first."""
    cls = _transformers_class(name)
    config = {k: v for k, v in config.items() if k not in ("auto_map", "trust_remote_code")}
    cfg = cls.config_class(**config)
    with torch.device("meta"):
        _check_size(cls(cfg), "transformers", limits or DEFAULT_LIMITS)
    return cls(cfg).eval()


def _program_bytes(spec: dict[str, Any], root: str | None) -> bytes:
    """The bytes of the spec's ``.pt2`` in the zoo ``root``, if they have the spec's sha256."""
    if root is None:
        raise SpecError("a program spec names a file in its zoo: build it with the zoo directory "
                        "(Zoo(root).build(spec) or build_zoo_model(spec, root))")
    try:
        path = inside(root, spec["file"], "program spec: 'file'")
    except ValueError as err:
        raise SpecError(f"{err}; refusing to read it") from None
    try:
        data, digest = read_with_sha256(path)
    except OSError as err:
        raise SpecError(f"the zoo's torch.export program {path} is unreadable ({err}); re-import the zoo") from None
    if digest != spec["sha256"]:
        raise SpecError(f"the zoo's torch.export program {path} has sha256 {digest}, the manifest says "
                        f"{spec['sha256']}: the file was replaced or damaged, and nngraph does not load it "
                        "(trusting it by name or '*' does not change that); re-import the zoo from the original .pt2")
    return data


def load_program(spec: dict[str, Any], root: str | None) -> nn.Module:
    """The module of a ``program`` spec of the zoo ``root``: refused unless its name
    (:func:`program_name`) is trusted and its file has the spec's sha256, then ``torch.export.load``-ed
    (from the checked bytes) and unlifted (:func:`nngraph.convert.program.program_module`)."""
    from nngraph.convert.program import program_module

    name = program_name(spec["sha256"])
    if not _trusted(name):
        raise _refuse("the torch.export program", name)
    data = _program_bytes(spec, root)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - a .pt2 torch.export cannot read, whatever the reason
        first = (str(err).splitlines() or [""])[0][:200]
        raise SpecError(f"the zoo's torch.export program {spec['file']} cannot be loaded by torch "
                        f"{torch.__version__} ({type(err).__name__}: {first}); export and import the model again "
                        "with this version") from None
    return program_module(program)


def build_zoo_model(spec: dict[str, Any], root: str | None = None, limits: SpecLimits | None = None) -> nn.Module:
    """The (randomly initialised) module of a manifest spec of any family, in eval mode.

    ``root``, the zoo directory, is needed for a ``program`` spec (its ``.pt2`` is stored there).

    Raises:
        SpecError: if the spec is malformed, over ``limits``, runs code nobody trusted, or names a
            program file that is missing or not the one the manifest's sha256 describes.
    """
    family = spec.get("family") if isinstance(spec, dict) else None
    if family in FAMILIES or family not in IMPORTED_FAMILIES:
        return build_model(spec, limits)
    check_zoo_spec(spec, limits)
    limits = limits or DEFAULT_LIMITS
    if family == "transformers":
        return build_transformers(spec["class"], spec["config"], limits)
    if family == "program":
        model = load_program(spec, root)
        _check_size(model, family, limits)
        return model.eval()
    if not _trusted(spec["factory"]):
        raise _refuse("the factory", spec["factory"])
    model = resolve_factory(spec["factory"])(**spec.get("kwargs", {}))
    if not isinstance(model, nn.Module):
        raise SpecError(f"{family} spec gave a {type(model).__name__}, not a torch.nn.Module")
    _check_size(model, family, limits)
    return model.eval()


def example_inputs(spec: dict[str, Any], batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Example inputs of an imported spec (``inputs``, with the batch size replaced by ``batch``)."""
    out = []
    g = torch.Generator().manual_seed(0)
    for item in spec["inputs"]:
        shape = [batch, *item["shape"][1:]]
        dtype = DTYPES[item.get("dtype", "float32")]
        if dtype.is_floating_point:
            out.append(torch.zeros(shape, dtype=dtype))
        else:
            out.append(torch.randint(0, int(item.get("high", 2)), shape, generator=g, dtype=dtype))
    return tuple(out)
