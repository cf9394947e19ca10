"""A PyG dataset over a model zoo: every model converted to its neural graph once, then cached.

The cache lives outside the zoo (which may be read-only or shared), by default in
``<user cache>/graphs/<zoo name>-<hash of its path>`` (:func:`nngraph.io.zoo_cache_dir`: ``$NNGRAPH_CACHE``,
else ``$XDG_CACHE_HOME/nngraph``, else ``~/.cache/nngraph``). Nothing is written into the zoo directory.
It holds one file per model, ``<cache_dir>/<model_id>.pt``, with the features that depend on
the weights (``x``, ``edge_attr``), and one file per architecture, ``<cache_dir>/structure-<key>.pt``,
with the rest of the graph (edge list, node types, ...), which every model of that architecture
shares. Both are dicts of plain tensors saved with ``torch.save`` and read back with
``torch.load(weights_only=True)``; model files are stamped with the weights' sha256, the nngraph
version, the cache format and a fingerprint of the converter's source (:func:`graph_code_fingerprint`), so a
cached graph is reconverted when its model, nngraph, the format or the code that converts it changes (``<cache_dir>/index.json`` maps model ids to their stamps). Temporary files a killed
conversion left in the cache are deleted when the next dataset is created.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import warnings
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file
from torch import nn
from torch_geometric.data import Data, Dataset
from tqdm.auto import tqdm

from nngraph.io import atomic_write, clean_stale_temps, zoo_cache_dir
from nngraph.zoo.architectures import example_inputs
from nngraph.zoo.specs import SpecLimits
from nngraph.zoo.storage import Zoo, ZooError, inside, regular_file, zoo_file

__all__ = ["ZooDataset", "example_inputs_for_spec", "default_target"]

#: Bump when the cached format changes.
CACHE_FORMAT = 4  # 3: act_args, conv_args, pool, pool_args; 4: kernels at their own size (edge_attr (W, 1), kernel_shape)

#: The code that decides what graph a zoo entry becomes: the converter, the schema, the layers and the
#: spec -> model builders. Its fingerprint is part of every cache stamp, so a cached graph is reconverted
#: whenever that code changes, even when nobody bumped ``CACHE_FORMAT`` or the version.
_GRAPH_CODE = ("convert", "schema.py", "modules.py", "zoo/specs.py", "zoo/blocks.py", "zoo/architectures.py",
               "zoo/siren.py", "zoo/recurrent.py")


@functools.lru_cache(maxsize=1)
def graph_code_fingerprint() -> str:
    """16 hex digits of the sha256 of the source files in :data:`_GRAPH_CODE` (path and contents, sorted)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the nngraph package
    files: list[str] = []
    for part in _GRAPH_CODE:
        path = os.path.join(root, part)
        if os.path.isdir(path):
            files += [os.path.join(path, f) for f in os.listdir(path) if f.endswith(".py")]
        elif os.path.exists(path):
            files.append(path)
    digest = hashlib.sha256()
    for f in sorted(files):
        digest.update(os.path.relpath(f, root).encode() + b"\0")
        with open(f, "rb") as fh:
            digest.update(fh.read() + b"\0")
    return digest.hexdigest()[:16]
#: Graph fields that depend on the weights; every other field depends on the architecture only.
WEIGHT_FIELDS = ("x", "edge_attr")


def example_inputs_for_spec(spec: dict[str, Any], batch: int = 2) -> tuple[torch.Tensor]:
    """Zero inputs of the shape a zoo model expects (``(batch, *in_shape)`` or ``(batch, in_features)``, or
    the ``inputs`` an imported spec records: :func:`nngraph.zoo.architectures.example_inputs`)."""
    if "inputs" in spec:
        return example_inputs(spec, batch)
    if "in_shape" in spec:
        return (torch.zeros(batch, *spec["in_shape"]),)
    return (torch.zeros(batch, spec["in_features"]),)


