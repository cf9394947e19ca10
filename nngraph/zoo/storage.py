"""On-disk layout of a zoo and the :class:`Zoo` reader.

A zoo directory holds::

    zoo.json                     the settings the zoo was built with (written once, checked on resume)
    weights/<model_id>.safetensors   one file per model, keys = the model's ``state_dict`` names
    manifest.jsonl               one JSON object per model (``manifest.shard-<i>-of-<n>.jsonl`` per shard)
    extra files of the family (e.g. ``images.safetensors`` for INR zoos)

Every write is atomic: a temp file in the same directory, fsync, then ``os.replace``. A manifest line
is appended only after its weights file is complete, so a model is in the zoo iff its manifest line is.
A manifest line cut short by a kill (no trailing newline) is dropped on the next append.

Manifests are data from strangers: every line is checked when read (:func:`check_entry`): its ``id``
is a safe file name, its ``file`` a relative path that resolves (symlinks included) inside the zoo, its
``sha256`` 64 hex digits, its ``spec`` within the :class:`~nngraph.zoo.specs.SpecLimits` and its ``split``
one of ``train`` / ``val`` / ``test``. A bad line raises :class:`ZooError` naming the manifest and the line; so
does a model listed twice with different fields (naming both lines).
"""
from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from nngraph.errors import SpecError, ZooError
from nngraph.io import atomic_write
from nngraph.zoo.architectures import SHA256, build_zoo_model, check_zoo_spec
from nngraph.zoo.files import inside, read_with_sha256, sha256_bytes, sha256_file
from nngraph.zoo.seeds import SPLITS
from nngraph.zoo.specs import SpecLimits

__all__ = ["Zoo", "ZooError", "sha256_file", "save_weights", "append_manifest", "read_manifests",
           "manifest_name", "write_config", "check_model_id", "check_entry", "inside", "state_mismatch", "zoo_file",
           "regular_file", "KINDS"]

CONFIG = "zoo.json"
#: The kinds of zoo nngraph builds and imports (``zoo.json`` ``kind``).
KINDS = ("inr", "classifier")
#: The settings of an import that has not finished (:mod:`nngraph.zoo.importer`); ``zoo.json`` replaces it at the end.
STAGED = ".import.json"
WEIGHTS_DIR = "weights"
#: A model id: a file name on every OS (letters, digits, ``._-``), not hidden, at most 128 characters.
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_model_id(model_id: Any) -> str:
    """Return ``model_id`` if it is a safe file name (:data:`MODEL_ID`), else raise :class:`ValueError`."""
    if not isinstance(model_id, str) or not MODEL_ID.fullmatch(model_id):
        raise ValueError(f"id {model_id!r} is not a model id (1-128 of letters, digits, '.', '_', '-', "
                         "not starting with '.' or '-')")
    return model_id


def zoo_file(root: str, name: str) -> str:
    """``root/name``, a file of the zoo itself (``zoo.json``, a manifest, ``images.safetensors``), if it resolves
    inside the zoo (a symlink to a file elsewhere does not); else :class:`ZooError` naming it. Nothing is opened."""
    try:
        return inside(root, name, "zoo file")
    except ValueError as err:
        raise ZooError(f"{err}; refusing to read it (a zoo's own files stay inside it)") from None


