"""Import models trained elsewhere into a zoo the tasks run on: ``python -m nngraph.zoo import SRC --out ZOO``.

An import is a zoo build (:mod:`nngraph.zoo.jobs`): it holds the build lock of ``ZOO``, writes every
file atomically, stores each model as safetensors with its sha256 in the manifest, and a rerun with the
same arguments skips the models already imported. Before anything is written, the table, the labels or
accuracies, the splits and the model ids are checked, and one model is converted with
:func:`nngraph.to_graph` and read back with :func:`nngraph.from_graph`, which must give its tensors bit
for bit; a failure there leaves nothing behind. Every model whose tensors do not fit the architecture
(a missing or extra key, a wrong shape) is left out and reported, file by file, in one
:class:`~nngraph.errors.ZooError` at the end; the others are stored, so a rerun after fixing (or
removing) the files imports only those.

``zoo.json`` is written last, once every model of the source is in the manifest. Until then the zoo is
an unfinished import (its settings in ``.import.json``): :class:`~nngraph.zoo.Zoo` and every reader
refuse it with an error saying so, and rerunning the import finishes it (a kill, ``max_models`` or
files to fix). Models already stored keep their splits when the source lost files in between.

Tensors of another dtype than the architecture's (a float64, int64 or bool checkpoint of a float32
model) are cast, and one line per dtype says how many (``casts="refuse"``, ``--no-cast``: refused,
naming the file and the tensor). Symlinks under ``SRC`` are refused, naming them, unless
``follow_symlinks=True`` (``--follow-symlinks``): nothing outside the source folder is read by accident.

Table (``table=`` / ``--table``): a CSV (``.csv``, ``.csv.gz``; cells that are numbers become numbers) or
a JSON file (a list of objects, or an object of objects keyed by ``file``) with one row per model file:

=================  =======================================================================================
``file``           required (or ``path``): the file's path relative to ``SRC``, its name, or its stem;
                   every file has one row (two rows for a file, or a row that fits two files, is an error)
``test_acc``       required for a classifier zoo: a number, the accuracy-prediction target
``label``          required for an INR zoo unless ``label_N`` folders give it: an integer class >= 0
``split``          optional: ``train``, ``val`` or ``test`` (else drawn with ``split``; by ``run`` if given)
``run``            optional: the training run; the checkpoints of a run share a split
other columns      stored in the model's manifest entry (e.g. ``train_acc``, ``epoch``, ``lr``)
=================  =======================================================================================

The import sets ``id``, ``index``, ``sha256``, ``spec``, ``family``, ``source`` and ``image_index``
itself (:data:`~nngraph.zoo.layouts.RESERVED_COLUMNS`): a column of one of these names is refused, naming
it (model ids come from the file paths, unique by construction and checked before any write).

The architecture is a spec of :mod:`nngraph.zoo.specs` (what the published layouts map to), a factory
``package.module:function`` (called with ``factory_kwargs``; its module is found on ``sys.path`` or in
the current directory), a ``transformers`` config with its model class, or a ``torch.export`` program
(``.pt2`` of ``torch.export.save``), copied into the zoo as ``architecture/<sha256>.pt2``; see
:mod:`nngraph.zoo.architectures`. A factory or program given to the
import is trusted by the importing process; a later process reading the zoo runs it only if
``NNGRAPH_TRUSTED_CODE`` names it (a program: ``sha256:<hex>``). The state dicts of a program's
architecture have the keys of the module that was exported (``model.state_dict()``). The layouts read
are those of :mod:`nngraph.zoo.layouts`. INR zoos record :class:`~nngraph.zoo.inr_meta.INRMetadata` in
``zoo.json``, and get an ``images.safetensors`` of the images their INRs render on that grid (what the
``pixels`` baseline of ``tasks.inr_classification`` reads).
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
import os
from collections import Counter
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save

from nngraph.errors import SpecError, ZooError
from nngraph.io import atomic_write
from nngraph.zoo import layouts as L
from nngraph.zoo.architectures import (PROGRAM_DIR, build_zoo_model, check_zoo_spec, example_inputs, program_name,
                                       trust)
from nngraph.zoo.inr_meta import INRMetadata
from nngraph.zoo.jobs import Unit, building, run_units
from nngraph.zoo.seeds import SPLITS, random_split
from nngraph.zoo.specs import SpecLimits
from nngraph.zoo.storage import (CONFIG, STAGED, Zoo, check_model_id, read_config, read_manifests, read_with_sha256,
                                  sha256_file, state_mismatch, write_config)

__all__ = ["import_zoo", "architecture_spec", "check_state"]

CHUNK = 64
IMAGES = "images.safetensors"
#: Reported at most this many bad files by name (the count covers all).
MAX_LISTED = 20


def _inputs_of(tensors: Sequence[torch.Tensor], high: int | None = None) -> list[dict[str, Any]]:
    out = []
    for t in tensors:
        item = {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
        if not t.dtype.is_floating_point:
            item["high"] = int(high if high is not None else int(t.max()) + 1)
        out.append(item)
    return out


def _shape_inputs(input_shape: Sequence[int] | None, input_dtype: str, high: int | None) -> list[dict] | None:
    if input_shape is None:
        return None
    item = {"shape": [2, *[int(s) for s in input_shape]], "dtype": input_dtype}
    if not input_dtype.startswith("float"):
        item["high"] = int(high or 2)
    return [item]


def _program_inputs(program: str, data: bytes) -> list[dict[str, Any]]:
    """The ``inputs`` of a spec from the example inputs the program ``data`` (of file ``program``) was
    exported with."""
    try:
        exported = torch.export.load(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - a zip of another kind, a truncated file: torch.export refuses
        first = (str(err).splitlines() or [""])[0][:200]
        raise ZooError(f"{program} is not a torch.export program (.pt2 of torch.export.save): "
                       f"{type(err).__name__}: {first}") from None
    args, kwargs = exported.example_inputs or ((), {})
    if kwargs:
        raise ZooError(f"{program} was exported with keyword example inputs {sorted(kwargs)}; nngraph calls the "
                       "model with positional tensors only: export it with positional inputs (args=(x, ...))")
    if not args or not all(isinstance(t, torch.Tensor) for t in args):
        raise ZooError(f"{program} records no example inputs of tensors only; give the input shape "
                       "(input_shape / --input-shape, without the batch dimension)")
    return _inputs_of(args)


def _program_spec(program: str, input_shape: Sequence[int] | None, input_dtype: str) -> dict[str, Any]:
    """The spec of a ``.pt2``, trusted by this process (its ``inputs``: ``input_shape``, else the
    program's example inputs)."""
    try:
        data, digest = read_with_sha256(program)
    except OSError as err:
        raise ZooError(f"--program {program} is unreadable ({err})") from None
    inputs = _shape_inputs(input_shape, input_dtype, None) or _program_inputs(program, data)
    trust(program_name(digest))
    return {"family": "program", "file": f"{PROGRAM_DIR}/{digest}.pt2", "sha256": digest, "inputs": inputs}


def _store_program(out: str, program: str, spec: dict[str, Any]) -> None:
    """Copy ``program`` to ``out/<spec file>`` (atomically), unless it is there already; the copy must
    have the spec's sha256 (the file may not change during the import)."""
    path = os.path.join(out, spec["file"])
    if os.path.exists(path) and sha256_file(path) == spec["sha256"]:
        return
    with open(program, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        raise ZooError(f"{program} changed during the import (its sha256 is no longer {spec['sha256']}); rerun it")
    atomic_write(path, data)


def architecture_spec(out: str, *, spec: dict | str | None = None, factory: str | None = None,
                      factory_kwargs: dict | None = None, hf_config: str | None = None, hf_class: str | None = None,
                      program: str | None = None, input_shape: Sequence[int] | None = None,
                      input_dtype: str = "float32") -> dict[str, Any] | None:
    """The manifest spec of the architecture given in one of the four ways (``None`` if none is given).

    A factory or a program named here is trusted by this process
    (:func:`~nngraph.zoo.architectures.trust`). A program's spec names its copy in the zoo ``out``
    (``architecture/<sha256>.pt2``), which :func:`import_zoo` writes; its ``inputs`` are ``input_shape``
    if given, else the program's example inputs.

    Raises:
        ZooError: if more than one way or none of the needed inputs is given, or for a ``.pt2`` that is
            not a ``torch.export`` program or was exported with keyword inputs.
    """
    given = [n for n, v in (("spec", spec), ("factory", factory), ("hf_config", hf_config), ("program", program))
             if v is not None]
    if len(given) > 1:
        raise ZooError(f"give the architecture one way, got {given}")
    if spec is not None:
        if isinstance(spec, str):
            text = open(spec, encoding="utf-8").read() if os.path.exists(spec) else spec
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as err:
                raise ZooError(f"--spec {spec!r} is neither a JSON file nor JSON ({err})") from None
        return spec
    if factory is not None:
        inputs = _shape_inputs(input_shape, input_dtype, None)
        if inputs is None:
            raise ZooError("a factory architecture needs the model's input shape (input_shape / --input-shape, "
                           "without the batch dimension), so that it can be traced")
        trust(factory)
        return {"family": "factory", "factory": factory, "kwargs": dict(factory_kwargs or {}), "inputs": inputs}
    if hf_config is not None:
        if hf_class is None:
            raise ZooError("a transformers config needs its model class (hf_class / --hf-class, e.g. BertModel)")
        path = os.path.join(hf_config, "config.json") if os.path.isdir(hf_config) else hf_config
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        config = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version", "auto_map")}
        inputs = _shape_inputs(input_shape, input_dtype if input_shape else "int64", config.get("vocab_size"))
        if inputs is None:
            if "vocab_size" in config:
                inputs = [{"shape": [2, 8], "dtype": "int64", "high": int(config["vocab_size"])}]
            else:
                c, s = int(config.get("num_channels", 3)), int(config.get("image_size", 32))
                inputs = [{"shape": [2, c, s, s], "dtype": "float32"}]
        return {"family": "transformers", "class": hf_class, "config": config, "inputs": inputs}
    if program is not None:
        return _program_spec(program, input_shape, input_dtype)
    return None


def check_state(state: dict[str, torch.Tensor], model: torch.nn.Module, origin: str,
                casts: list[tuple[str, torch.dtype, torch.dtype]] | None = None,
                allow_casts: bool = True) -> dict[str, torch.Tensor]:
    """``state`` cast to ``model``'s dtypes if its keys and shapes are ``model.state_dict()``'s; else
    :class:`ZooError` naming ``origin`` with every missing key, extra key and wrong shape.

    Every cast ``(key, from dtype, to dtype)`` is appended to ``casts``; with ``allow_casts=False`` a tensor
    of another dtype is a :class:`ZooError` naming it instead.
    """
    expected = model.state_dict()
    problems = state_mismatch(state, expected)
    if problems:
        raise ZooError(f"{origin} does not match the architecture: {problems}")
    cast = [(k, state[k].dtype, v.dtype) for k, v in expected.items() if state[k].dtype != v.dtype]
    if cast and not allow_casts:
        k, have, want = cast[0]
        raise ZooError(f"{origin}: tensor {k!r} is {str(have).replace('torch.', '')}, the architecture's is "
                       f"{str(want).replace('torch.', '')} ({len(cast)} tensors of another dtype); refused by "
                       "--no-cast (casts='refuse'): convert the file, or import without it to cast and count them")
    if casts is not None:
        casts.extend(cast)
    return {k: state[k].detach().to(dtype=v.dtype).contiguous() for k, v in expected.items()}


def _round_trip(model: torch.nn.Module, fresh: torch.nn.Module, spec: dict, origin: str) -> None:
    """Convert ``model`` and read it back into ``fresh``: every floating-point tensor must come back bit
    for bit. (A graph holds the weights, not integer buffers such as BatchNorm's ``num_batches_tracked``,
    which a trained model and a fresh one differ in; the zoo stores those in the weights file.)"""
    from nngraph import from_graph, to_graph

    inputs = example_inputs(spec) if "inputs" in spec else None
    if inputs is None:
        from nngraph.data.zoo_dataset import example_inputs_for_spec

        inputs = example_inputs_for_spec(spec)
    try:
        back = from_graph(to_graph(model, inputs), fresh, inputs)
    except Exception as err:  # noqa: BLE001 - reported with the file it came from
        raise ZooError(f"{origin}: converting the model to a graph and back failed ({type(err).__name__}: {err})") from err
    want, got = model.state_dict(), back.state_dict()
    changed = [k for k, v in want.items() if v.is_floating_point() and (k not in got or not torch.equal(v, got[k]))]
    if changed:
        raise ZooError(f"{origin}: the graph round trip changed {changed}; the converter does not represent "
                       "this architecture exactly")


def _group(item: L.Item) -> str:
    return str(item.fields.get("run", item.model_id))


def _where(item: L.Item) -> str:
    return f"{item.row} ({item.origin})" if item.row else item.origin


def _assign_splits(items: list[L.Item], fractions: Sequence[float], val_fraction: float | None, seed: int) -> None:
    """Fill missing splits: groups (``run``, else the model) without a split by ``fractions``; with
    ``val_fraction``, that share of the training groups becomes ``val`` (DWSNets ship train / test only)."""
    bad = [i for i in items if not isinstance(i.fields.get("split", "train"), str)
           or i.fields.get("split", "train") not in SPLITS]
    if bad:
        raise ZooError(f"{_where(bad[0])}: split {bad[0].fields['split']!r} is not one of {list(SPLITS)}")
    free = sorted({_group(i) for i in items if "split" not in i.fields})
    names = dict(zip(free, random_split(len(free), fractions, seed)))
    for i in items:
        i.fields.setdefault("split", names.get(_group(i), "train"))
    if val_fraction:
        train = sorted({_group(i) for i in items if i.fields["split"] == "train"})
        to_val = dict(zip(train, random_split(len(train), (1.0 - val_fraction, val_fraction, 0.0), seed + 1)))
        for i in items:
            if i.fields["split"] == "train" and to_val[_group(i)] == "val":
                i.fields["split"] = "val"


def _keep_stored_splits(items: list[L.Item], drawn: set[str], stored: list[dict[str, Any]]) -> None:
    """A resumed import whose source lost (or gained) files draws other splits: the models of a group with a
    stored model take the stored split, so no run straddles two splits."""
    by_group = {str(e.get("run", e["id"])): e["split"] for e in stored if "split" in e}
    for i in items:
        if i.model_id in drawn and _group(i) in by_group:
            i.fields["split"] = by_group[_group(i)]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_fields(source: L.Source, kind: str, src: str, table: str | None) -> None:
    """Every INR has an integer label >= 0 and every classifier a numeric ``test_acc``; the error names the
    column and the row (or file) that lacks it."""
    column, need = ("label", "an integer class >= 0") if kind == "inr" else ("test_acc", "a number")
    if kind == "inr":
        bad = [i for i in source.items if not (isinstance(i.fields.get("label"), int) and _number(i.fields["label"])
                                               and i.fields["label"] >= 0)]
    else:
        bad = [i for i in source.items if not _number(i.fields.get("test_acc"))]
    if not bad:
        return
    what = "INRs" if kind == "inr" else "classifiers"
    purpose = "the class of an INR" if kind == "inr" else "the accuracy-prediction target"
    if table and source.layout != "cnn_zoo" and not any(column in i.fields for i in source.items):
        columns = sorted({k for _, row in L.read_table_rows(table) for k in row})  # the header, not the fields
        raise ZooError(f"table {table} has no {column!r} column ({purpose}, required for {what}; its columns: "
                       f"{columns}); see `nngraph zoo import --help` or docs/zoos.md for the table format")
    first = bad[0]
    if column not in first.fields:
        how = ("give a table (--table) with a 'label' column, or label_N folders" if kind == "inr"
               else "give a table (--table) with a 'test_acc' column")
        raise ZooError(f"{len(bad)} of {len(source.items)} {what} of {src} have no {column!r} ({purpose}), e.g. "
                       f"{_where(first)}; {how}")
    raise ZooError(f"{_where(first)}: {column} is {first.fields[column]!r}, not {need} ({len(bad)} of "
                   f"{len(source.items)} {what} like this)")


def _check_ids(items: list[L.Item]) -> None:
    """Model ids are safe file names and unique, before anything is written."""
    seen: dict[str, L.Item] = {}
    for i in items:
        try:
            check_model_id(i.model_id)
        except ValueError as err:
            raise ZooError(f"{_where(i)}: {err}") from None
        if i.model_id in seen:
            raise ZooError(f"{_where(seen[i.model_id])} and {_where(i)} would both be model {i.model_id!r}; "
                           "nothing was written")
        seen[i.model_id] = i


def _read_source(src: str, layout: str, table: str | None, options: dict[str, Any],
                 follow_symlinks: bool = False) -> L.Source:
    layout = L.detect_layout(src, follow_symlinks) if layout == "auto" else layout
    readers = {"dwsnets": L.read_dwsnets, "cnn_zoo": L.read_cnn_zoo, "folder": L.read_folder}
    if layout not in readers:
        raise ZooError(f"Could not resolve layout {layout!r} among choices {list(L.LAYOUTS)}")
    accepted = set(inspect.signature(readers[layout]).parameters) - {"src", "table", "spec", "kind", "key_map",
                                                                    "follow_symlinks"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ZooError(f"the {layout} layout takes no options {unknown} (it takes {sorted(accepted)})")
    return readers[layout](src, table=table, follow_symlinks=follow_symlinks, **options)


def _render_images(out: str, inr: INRMetadata, limits: SpecLimits | None) -> None:
    """``images.safetensors``: every INR rendered on the recorded grid (pixels clamped to [0, 1])."""
    zoo = Zoo(out, limits, unfinished=True)
    h, w = inr.image_size or (16, 16)
    coords = inr.grid(h, w)  # (H*W, 2)
    images = []
    with torch.no_grad():
        for e in zoo.entries:
            values = zoo.load_model(e, verify=False)(coords)  # (H*W, C)
            images.append(values.t().reshape(-1, h, w).clamp(0, 1))  # (C, H, W)
    labels = torch.tensor([int(e["label"]) for e in zoo.entries])
    atomic_write(os.path.join(out, IMAGES), save({"images": torch.stack(images).float().contiguous(), "labels": labels}))


def _images_ok(out: str, count: int) -> bool:
    """Whether ``images.safetensors`` is readable and holds ``count`` images (a truncated or stale file is not)."""
    try:
        if not os.path.isfile(os.path.join(out, IMAGES)):  # missing, or a pipe or folder put there
            return False
        images = load_file(os.path.join(out, IMAGES))
        return len(images["images"]) == count == len(images["labels"])
    except Exception:  # noqa: BLE001 - missing, truncated, garbage, another layout: rendered again
        return False


def _check_settings(out: str, settings: dict[str, Any]) -> None:
    """Refuse to resume an import (finished: ``zoo.json``; unfinished: ``.import.json``) made with other
    settings; an unfinished one may have lost or gained files (``num_models``)."""
    def differing(path: str, ignore: tuple[str, ...] = ()) -> list[str]:
        old, new = read_config(path), json.loads(json.dumps(settings))
        return sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))

    done, staged = os.path.join(out, CONFIG), os.path.join(out, STAGED)
    if os.path.exists(done):
        diff = differing(done)
        if diff == ["num_models"]:
            raise ZooError(f"{out} holds a finished import of {read_config(done).get('num_models')} models; the "
                           f"source now holds {settings['num_models']}: import it into a new --out directory")
    elif os.path.exists(staged):
        diff = differing(staged, ("num_models",))
    else:
        if os.path.isdir(out) and any(n.startswith("manifest") for n in os.listdir(out)):
            raise ZooError(f"{out} holds a manifest but neither {CONFIG} nor {STAGED}: not an import to resume; "
                           "use a new --out directory")
        return
    if diff:
        raise ZooError(f"{out} holds a zoo built with other settings (differing: {diff}); rerun with the same "
                       "settings to resume, or use a new --out directory")


def _stage(out: str, settings: dict[str, Any]) -> None:
    if not os.path.exists(os.path.join(out, CONFIG)):
        atomic_write(os.path.join(out, STAGED), (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())


def _finish(out: str, settings: dict[str, Any]) -> None:
    """Every model is stored: ``zoo.json`` makes the zoo readable, and the staged settings go."""
    if not os.path.exists(os.path.join(out, CONFIG)):
        write_config(out, settings)
    try:
        os.remove(os.path.join(out, STAGED))
    except FileNotFoundError:
        pass


def _report_casts(casts: list[tuple[str, torch.dtype, torch.dtype]], files: dict[tuple, set[str]], log) -> None:
    counts = Counter((a, b) for _, a, b in casts)
    for (a, b), n in sorted(counts.items(), key=lambda kv: str(kv[0])):
        names = sorted(files[(a, b)])
        log(f"cast {n} {str(a).replace('torch.', '')} tensors to {str(b).replace('torch.', '')} in {len(names)} "
            f"files (e.g. {names[0]}); --no-cast refuses them")


def import_zoo(src: str, out: str, layout: str = "auto", *, spec: dict | str | None = None, factory: str | None = None,
               factory_kwargs: dict | None = None, hf_config: str | None = None, hf_class: str | None = None,
               program: str | None = None, input_shape: Sequence[int] | None = None, input_dtype: str = "float32",
               table: str | None = None, kind: str | None = None, inr: INRMetadata | dict | None = None,
               split: Sequence[float] = (0.7, 0.1, 0.2), val_fraction: float | None = None, seed: int = 0,
               max_models: int | None = None, progress: bool = True, limits: SpecLimits | None = None,
               follow_symlinks: bool = False, casts: str = "report", log: Callable[[str], None] | None = print,
               **layout_options) -> int:
    """Import the models under ``src`` into the zoo ``out``; returns the number stored by this call.

    Args:
        src: the folder the models are in.
        out: the zoo directory (created if needed; rerun the same call to resume).
        layout: ``"auto"``, ``"folder"``, ``"dwsnets"`` or ``"cnn_zoo"`` (:mod:`nngraph.zoo.layouts`).
            (default: :obj:`"auto"`)
        spec, factory, factory_kwargs, hf_config, hf_class, program, input_shape, input_dtype: the
            architecture of a ``folder`` import (:func:`architecture_spec`); the published layouts
            know theirs.
        table: a CSV / JSON table of labels, splits and metrics, one row per model file (the format is in
            the module docstring).
        kind: ``"inr"`` or ``"classifier"``. (default: the layout's; ``folder``: ``"inr"`` if ``inr`` is
            given or the spec is a SIREN, else ``"classifier"``)
        inr: the coordinates of an INR zoo (:class:`~nngraph.zoo.inr_meta.INRMetadata` or its JSON).
            (default: the layout's, else ``[-1, 1]^2`` in ``(x, y)``)
        split: train / val / test fractions for models without a split (grouped by ``run``).
        val_fraction: move this share of the training models to ``val``. (default: 0.1 for
            ``dwsnets``, which ships train / test only; else none)
        seed: seed of those splits.
        max_models: store at most this many models now (the zoo stays an unfinished import until a
            rerun stores the rest).
        follow_symlinks: read files that symlinks under ``src`` point to (refused by default).
        casts: ``"report"``: tensors of another dtype than the architecture's are cast, one line per dtype
            pair (through ``log``); ``"refuse"``: such a file is an error naming the tensor.
        log: where the cast lines go (``None``: nowhere). (default: :func:`print`)
        layout_options: options of the layout's reader (``hidden``, ``w0``, ``image_size``,
            ``output_offset`` for ``dwsnets``; ``strides``, ``in_shape``, ``step`` for ``cnn_zoo``).

    Raises:
        ZooError: naming the file, the table line or the column: a bad table (a reserved or missing
            column, two rows for one file), a missing label or accuracy, an unreadable file, a symlink,
            tensors that do not fit the architecture (every such model, after the others are stored), a
            refused cast, a failed round trip, a zoo built with other settings, or another process
            importing into ``out``.
    """
    if casts not in ("report", "refuse"):
        raise ZooError(f"Could not resolve casts {casts!r} among choices ['report', 'refuse']")
    source = _read_source(src, layout, table, layout_options, follow_symlinks)
    arch = architecture_spec(out, spec=spec, factory=factory, factory_kwargs=factory_kwargs, hf_config=hf_config,
                             hf_class=hf_class, program=program, input_shape=input_shape, input_dtype=input_dtype)
    if arch is not None:
        for item in source.items:
            item.spec = arch
    missing = [i.origin for i in source.items if i.spec is None]
    if missing:
        raise ZooError(f"no architecture for {missing[0]}: a folder import needs spec=, factory=, hf_config= or "
                       "program= (--spec, --factory, --hf-config, --program)")
    for s in {json.dumps(i.spec, sort_keys=True) for i in source.items}:
        try:
            check_zoo_spec(json.loads(s), limits)
        except SpecError as err:
            raise ZooError(f"the architecture of {src} is not usable: {err}") from None
    if isinstance(inr, dict):
        inr = INRMetadata.from_json(inr)
    inr = inr or source.inr
    if kind is None:
        kind = source.kind
        if source.layout == "folder" and (inr is not None or source.items[0].spec.get("family") == "siren"):
            kind = "inr"
    if kind not in ("inr", "classifier"):
        raise ZooError(f"Could not resolve kind {kind!r} among choices ['inr', 'classifier']")
    if kind == "inr":
        inr = inr or INRMetadata()
    _check_fields(source, kind, src, table)
    _check_ids(source.items)
    if val_fraction is None and source.layout == "dwsnets":
        val_fraction = 0.1
    drawn = {i.model_id for i in source.items if "split" not in i.fields}
    _assign_splits(source.items, split, val_fraction, seed)

    settings = {"kind": kind, "version": 1, "num_models": len(source.items),
                "imported": {"layout": source.layout, "source": os.path.abspath(src), "split": list(split),
                             "val_fraction": val_fraction, "seed": seed, **source.settings}}
    if kind == "inr":
        settings["inr"] = inr.to_json()
    with building(out):  # a failure before the first model is stored leaves no directory it created
        _check_settings(out, settings)
        if program is not None:
            _store_program(out, program, arch)
        _keep_stored_splits(source.items, drawn, read_manifests(out, limits))
        return _import(out, source, kind, inr, max_models, progress, limits, settings, casts == "refuse",
                       log or (lambda line: None))


def _import(out: str, source: L.Source, kind: str, inr: INRMetadata | None, max_models: int | None,
            progress: bool, limits: SpecLimits | None, settings: dict[str, Any], no_casts: bool, log) -> int:
    """:func:`import_zoo` under the build lock."""
    models: dict[str, torch.nn.Module] = {}

    def model_of(spec: dict) -> torch.nn.Module:
        key = json.dumps(spec, sort_keys=True)
        if key not in models:
            models[key] = build_zoo_model(spec, out, limits)
        return models[key]

    def entry_of(index: int, item: L.Item, state: dict[str, torch.Tensor]):
        entry = {**item.fields, "id": item.model_id, "index": index, "family": item.spec["family"],
                 "spec": item.spec, "source": item.origin}
        if kind == "inr":
            entry["image_index"] = index
        return entry, state

    # one model converted and read back before anything else is written
    first = source.items[0]
    model = model_of(first.spec)
    model.load_state_dict(check_state(first.load(), model, first.origin, allow_casts=not no_casts))
    _round_trip(model, build_zoo_model(first.spec, out, limits), first.spec, first.origin)
    _stage(out, settings)

    bad: list[str] = []
    cast: list[tuple[str, torch.dtype, torch.dtype]] = []
    cast_files: dict[tuple, set[str]] = {}
    position = {item.model_id: n for n, item in enumerate(source.items)}
    by_id = {item.model_id: item for item in source.items}
    units = [Unit(u, tuple(i.model_id for i in source.items[s:s + CHUNK]))
             for u, s in enumerate(range(0, len(source.items), CHUNK))]

    def compute(unit: Unit):
        results = []
        for model_id in unit.model_ids:
            item = by_id[model_id]
            found: list[tuple[str, torch.dtype, torch.dtype]] = []
            try:
                state = check_state(item.load(), model_of(item.spec), item.origin, found, not no_casts)
            except ZooError as err:
                bad.append(str(err))
                continue
            for _, a, b in found:
                cast_files.setdefault((a, b), set()).add(item.origin)
            cast.extend(found)
            results.append(entry_of(position[model_id], item, state))
        return results

    stored = run_units(out, units, compute, max_models=max_models, progress=progress, desc="importing models")
    _report_casts(cast, cast_files, log)
    if bad:
        listed = "; ".join(bad[:MAX_LISTED])
        more = f"; ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise ZooError(f"{len(bad)} of {len(source.items)} models do not match the architecture and were not "
                       f"imported ({stored} others were; {out} stays an unfinished import): fix or remove them and "
                       f"rerun: {listed}{more}")
    done = {e["id"] for e in read_manifests(out, limits)}
    if all(i.model_id in done for i in source.items):
        if kind == "inr" and (stored or not _images_ok(out, len(done))):
            _render_images(out, inr, limits)
        _finish(out, settings)
    return stored