def default_target(kind: str) -> str:
    """The manifest field used as ``y``: the digit for INR zoos, the test accuracy for classifier zoos."""
    return {"inr": "label", "classifier": "test_acc"}[kind]


def _to_plain(graph: Data) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in graph.items():
        if torch.is_tensor(value):
            out[key] = value.detach().cpu()
        elif key == "num_nodes":
            out[key] = torch.tensor(int(value))
        elif key == "input_spec":  # the zoo's spec tells the inputs (example_inputs_for_spec)
            continue
        else:
            raise TypeError(f"cannot cache graph field {key!r} of type {type(value).__name__}")
    return out


def _saved(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _from_plain(fields: dict[str, torch.Tensor]) -> Data:
    fields = dict(fields)
    num_nodes = fields.pop("num_nodes", None)
    data = Data(**fields)
    if num_nodes is not None:
        data.num_nodes = int(num_nodes)
    return data


class ZooDataset(Dataset):
    r"""The neural graphs of one split of a zoo built by :mod:`nngraph.zoo`.

    Each item is the :class:`~torch_geometric.data.Data` of :func:`nngraph.to_graph` (see
    :mod:`nngraph.schema`) plus

    - ``y``: ``(1,)`` the target, ``long`` for integer fields (the digit of an INR), ``float``
      otherwise (the test accuracy of a classifier),
    - ``family`` (str), ``model_id`` (str), ``model_idx`` ``(1,)`` long (the model's zoo index),
    - one ``(1,)`` float tensor per name in ``fields``.

    Args:
        root (str): the zoo directory.
        split (str): ``"train"``, ``"val"``, ``"test"`` or ``"all"``. (default: :obj:`"train"`)
        target (str, optional): manifest field used as ``y``. (default: ``label`` for INR zoos,
            ``test_acc`` for classifier zoos)
        fields (Sequence[str]): further numeric manifest fields to attach. (default: :obj:`()`)
        families (Sequence[str], optional): keep only these model families.
        kernel_box: deprecated and ignored: every edge kernel is stored at its own size, and graphs
            of any architectures batch with a plain ``DataLoader``. (default: :obj:`"auto"`)
        cache_dir (str, optional): where graphs are cached, never inside the zoo by default.
            (default: :func:`nngraph.io.zoo_cache_dir` ``(root, "graphs")``, under ``$NNGRAPH_CACHE`` or
            the user's cache directory)
        verify (bool): check every weights file of the zoo against its manifest checksum when the
            dataset is created (fast: a few MB per thousand small models). (default: :obj:`True`)
        skip_unsupported (bool): leave out models the converter rejects (with a warning) instead of
            raising. (default: :obj:`False`)
        in_memory (bool): keep all graphs in memory instead of reading the cache per item.
        force_reload (bool): reconvert every model.
        transform (callable, optional): applied to every item on access.
        progress (bool): show a progress bar while converting.
        limits (SpecLimits, optional): the largest model a manifest spec may describe.
            (default: :data:`~nngraph.zoo.specs.DEFAULT_LIMITS`)

    Raises:
        ZooError: if the zoo holds no models, a manifest line is bad (an unsafe id or path, a spec over
            ``limits``, a missing field: named with its line), a weights file is missing or fails its
            checksum, or a cache file is unreadable.
        ValueError: for a split the zoo does not have (``"trian"``), or ``families`` it does not have.
    """

    def __init__(self, root: str, split: str = "train", target: str | None = None, fields: Sequence[str] = (),
                 families: Sequence[str] | None = None, kernel_box: tuple[int, int, int] | str = "auto",
                 cache_dir: str | None = None, verify: bool = True, skip_unsupported: bool = False,
                 in_memory: bool = False, force_reload: bool = False,
                 transform: Callable[[Data], Data] | None = None, progress: bool = True,
                 limits: SpecLimits | None = None):
        self.zoo = Zoo(root, limits)
        self.split = split
        self.kind = self.zoo.config["kind"]
        self.target = target or default_target(self.kind)
        self.fields = tuple(fields)
        self.cache_dir = cache_dir or zoo_cache_dir(root, "graphs")
        population = self._checked_population(split, families)
        self._images = None
        self._structures: dict[str, dict[str, torch.Tensor]] = {}
        super().__init__(None, transform)
        if verify:
            for e in population:
                self.zoo.verify(e)
        # every model of the zoo is converted (once); the architectures the converter refuses are known
        # before any split is read
        converted = self._convert(population, kernel_box, force_reload, skip_unsupported, progress)
        self.entries = [e for e in converted if split == "all" or e["split"] == split]
        self._graphs = [self._read(e) for e in self.entries] if in_memory else None

    def _where(self, entry: dict) -> str:
        """``manifest path:line`` of ``entry`` (looked up on the error path only)."""
        import glob

        for path in sorted(glob.glob(os.path.join(self.zoo.root, "manifest*.jsonl"))):
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if f'"id": {json.dumps(entry["id"])}' in line:
                        return f"{path}:{number}"
        return f"manifest of {self.zoo.root}"

    def _checked_population(self, split: str, families: Sequence[str] | None) -> list[dict]:
        """The entries to convert, after checking the zoo is not empty, ``split`` and ``families`` exist and
        every entry has the fields the dataset reads."""
        entries = self.zoo.entries
        if not entries:
            raise ZooError(f"{self.zoo.root} holds no models: no complete line in its manifest*.jsonl (an empty "
                           "or unfinished build); build or resume it with python -m nngraph.zoo")
        expected = self.zoo.config.get("num_models")
        if isinstance(expected, int) and not isinstance(expected, bool) and len(entries) < expected:
            warnings.warn(f"ZooDataset: {self.zoo.root} is unfinished: {len(entries)} of {expected} models stored (a "
                          "build stopped early, by a kill or --max-models, or one shard of several); rerun the command "
                          "that built it to finish it", stacklevel=3)
        for e in entries:
            missing = [k for k in ("split", "family") if k not in e]
            if missing:
                raise ZooError(f"{self._where(e)}: model {e['id']} lacks {missing}; the manifest is corrupted or "
                               "not from nngraph.zoo")
        splits = {e["split"] for e in entries}
        choices = sorted(splits | {"train", "val", "test"})
        if split != "all" and split not in choices:
            raise ValueError(f"Could not resolve split {split!r} among choices {choices + ['all']} of zoo "
                             f"{self.zoo.root}")
        if split != "all" and split not in splits:
            warnings.warn(f"ZooDataset: split {split!r} of zoo {self.zoo.root} holds no models", stacklevel=3)
        population = entries
        if families is not None:
            have = {e["family"] for e in entries}
            unknown = sorted(set(families) - have)
            if unknown:
                raise ValueError(f"Could not resolve families {unknown} among the zoo's {sorted(have)}")
            population = [e for e in entries if e["family"] in set(families)]
        for e in population:
            if split != "all" and e["split"] != split:
                continue
            missing = [k for k in (self.target, *self.fields) if k not in e]
            if missing:
                raise ZooError(f"{self._where(e)}: model {e['id']} lacks {missing} (the target and fields "
                               f"asked for); pass target= / fields= of what the manifest holds: {sorted(e)}")
            for name in (self.target, *self.fields):
                value = e[name]
                number = isinstance(value, (int, float)) and (name != self.target or not isinstance(value, bool))
                if not number or not math.isfinite(value):
                    what = "the target" if name == self.target else "a field asked for"
                    raise ZooError(f"{self._where(e)}: {name} of model {e['id']} is {value!r}, not a finite number "
                                   f"({what}: an integer class or a float); the manifest is corrupted or its "
                                   "table gave text where a number belongs")
            label = e.get("label")
            if self.kind == "inr" and self.target == "label" and (not isinstance(label, int) or isinstance(label, bool)
                                                                  or label < 0):
                raise ZooError(f"{self._where(e)}: label of model {e['id']} is {label!r}; an INR's label is a class, "
                               "an integer >= 0")
        return population

    # -- conversion and cache -------------------------------------------------------------------
    def _stamp(self, entry: dict) -> str:
        import nngraph

        return f"{CACHE_FORMAT}|{getattr(nngraph, '__version__', '?')}|{graph_code_fingerprint()}|{entry['sha256']}"

    def _cache_path(self, entry: dict) -> str:
        try:
            return inside(self.cache_dir, f"{entry['id']}.pt", f"cache file of model {entry['id']!r}")
        except ValueError as err:
            raise ZooError(f"{err}; refusing to write it") from None

    def _structure_key(self, entry: dict) -> str:
        text = json.dumps([CACHE_FORMAT, graph_code_fingerprint(), entry["spec"]], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _structure_path(self, key: str) -> str:
        return os.path.join(self.cache_dir, f"structure-{key}.pt")

    def _structure(self, key: str) -> dict[str, torch.Tensor]:
        if key not in self._structures:
            path = self._structure_path(key)
            try:
                self._structures[key] = torch.load(path, weights_only=True)
            except FileNotFoundError:
                raise ZooError(f"cached graph structure {path} is missing; pass force_reload=True") from None
            except Exception as err:
                raise ZooError(f"cached graph structure {path} is unreadable ({err}); delete it or pass "
                               "force_reload=True") from None
        return self._structures[key]

    def _load_cache(self, entry: dict) -> dict:
        path = self._cache_path(entry)
        if not os.path.exists(path):
            raise ZooError(f"cached graph of model {entry['id']} is missing ({path}); recreate the dataset")
        try:
            blob = torch.load(path, weights_only=True)
        except Exception as err:
            raise ZooError(f"cached graph {path} of model {entry['id']} is unreadable ({err}); delete it "
                           "or pass force_reload=True") from None
        if blob.get("stamp") != self._stamp(entry):
            raise ZooError(f"cached graph {path} is stale (the model or nngraph changed); recreate the dataset")
        return blob

    def _index_path(self) -> str:
        return os.path.join(self.cache_dir, "index.json")

    def _convert(self, entries: list[dict], kernel_box, force: bool, skip: bool, progress: bool) -> list[dict]:
        from nngraph import UnsupportedError, build_layout, to_graph

        os.makedirs(self.cache_dir, exist_ok=True)
        clean_stale_temps(self.cache_dir)
        try:
            with open(self._index_path(), encoding="utf-8") as f:
                self._index = json.load(f)  # model id -> stamp
        except (FileNotFoundError, json.JSONDecodeError):
            self._index = {}
        # 1. one trace per architecture: does the converter take it?
        if kernel_box != "auto":
            warnings.warn("ZooDataset(kernel_box=...) is deprecated and ignored: edge kernels are stored at "
                          "their own size", DeprecationWarning, stacklevel=3)
        skipped: dict[str, list[str]] = {}  # reason -> model ids
        own: dict[str, tuple | None] = {}
        why: dict[str, str] = {}
        for e in entries:
            key = json.dumps(e["spec"], sort_keys=True)
            if key not in own:
                try:
                    own[key] = build_layout(self.zoo.build(e["spec"]), example_inputs_for_spec(e["spec"])).max_kernel_shape
                except UnsupportedError as err:
                    if not skip:
                        raise UnsupportedError(f"model {e['id']} (family {e['family']}): {err}") from err
                    own[key], why[key] = None, str(err).split(". ")[0]
            if own[key] is None:
                skipped.setdefault(why[key], []).append(e["id"])
        kept = [e for e in entries if own[json.dumps(e["spec"], sort_keys=True)] is not None]
        # 2. convert what is not cached under the current stamp
        todo = [e for e in kept if force or self._index.get(e["id"]) != self._stamp(e)
                or not os.path.exists(self._cache_path(e))]
        for e in tqdm(todo, desc="converting models", disable=not progress or not todo, dynamic_ncols=True):
            model = self.zoo.load_model(e, verify=False)  # verified in __init__ (or on purpose not)
            graph = _to_plain(to_graph(model, example_inputs_for_spec(e["spec"])))
            key = self._structure_key(e)
            if key not in self._structures:  # (re)written once per architecture and run
                self._structures[key] = {k: v for k, v in graph.items() if k not in WEIGHT_FIELDS}
                atomic_write(self._structure_path(key), _saved(self._structures[key]))
            weights = {k: graph[k] for k in WEIGHT_FIELDS}
            atomic_write(self._cache_path(e), _saved({"stamp": self._stamp(e), "structure": key, "graph": weights}))
            self._index[e["id"]] = self._stamp(e)
        if todo:
            atomic_write(self._index_path(), json.dumps(self._index).encode())
        for reason, ids in skipped.items():
            warnings.warn(f"ZooDataset: left out {len(ids)} models (e.g. {ids[0]}): {reason}")
        return kept

    def _read(self, entry: dict) -> Data:
        blob = self._load_cache(entry)
        structure = {k: v.clone() for k, v in self._structure(blob["structure"]).items()}  # items own their tensors
        data = _from_plain({**structure, **blob["graph"]})
        value = entry[self.target]
        data.y = torch.tensor([value], dtype=torch.long if isinstance(value, int) else torch.float)
        data.family = entry["family"]
        data.model_id = entry["id"]
        data.model_idx = torch.tensor([entry["index"]])  # not "index": PyG would offset it when batching
        for name in self.fields:
            data[name] = torch.tensor([float(entry[name])])
        return data

    # -- Dataset interface ----------------------------------------------------------------------
    def len(self) -> int:
        return len(self.entries)

    def get(self, idx: int) -> Data:
        return self._graphs[idx].clone() if self._graphs is not None else self._read(self.entries[idx])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, kind={self.kind}, split={self.split}, y={self.target})"

    # -- models -----------------------------------------------------------------------------
    def entry(self, idx: int) -> dict[str, Any]:
        """The manifest entry of item ``idx`` (spec, hyperparameters, metrics, ...)."""
        return self.entries[idx]

    def load_model(self, idx: int) -> nn.Module:
        """The stored model of item ``idx`` (weights verified), in eval mode."""
        return self.zoo.load_model(self.entries[idx])

    def model_from_graph(self, graph: Data, idx: int) -> nn.Module:
        """The model of item ``idx`` with its parameters read from ``graph`` (e.g. an edited graph)."""
        from nngraph import from_graph

        spec = self.entries[idx]["spec"]
        return from_graph(graph, self.zoo.build(spec), example_inputs_for_spec(spec)).eval()

    def image(self, idx: int) -> torch.Tensor:
        """The image an INR was fitted to, ``(C, H, W)`` in [0, 1] (INR zoos only)."""
        if self.kind != "inr":
            raise ValueError("image() is only defined for INR zoos")
        path = os.path.join(self.zoo.root, "images.safetensors")
        if self._images is None:
            zoo_file(self.zoo.root, "images.safetensors")
            if not os.path.exists(path):
                raise ZooError(f"{path} is missing; rerun the zoo build command to restore it")
            regular_file(path, "the zoo's images")
            try:
                self._images = load_file(path)["images"]
            except Exception as err:  # SafetensorError (truncated, garbage) or a missing key
                raise ZooError(f"{path} is unreadable ({type(err).__name__}: {err}); rerun the zoo build "
                               "command after deleting it to restore it") from None
        entry = self.entries[idx]
        at = entry.get("image_index")
        if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at < len(self._images):
            raise ZooError(f"{self._where(entry)}: image_index of model {entry['id']} is {at!r}, but {path} holds "
                           f"{len(self._images)} images; the zoo's files do not belong together (rerun the zoo "
                           "build command after deleting images.safetensors)")
        return self._images[at]