def regular_file(path: str, what: str) -> str:
    """``path`` if it is a regular file; :class:`ZooError` for a folder, a named pipe or a device (a pipe would
    block the reader forever) or a missing file."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ZooError(f"{what} missing: {path}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode) else "not a regular file"
        raise ZooError(f"{what} {path} is {kind}; refusing to read it")
    return path


def check_entry(root: str, entry: Any, limits: SpecLimits | None = None) -> dict[str, Any]:
    """Return ``entry`` if it is a safe manifest entry of the zoo in ``root``, else raise :class:`ValueError`.

    Checked: a JSON object with a safe ``id`` (:func:`check_model_id`), a ``file`` inside ``root``
    (:func:`inside`), a ``sha256`` of 64 hex digits, a ``spec`` within ``limits`` and, if it has one, a
    ``split`` of ``train`` / ``val`` / ``test`` (a misspelt ``"trian"`` would drop the model out of every split).
    """
    if not isinstance(entry, dict):
        raise ValueError(f"a manifest entry must be a JSON object, got {type(entry).__name__}")
    missing = [k for k in ("id", "index", "file", "sha256", "spec") if k not in entry]
    if missing:
        raise ValueError(f"entry lacks {missing} (it has {sorted(entry)})")
    check_model_id(entry["id"])
    if not isinstance(entry["index"], int) or isinstance(entry["index"], bool) or not 0 <= entry["index"] < 2 ** 63:
        raise ValueError(f"index of model {entry['id']} is not an integer in [0, 2**63): {entry['index']!r}")
    inside(root, entry["file"], f"file of model {entry['id']}")
    if not isinstance(entry["sha256"], str) or not SHA256.fullmatch(entry["sha256"]):
        raise ValueError(f"sha256 of model {entry['id']} is not 64 lowercase hex digits: {entry['sha256']!r}")
    if "split" in entry and (not isinstance(entry["split"], str) or entry["split"] not in SPLITS):
        raise ValueError(f"split of model {entry['id']} is {entry['split']!r}, not one of {list(SPLITS)}")
    try:
        check_zoo_spec(entry["spec"], limits)
    except SpecError as err:
        raise ValueError(f"spec of model {entry['id']}: {err}") from None
    return entry


def save_weights(root: str, model_id: str, state: dict[str, torch.Tensor]) -> tuple[str, str]:
    """Atomically write a state dict as safetensors; returns ``(relative path, sha256)``.

    The bytes depend only on the tensors (no timestamps), so equal weights give equal checksums.
    """
    rel = f"{WEIGHTS_DIR}/{check_model_id(model_id)}.safetensors"
    data = save({k: v.detach().to("cpu").contiguous() for k, v in state.items()})
    atomic_write(os.path.join(root, rel), data)
    return rel, sha256_bytes(data)


def manifest_name(shard: tuple[int, int] = (0, 1)) -> str:
    """``manifest.jsonl`` for an unsharded run, ``manifest.shard-<i>-of-<n>.jsonl`` otherwise."""
    i, n = shard
    return "manifest.jsonl" if n == 1 else f"manifest.shard-{i}-of-{n}.jsonl"


def _repair_tail(path: str) -> None:
    """Drop a last line cut short by a kill (a complete line always ends with a newline)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        content = f.read()
        f.truncate(content.rfind(b"\n") + 1)


def append_manifest(path: str, entries: Iterable[dict[str, Any]]) -> None:
    """Append entries as JSON lines in one write, then fsync."""
    _repair_tail(path)
    text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _parse_line(root: str, path: str, number: int, line: str, limits: SpecLimits | None) -> dict[str, Any]:
    """The checked entry on line ``number`` of manifest ``path``; :class:`ZooError` naming both if it is bad."""
    try:
        return check_entry(root, json.loads(line), limits)
    except json.JSONDecodeError as err:
        raise ZooError(f"{path}:{number} is not valid JSON ({err}); the manifest is corrupted") from None
    except ValueError as err:
        raise ZooError(f"{path}:{number}: {err}; the manifest is corrupted or not from nngraph.zoo") from None


