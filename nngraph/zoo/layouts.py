"""Readers of zoos on disk: a folder of state dicts, and two published layouts.

Each reader returns a :class:`Source`: the models (:class:`Item`, each with its tensors under the keys
of the module its spec builds, read only when imported), their labels and splits, and what goes into
``zoo.json``. :func:`nngraph.zoo.import_zoo` checks and stores them.

``folder``   ``*.safetensors`` / ``*.pt`` / ``*.pth`` state dicts anywhere under ``SRC`` (``.pt`` read
             with ``torch.load(weights_only=True)``), labels and splits from a table (CSV or JSON, keyed
             by the file's path relative to ``SRC``, its name or its stem; the format is in
             :mod:`nngraph.zoo.importer`) or from folder names (``train``/``training``, ``val``/``validation``,
             ``test``/``testing``; ``label_N`` or ``N``).

Every reader reads only files inside ``SRC``: a symlink among the model files or folders (or the Small CNN
Zoo's arrays) is refused, naming it, unless ``follow_symlinks=True`` (``--follow-symlinks``).
``dwsnets``  the MNIST / Fashion-MNIST INRs of DWSNets (Navon et al., 2023,
             ``AvivNavon/DWSNets``): one ``torch.save``\\d state dict per INR,
             ``<SRC>/mnist_png_{training,testing}_<label>_<n>/checkpoints/model_final.pth`` (the split
             from "train" in the path, the label from the ``.pth``'s grandparent folder, as
             ``experiments/mnist/generate_data_splits.py``), or ``<SRC>/{training,testing}/...`` with
             the label in a ``label_N`` / ``N`` folder. Keys ``seq.0.*, seq.1.*, seq.2.*``: SIRENs
             ``2 -> 32 -> 32 -> 1``, ω0 = 30, evaluated on ``[-1, 1]^2`` in ``(x, y)`` order at 28 x 28
             (``experiments/utils.py:make_coordinates``); their ``forward`` adds 0.5 to the output, which
             the import folds into the last bias.
``cnn_zoo``  the Small CNN Zoo of Unterthiner et al. (2020, ``google-research/dnn_predict_accuracy``):
             ``weights.npy`` (one row of 4,970 flattened parameters per checkpoint), ``metrics.csv.gz`` or
             ``metrics.csv`` (``test_accuracy``, ``step``, ``modeldir``, ``config.*``; one row per
             checkpoint) and ``layout.csv`` (``varname``, ``start_idx``, ``end_idx``, ``shape``: which
             columns hold which TensorFlow variable). TF kernels ``(kh, kw, in, out)`` become
             ``(out, in, kh, kw)``, dense ``(in, out)`` become ``(out, in)``; the model is the ``cnn``
             spec (3 conv layers, global average pooling, a linear head).
"""
from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file

from nngraph.errors import ZooError
from nngraph.zoo.inr_meta import INRMetadata
from nngraph.zoo.specs import siren_spec

__all__ = ["Item", "Source", "LAYOUTS", "RESERVED_COLUMNS", "read_state_file", "read_table", "read_table_rows",
           "TableLookup", "own_file", "folder_fields", "read_folder",
           "read_dwsnets", "read_cnn_zoo", "detect_layout"]

STATE_SUFFIXES = (".safetensors", ".pt", ".pth")
SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}


@dataclass
class Item:
    """One model of a source: ``load()`` gives its tensors (under the keys of ``spec``'s module)."""

    model_id: str
    origin: str  # the file (and row) the tensors come from, for error messages
    spec: dict[str, Any] | None
    load: Callable[[], dict[str, torch.Tensor]]
    fields: dict[str, Any] = field(default_factory=dict)
    row: str | None = None  # the table line its fields came from ("table.csv:3"), for error messages