def read_manifests(root: str, limits: SpecLimits | None = None) -> list[dict[str, Any]]:
    """All complete entries of every ``manifest*.jsonl`` in ``root``, sorted by ``index``.

    Every line is checked (:func:`check_entry`, specs against ``limits``). The same model on two lines
    (e.g. a shard rerun unsharded) must be the same entry: another checksum, or the same weights with
    another split, label or any other field, is an error naming both lines (the last line does not win).
    """
    by_id: dict[str, dict] = {}
    where: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(root, "manifest*.jsonl"))):
        regular_file(zoo_file(root, os.path.basename(path)), "manifest")
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
        except UnicodeDecodeError as err:
            line = open(path, "rb").read()[: err.start].count(b"\n") + 1
            raise ZooError(f"{path}:{line} is not UTF-8 text ({err.reason} at byte {err.start}); the manifest is "
                           "corrupted") from None
        for number, line in enumerate(lines[:-1], 1):  # the part after the last newline is incomplete
            if not line.strip():
                continue
            e = _parse_line(root, path, number, line, limits)
            old = by_id.get(e["id"])
            if old is not None and old["sha256"] != e["sha256"]:
                raise ZooError(f"{path}:{number}: model {e['id']} appears twice with different checksums (also at "
                               f"{where[e['id']]}); the zoo mixes runs with different settings")
            if old is not None and old != e:
                fields = sorted(k for k in set(old) | set(e) if old.get(k) != e.get(k))
                first = fields[0]
                raise ZooError(f"{path}:{number}: model {e['id']} appears twice with conflicting {fields} (also at "
                               f"{where[e['id']]}: {first} {old.get(first)!r} there, {e.get(first)!r} here); "
                               "a manifest lists each model once: remove the wrong line")
            by_id[e["id"]] = e
            where.setdefault(e["id"], f"{path}:{number}")
    return sorted(by_id.values(), key=lambda e: (e["index"], e["id"]))


def read_config(path: str) -> dict[str, Any]:
    """The settings in a ``zoo.json``; :class:`ZooError` naming the file if it is not a JSON object."""
    regular_file(path, "zoo settings")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ZooError(f"{path} is not valid JSON ({err}); the zoo's settings file is corrupted") from None
    if not isinstance(config, dict) or not isinstance(config.get("kind"), str):
        raise ZooError(f"{path} holds no zoo settings (a JSON object with a 'kind'); the file is corrupted "
                       "or not from nngraph.zoo")
    if config["kind"] not in KINDS:
        raise ZooError(f"{path}: kind {config['kind']!r} is not one of {list(KINDS)}; the file is corrupted or "
                       "not from nngraph.zoo")
    if "inr" in config:
        from nngraph.zoo.inr_meta import INRMetadata

        try:
            INRMetadata.from_json(config["inr"])
        except (ValueError, TypeError) as err:
            raise ZooError(f"{path}: {err}") from None
    return config


def write_config(root: str, config: dict[str, Any]) -> None:
    """Write ``zoo.json``, or check that the existing one holds the same settings."""
    path = os.path.join(root, CONFIG)
    if os.path.exists(path):
        old = read_config(path)
        if old != json.loads(json.dumps(config)):
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != json.loads(json.dumps(config)).get(k))
            raise ZooError(f"{root} holds a zoo built with other settings (differing: {diff}); "
                           "rerun with the same settings to resume, or use a new --out directory")
        return
    atomic_write(path, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())


class Zoo:
    """Read access to a zoo directory.

    Args:
        root (str): the zoo directory.
        limits (SpecLimits, optional): the largest model a manifest spec may describe.
            (default: :data:`~nngraph.zoo.specs.DEFAULT_LIMITS`)
        unfinished (bool): read an unfinished import too (its staged settings, the models stored so far);
            by default it is refused. (default: :obj:`False`)

    Raises:
        ZooError: if ``zoo.json`` is missing (an unfinished import says so), or a manifest line is bad
            (named with its line number).

    Attributes:
        config (dict): the settings in ``zoo.json``.
        entries (list[dict]): every model's manifest entry, sorted by ``index``.
    """

    def __init__(self, root: str, limits: SpecLimits | None = None, unfinished: bool = False):
        self.root = root
        self.limits = limits
        path = os.path.join(root, CONFIG)
        if not os.path.exists(path):
            staged = os.path.join(root, STAGED)
            if not os.path.exists(staged):
                raise ZooError(f"{root} is not a zoo: {CONFIG} is missing (build one with `python -m nngraph.zoo`)")
            self.config = read_config(zoo_file(root, STAGED))
            self.entries = read_manifests(root, limits)
            if not unfinished:
                raise ZooError(f"{root} is an unfinished import ({len(self.entries)} of "
                               f"{self.config.get('num_models', '?')} models stored, no {CONFIG}): rerun the "
                               "`nngraph zoo import` command that started it to finish it (if it failed, its error "
                               "named the files to fix)")
            return
        self.config = read_config(zoo_file(root, CONFIG))
        self.entries = read_manifests(root, limits)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Zoo({self.root!r}, kind={self.config.get('kind')!r}, models={len(self)})"

    def split(self, name: str) -> list[dict[str, Any]]:
        """The entries of one split (``"train"``, ``"val"``, ``"test"``, or ``"all"``); :class:`ZooError` for
        another name (a misspelt ``"trian"`` would otherwise select nothing, silently)."""
        if name not in ("train", "val", "test", "all"):
            raise ZooError(f"{self.root}: no split {name!r}; choose from 'train', 'val', 'test', 'all'")
        return list(self.entries) if name == "all" else [e for e in self.entries if e["split"] == name]

    def path(self, entry: dict[str, Any]) -> str:
        """The weights file of ``entry``; :class:`ZooError` if it would lie outside the zoo."""
        try:
            return inside(self.root, entry["file"], f"file of model {entry.get('id')!r}")
        except ValueError as err:
            raise ZooError(f"{err}; refusing to read it") from None

    def verify(self, entry: dict[str, Any]) -> None:
        """Raise :class:`ZooError` if the model's weights file is missing or fails its checksum."""
        path = regular_file(self.path(entry), f"weights of model {entry['id']}")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise ZooError(f"weights of model {entry['id']} are corrupted: {path} has sha256 {digest[:12]}..., "
                           f"the manifest says {entry['sha256'][:12]}...; regenerate the zoo (rerun the "
                           "same command after deleting the file and its manifest line)")

    def load_state_dict(self, entry: dict[str, Any], verify: bool = True) -> dict[str, torch.Tensor]:
        """The model's weights (checked against the manifest checksum unless ``verify=False``)."""
        if verify:
            self.verify(entry)
        try:
            return load_file(regular_file(self.path(entry), f"weights of model {entry['id']}"))
        except FileNotFoundError:
            raise ZooError(f"weights of model {entry['id']} missing: {self.path(entry)}") from None
        except SafetensorError as err:  # truncated, garbage, a pickle, a header too large
            raise ZooError(f"weights of model {entry['id']} are unreadable: {self.path(entry)} is not a safetensors "
                           f"file ({err}); regenerate the zoo") from None

    def build(self, spec: dict[str, Any]) -> torch.nn.Module:
        """The (randomly initialised) module of a manifest spec, of a built-in or an imported family
        (:mod:`nngraph.zoo.architectures`)."""
        return build_zoo_model(spec, self.root, self.limits)

    def load_model(self, entry: dict[str, Any], verify: bool = True) -> torch.nn.Module:
        """Rebuild the model from its spec and load its weights; returned in eval mode.

        Raises:
            ZooError: naming the model if its weights do not fit the module its spec builds (missing or
                unexpected keys, wrong shapes: a spec or weights file of another architecture).
        """
        model = self.build(entry["spec"])
        state = self.load_state_dict(entry, verify)
        problems = state_mismatch(state, model.state_dict())
        if problems:
            raise ZooError(f"weights of model {entry['id']} ({self.path(entry)}) do not fit the "
                           f"{entry['spec'].get('family')} architecture of its spec: {problems}; the manifest line "
                           "or the weights file belongs to another model")
        model.load_state_dict(state)
        return model.eval()


def state_mismatch(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """What keeps ``state`` from loading into a module whose ``state_dict()`` is ``expected``: missing keys,
    unexpected keys and wrong shapes, on one line (``""`` if it fits)."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = [f"{k}: {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = ([f"missing keys {missing}"] if missing else []) + ([f"unexpected keys {extra}"] if extra else []) \
        + ([f"wrong shapes: {'; '.join(shapes)}"] if shapes else [])
    return ", ".join(problems)