@dataclass
class Source:
    """What a reader found: the models and what ``zoo.json`` records about them."""

    layout: str
    kind: str
    items: list[Item]
    inr: INRMetadata | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def read_state_file(path: str) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or (``weights_only=True``) ``.pt`` / ``.pth``; :class:`ZooError`
    naming the file if it is unreadable or not a flat dict of tensors."""
    try:
        if path.endswith(".safetensors"):
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused an object: say which, not torch's advice
        found = re.search(r"(unsupported GLOBAL [^\s]+|Unsupported global: [^\s]+)", str(err))
        what = found.group(1).rstrip(".") if found else str(err).split(".")[0][:120]
        raise ZooError(f"{path} holds Python objects, not only tensors ({what}); nngraph reads .pt files with "
                       "torch.load(weights_only=True) and never unpickles code: save the state dict with "
                       "safetensors or torch.save(model.state_dict())") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported with its name
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ZooError(f"{path} is not a readable state dict ({type(err).__name__}: {first}); .pt files are read "
                       "with torch.load(weights_only=True), so they must hold tensors only") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ZooError(f"{path} does not hold a state dict (a dict of name -> tensor)")
    return dict(state)


def _value(text: Any) -> Any:
    """A table cell as int, float, bool or str."""
    if not isinstance(text, str):
        return text
    t = text.strip()
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(t.lower(), t)


def _open_text(path: str) -> io.TextIOBase:
    """A text file, ``.gz`` or not; a UTF-8 byte order mark (as spreadsheets write) is skipped."""
    return gzip.open(path, "rt", encoding="utf-8-sig", newline="") if path.endswith(".gz") else \
        open(path, encoding="utf-8-sig", newline="")


#: Manifest fields the import sets itself; a table column of one of these names is refused.
RESERVED_COLUMNS = ("id", "index", "sha256", "spec", "family", "source", "image_index")
#: The columns a table's rows are keyed by (the model file), consumed by the import.
KEY_COLUMNS = ("file", "path")


def read_table(path: str) -> list[dict[str, Any]]:
    """Rows of a CSV (``.csv``, ``.csv.gz``) or JSON (a list of objects, or ``{key: object}`` with the key
    as ``file``) table, cells parsed as numbers where they are numbers."""
    return [row for _, row in read_table_rows(path)]


def read_table_rows(path: str) -> list[tuple[str, dict[str, Any]]]:
    """``(where, row)`` of every row of the table :func:`read_table` reads; ``where`` names the row for error
    messages: ``table.csv:3`` (the line a CSV row ends on), ``table.json row 2`` or ``table.json key 'm0'``.

    Raises:
        ZooError: naming the table if it is missing or malformed (bad JSON, not a list or object of objects,
            a CSV row with more cells than the header).
    """
    if not os.path.exists(path):
        raise ZooError(f"table {path} not found")
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ZooError(f"table {path} is not valid JSON ({err})") from None
        if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
            return [(f"{path} key {k!r}", {"file": k, **v}) for k, v in data.items()]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ZooError(f"{path}: a JSON table must be a list of objects or an object of objects")
        return [(f"{path} row {i}", r) for i, r in enumerate(data)]
    rows = []
    try:
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            header = [(name or "").strip() for name in (reader.fieldnames or [])]
            twice = sorted({name for name in header if header.count(name) > 1})
            if twice:
                raise ZooError(f"{path}:1: column {twice[0]!r} appears {header.count(twice[0])} times in the header; "
                               "give each column once")
            reader.fieldnames = header
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:
                    raise ZooError(f"{where} has {len(row) - 1 + len(row[None])} cells, more than the "
                                   f"{len(row) - 1} columns of the header {reader.fieldnames}")
                rows.append((where, {k: _value(v) for k, v in row.items()}))
    except (UnicodeDecodeError, OSError, csv.Error) as err:  # gzip.BadGzipFile is an OSError
        raise ZooError(f"table {path} is not a readable CSV file ({type(err).__name__}: {err})") from None
    return rows


def folder_fields(relative: str) -> dict[str, Any]:
    """``split`` and ``label`` read from the folders of a relative path (``train/label_3/x.pt``)."""
    out: dict[str, Any] = {}
    for part in relative.replace(os.sep, "/").split("/")[:-1]:
        low = part.lower()
        if low in SPLIT_WORDS:
            out["split"] = SPLIT_WORDS[low]
        m = re.fullmatch(r"(?:label|class)[_-]?(\d+)|(\d+)", low)
        if m:
            out["label"] = int(m.group(1) or m.group(2))
    return out


def _refuse_link(src: str, path: str, what: str = "") -> None:
    real = os.path.realpath(path)
    where = "outside" if os.path.commonpath([os.path.realpath(src), real]) != os.path.realpath(src) else "inside"
    raise ZooError(f"{path} is a symlink{what} to {real} ({where} {src}); zoo import reads only the files in its "
                   "source folder: copy the file in, or pass --follow-symlinks (follow_symlinks=True) to read "
                   "what links point to")


def own_file(src: str, path: str, follow_symlinks: bool = False) -> str:
    """``path`` (a file of the source folder ``src``) if it is no symlink and resolves inside ``src``, or if
    ``follow_symlinks``; else :class:`ZooError` naming it."""
    if not follow_symlinks:
        if os.path.islink(path):
            _refuse_link(src, path)
        base, real = os.path.realpath(src), os.path.realpath(path)
        if os.path.commonpath([base, real]) != base:
            raise ZooError(f"{path} resolves to {real}, outside {src} (through a symlinked folder); pass "
                           "--follow-symlinks (follow_symlinks=True) to read it")
    return path


def _state_files(src: str, follow_symlinks: bool = False) -> list[str]:
    """The state dict files under ``src`` (relative paths, sorted). A symlink among them or among the
    folders is refused (naming it) unless ``follow_symlinks``, so nothing outside ``src`` is read by accident."""
    if not os.path.isdir(src):
        raise ZooError(f"{src} is not a directory of models")
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(src, followlinks=follow_symlinks):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink cycle, followed
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        if not follow_symlinks:
            for name in dirnames:
                if os.path.islink(os.path.join(dirpath, name)):
                    _refuse_link(src, os.path.join(dirpath, name), " (a folder)")
        for name in sorted(filenames):
            if name.endswith(STATE_SUFFIXES) and not name.startswith("."):
                path = own_file(src, os.path.join(dirpath, name), follow_symlinks)
                found.append(os.path.relpath(path, src))
    if not found:
        raise ZooError(f"{src} holds no state dicts ({', '.join(STATE_SUFFIXES)} files)")
    return found


def _model_id(relative: str, used: set[str]) -> str:
    stem = relative.replace(os.sep, "/")
    for suffix in STATE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", stem.replace("/", "--")).strip(".-")[:120] or "model"
    model_id, n = base, 1
    while model_id in used:
        n += 1
        model_id = f"{base}-{n}"
    used.add(model_id)
    return model_id


class TableLookup:
    """The rows of a ``--table`` keyed by their model file, checked before anything is imported: a key column
    (``file`` or ``path``) on every row, no reserved column (:data:`RESERVED_COLUMNS`), no file named by two
    rows, and no row that fits two files."""

    def __init__(self, table: str):
        self.table = table
        self.rows: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (where, fields)
        self.used: dict[str, str] = {}  # key -> the file it was matched to
        rows = read_table_rows(table)
        if not rows:
            raise ZooError(f"table {table} has no rows")
        columns = sorted({k for _, row in rows for k in row})
        self.columns = columns
        for where, row in rows:
            reserved = [k for k in RESERVED_COLUMNS if k in row]
            if reserved:
                raise ZooError(f"{where}: column {reserved[0]!r} would set a manifest field the import sets itself "
                               f"(reserved: {', '.join(RESERVED_COLUMNS)}); rename the column (e.g. to "
                               f"'{reserved[0]}_0' or 'run_{reserved[0]}') or drop it")
            key = row.get("file", row.get("path"))
            if not isinstance(key, str) or not key:
                if not any(k in columns for k in KEY_COLUMNS):
                    raise ZooError(f"table {table} has no 'file' column naming the model files (its columns: "
                                   f"{columns}); see `nngraph zoo import --help` for the table format")
                raise ZooError(f"{where}: no 'file' (or 'path') naming its model file")
            key = key.replace(os.sep, "/")
            if key in self.rows:
                raise ZooError(f"{where}: file {key!r} has a row already at {self.rows[key][0]}; give each model "
                               "file one row")
            self.rows[key] = (where, {k: v for k, v in row.items() if k not in KEY_COLUMNS})

    def row_of(self, relative: str) -> tuple[str, dict[str, Any]] | None:
        """``(where, fields)`` of the row of file ``relative`` (keyed by the path relative to the source, the
        file name or its stem), or ``None``.

        Raises:
            ZooError: if two rows fit the file, or the row fits another file too.
        """
        rel = relative.replace(os.sep, "/")
        name = rel.rsplit("/", 1)[-1]
        keys = list(dict.fromkeys(k for k in (rel, name, os.path.splitext(name)[0]) if k in self.rows))
        if not keys:
            return None
        if len(keys) > 1:
            raise ZooError(f"{self.rows[keys[0]][0]} and {self.rows[keys[1]][0]} both fit {rel} (as {keys[0]!r} and "
                           f"{keys[1]!r}); give each model file one row")
        key = keys[0]
        if key in self.used and self.used[key] != rel:
            raise ZooError(f"{self.rows[key][0]}: {key!r} fits two files, {self.used[key]} and {rel}; key the rows by "
                           "the path relative to the source folder")
        self.used[key] = rel
        return self.rows[key]


def read_folder(src: str, table: str | None = None, spec: dict | None = None, kind: str = "classifier",
                key_map: Callable[[dict], dict] | None = None, follow_symlinks: bool = False) -> Source:
    """The ``folder`` layout (see the module docstring)."""
    lookup = TableLookup(table) if table else None
    items, used = [], set()
    for rel in _state_files(src, follow_symlinks):
        fields, where = folder_fields(rel), None
        if lookup is not None:
            found = lookup.row_of(rel)
            if found is None:
                raise ZooError(f"{table} has no row for {os.path.join(src, rel)} (key the rows by 'file': the path "
                               f"relative to {src}, the file name or its stem)")
            where, row = found
            fields.update(row)
        path = os.path.join(src, rel)
        load = (lambda p=path: key_map(read_state_file(p))) if key_map else (lambda p=path: read_state_file(p))
        items.append(Item(_model_id(rel, used), path, spec, load, fields, where))
    settings = {"table": os.path.abspath(table) if table else None}
    if follow_symlinks:
        settings["follow_symlinks"] = True
    return Source("folder", kind, items, settings=settings)


# -- DWSNets INRs ------------------------------------------------------------------------------------
def _dwsnets_fields(relative: str) -> dict[str, Any]:
    parts = relative.replace(os.sep, "/").split("/")
    out = folder_fields(relative)
    if "split" not in out:
        out["split"] = "train" if "train" in relative.lower() else "test"
    if len(parts) >= 3:  # .../mnist_png_training_<label>_<n>/checkpoints/model_final.pth
        m = re.search(r"_(\d+)_\d+$", parts[-3])
        if m:
            out["label"] = int(m.group(1))
    return out


def dwsnets_state(state: dict[str, torch.Tensor], path: str, output_offset: float = 0.5) -> dict[str, torch.Tensor]:
    """DWSNets keys (``seq.<i>.weight`` / ``seq.<i>.bias``, in layer order) -> the siren spec's keys
    (``<2 i>.weight``), with ``output_offset`` (the ``+ 0.5`` of ``INR.forward``) added to the last bias."""
    weights = [k for k in state if k.endswith("weight")]
    biases = [k for k in state if k.endswith("bias")]
    if not weights or len(weights) != len(biases) or len(weights) + len(biases) != len(state):
        raise ZooError(f"{path}: expected pairs of '*.weight' / '*.bias' (a DWSNets INR), got keys {sorted(state)}")
    out = {}
    for i, (w, b) in enumerate(zip(weights, biases)):
        out[f"{2 * i}.weight"] = state[w]
        out[f"{2 * i}.bias"] = state[b] + (output_offset if i == len(weights) - 1 else 0.0)
    return out


def read_dwsnets(src: str, hidden: list[int] | None = None, w0: float = 30.0, image_size=(28, 28),
                 output_offset: float = 0.5, table: str | None = None, follow_symlinks: bool = False) -> Source:
    """The ``dwsnets`` layout (see the module docstring). The widths are read from the first INR unless
    ``hidden`` is given."""
    files = _state_files(src, follow_symlinks)
    first = dwsnets_state(read_state_file(os.path.join(src, files[0])), os.path.join(src, files[0]))
    n_layers = len(first) // 2
    in_features = int(first["0.weight"].shape[1])
    hidden = hidden or [int(first[f"{2 * i}.weight"].shape[0]) for i in range(n_layers - 1)]
    out_features = int(first[f"{2 * (n_layers - 1)}.weight"].shape[0])
    spec = siren_spec(in_features, hidden, out_features, w0)
    lookup = TableLookup(table) if table else None
    items, used = [], set()
    for rel in files:
        path = os.path.join(src, rel)
        fields, where = _dwsnets_fields(rel), None
        found = lookup.row_of(rel) if lookup is not None else None
        if found is not None:
            where = found[0]
            fields.update(found[1])
        if "label" not in fields:
            raise ZooError(f"{path}: no label in its folder names (DWSNets: mnist_png_<split>_<label>_<n>/"
                           "checkpoints/*.pth) and none in a table; pass --table")
        load = (lambda p=path: dwsnets_state(read_state_file(p), p, output_offset))
        items.append(Item(_model_id(rel, used), path, spec, load, fields, where))
    meta = INRMetadata((-1.0, 1.0), "xy", w0, tuple(image_size))
    settings = {"output_offset_folded": output_offset, **({"follow_symlinks": True} if follow_symlinks else {})}
    return Source("dwsnets", "inr", items, meta, settings)


# -- Small CNN Zoo -----------------------------------------------------------------------------------
def _shape(text: Any, where: str) -> tuple[int, ...]:
    try:
        shape = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        shape = None
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ZooError(f"{where}: shape {text!r} is not a tuple of positive ints")
    return tuple(shape)


#: Input sizes of the four datasets of the Small CNN Zoo (grayscale).
CNN_ZOO_INPUTS = {"mnist": [1, 28, 28], "fashion_mnist": [1, 28, 28], "cifar10": [1, 32, 32], "svhn_cropped": [1, 32, 32]}
CNN_ZOO_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "gelu": "gelu", "silu": "silu", "swish": "silu"}


def read_cnn_zoo(src: str, strides: list[int] | None = None, in_shape: list[int] | None = None,
                 step: int | None = None, table: str | None = None, follow_symlinks: bool = False) -> Source:
    """The ``cnn_zoo`` layout (see the module docstring).

    Args:
        strides: the conv strides (the arrays do not tell them). (default: ``2`` for every layer)
        in_shape: ``[C, H, W]``. (default: from ``config.dataset``, else ``[1, 32, 32]``)
        step: keep only the checkpoints of this ``step`` (e.g. 86, the end of training).
        table: the metrics table. (default: ``metrics.csv.gz`` or ``metrics.csv`` in ``src``)
    """
    weights_path, layout_path = os.path.join(src, "weights.npy"), os.path.join(src, "layout.csv")
    if table is None:
        table = next((os.path.join(src, n) for n in ("metrics.csv.gz", "metrics.csv")
                      if os.path.exists(os.path.join(src, n))), os.path.join(src, "metrics.csv"))
    for path in (weights_path, layout_path, table):
        if not os.path.exists(path):
            raise ZooError(f"{path} is missing: a Small CNN Zoo folder holds weights.npy, metrics.csv(.gz), layout.csv")
    for path in (weights_path, layout_path):
        own_file(src, path, follow_symlinks)
    try:
        weights = np.load(weights_path, mmap_mode="r", allow_pickle=False)  # (N, P)
    except ValueError as err:
        raise ZooError(f"{weights_path} is not a plain numpy array ({err}); pickled arrays are not read") from None
    if weights.ndim != 2:
        raise ZooError(f"{weights_path} must be a matrix (models x parameters), got shape {weights.shape}")
    metrics = read_table(table)
    if len(metrics) != weights.shape[0]:
        raise ZooError(f"{table} has {len(metrics)} rows but {weights_path} has {weights.shape[0]}")
    layers = []  # (varname, start, end, tf shape)
    for number, row in enumerate(read_table(layout_path), 2):
        where = f"{layout_path}:{number}"
        try:
            name, start, end = str(row["varname"]), int(row["start_idx"]), int(row["end_idx"])
        except (KeyError, ValueError, TypeError):
            raise ZooError(f"{where}: needs varname, start_idx, end_idx, shape") from None
        shape = _shape(row.get("shape"), where)
        if not 0 <= start < end <= weights.shape[1] or end - start != int(np.prod(shape)):
            raise ZooError(f"{where}: columns {start}:{end} do not hold a {shape} array of {weights_path}")
        layers.append((name, start, end, shape))
    kernels = [l for l in layers if l[0].endswith("kernel:0")]
    convs = [l for l in kernels if len(l[3]) == 4]
    if len(convs) + 1 != len(kernels) or len(layers) != 2 * len(kernels):
        raise ZooError(f"{layout_path}: expected conv kernels and biases then one dense kernel and bias, got "
                       f"{[l[0] for l in layers]}")
    channels = [l[3][3] for l in convs]
    k = convs[0][3][0]
    num_classes = kernels[-1][3][1]
    strides = strides or [2] * len(convs)

    def spec_of(row: dict[str, Any], where: str) -> dict[str, Any]:
        act = str(row.get("config.activation", "relu")).lower()
        if act not in CNN_ZOO_ACTIVATIONS:
            raise ZooError(f"{where}: activation {act!r} is not among {sorted(CNN_ZOO_ACTIVATIONS)}")
        shape = in_shape or CNN_ZOO_INPUTS.get(str(row.get("config.dataset", "")), [1, 32, 32])
        return {"family": "cnn", "in_shape": list(shape), "channels": channels, "strides": list(strides),
                "kernel_size": int(k), "act": CNN_ZOO_ACTIVATIONS[act], "norm": "none", "head": "gap",
                "dropout": 0.0, "num_classes": int(num_classes)}

    by_name = {l[0]: l for l in layers}
    pairs = []  # (module index in the cnn spec, kernel, bias): Conv, Act per layer, then GAP, Flatten, Linear
    for j, kernel in enumerate(kernels):
        bias = by_name.get(kernel[0][: -len("kernel:0")] + "bias:0")
        if bias is None:
            raise ZooError(f"{layout_path}: no bias for {kernel[0]}")
        pairs.append((2 * j if j < len(convs) else 2 * len(convs) + 2, kernel, bias))

    def load(i: int) -> dict[str, torch.Tensor]:
        flat = np.asarray(weights[i], dtype=np.float32)  # (P,)
        out = {}
        for index, (_, ks, ke, kshape), (_, bs, be, bshape) in pairs:
            kernel = torch.from_numpy(flat[ks:ke].reshape(kshape).copy())
            # TF (kh, kw, in, out) -> (out, in, kh, kw); dense (in, out) -> (out, in)
            out[f"{index}.weight"] = kernel.permute(3, 2, 0, 1).contiguous() if kernel.dim() == 4 else kernel.t().contiguous()
            out[f"{index}.bias"] = torch.from_numpy(flat[bs:be].reshape(bshape).copy())
        return out

    items = []
    for i, row in enumerate(metrics):
        if step is not None and row.get("step") != step:
            continue
        where = f"{weights_path} row {i} ({table} line {i + 2})"
        fields = {"test_acc": row.get("test_accuracy"), "train_acc": row.get("train_accuracy"),
                  "test_loss": row.get("test_loss"), "train_loss": row.get("train_loss"),
                  "step": row.get("step"), "run": str(row.get("modeldir", i)),
                  "hparams": {k[len("config."):]: v for k, v in row.items() if k.startswith("config.")}}
        if "split" in row:
            fields["split"] = row["split"]
        items.append(Item(f"cnn-{i:07d}", where, spec_of(row, where), lambda i=i: load(i), fields))
    settings = {"strides": list(strides), "step": step, "table": os.path.abspath(table),
                **({"follow_symlinks": True} if follow_symlinks else {})}
    return Source("cnn_zoo", "classifier", items, settings=settings)


def detect_layout(src: str, follow_symlinks: bool = False) -> str:
    """``cnn_zoo`` if ``src`` holds ``weights.npy`` and ``layout.csv``, ``dwsnets`` if its state dicts
    sit in DWSNets folders, else ``folder``."""
    if os.path.exists(os.path.join(src, "weights.npy")) and os.path.exists(os.path.join(src, "layout.csv")):
        return "cnn_zoo"
    if any(re.match(r"f?mnist_png_", part) for rel in _state_files(src, follow_symlinks)[:1]
           for part in rel.split(os.sep)):
        return "dwsnets"
    return "folder"


LAYOUTS = ("auto", "folder", "dwsnets", "cnn_zoo")
