"""The reliability table: injected kills, bad inputs and hostile files, counted.

Usage: ``python -m benchmarks.reliability`` (about a minute on 2 cores).

- **faults**: a kill (an exception that nothing handles, at the n-th ``os.replace``, i.e. between any two
  committed writes) during a zoo build and during training, at every commit point of a small run, and a
  real ``SIGKILL`` of a training subprocess; each is resumed by rerunning, and counts if the result is
  byte-identical to an uninterrupted run (zoo checksums; weights, validation losses, best checkpoint).
- **bad inputs**: each case counts if it raises an error of the expected type whose message names the
  file, the line, the field or the argument (a regex per case); "silent" means no error at all.
- **hostile files**: manifest ids and paths that leave the zoo, huge specs and headers, pickles; each
  counts if it is refused (an nngraph error or torch's weights-only refusal) with no side effect (no
  file written outside, no pickle code run).

:func:`issue_cases` adds the cases of issues 27 and 33 to the three counts: ``zoo import`` tables (reserved
columns, two rows for a file, missing columns), casts, symlinks and pickles in a source folder, manifests
listing a model twice or a split outside train / val / test, string and negative labels, weights of another
architecture, bad ``inr --source`` arrays, malformed embeddings files for ``nngraph search``, the command
lines' one-line errors, imports killed at every write; and ten more of what a stranger's zoo may hold
(``zoo.json`` / manifest / images symlinked out of the zoo, a named pipe or a folder as weights, an index past
int64, images that do not fit the manifest, an unknown ``kind``, a bad ``inr`` record, an ``os:system``
factory, a header naming a column twice).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402

import nngraph  # noqa: E402
from nngraph.errors import NNGraphError  # noqa: E402


class _Killed(BaseException):
    """A kill: not an ``Exception``, so nothing on the way up handles it."""


@contextlib.contextmanager
def die_at(n: int):
    """Raise :class:`_Killed` just before the ``n``-th ``os.replace`` (every committed write is one)."""
    real, calls = os.replace, [0]

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == n:
            raise _Killed
        return real(src, dst)

    os.replace = replace
    try:
        yield calls
    finally:
        os.replace = real


def count_replaces(fn: Callable[[], None]) -> int:
    with die_at(0) as calls:
        fn()
    return calls[0]


# -- faults ---------------------------------------------------------------------------------------
def zoo_faults(work: str) -> list[tuple[str, bool]]:
    from nngraph.zoo import Zoo, build_classifier_zoo, build_inr_zoo
    from tests.zoo.tiny import checksums, tiny_classifiers, tiny_inr

    results = []
    for name, build, config in (("INR zoo build", build_inr_zoo, tiny_inr(max_images=4, inrs_per_image=2)),
                                ("classifier zoo build", build_classifier_zoo, tiny_classifiers(num_runs=3))):
        full = os.path.join(work, f"{name}-full")
        total = count_replaces(lambda: build(full, config, progress=False))
        expected = checksums(Zoo(full))
        for n in range(1, total + 1, max(1, total // 6)):
            out = os.path.join(work, f"{name}-kill{n}")
            try:
                with die_at(n):
                    build(out, config, progress=False)
            except _Killed:
                pass
            build(out, config, progress=False)
            results.append((f"{name}, killed at write {n}/{total}", checksums(Zoo(out)) == expected))
    return results


def training_faults(work: str) -> list[tuple[str, bool]]:
    from tests import test_checkpoint as tc

    results = []
    full_dir = os.path.join(work, "train-full")
    full = tc._outcome(tc._fit(full_dir)[0], full_dir)
    total = count_replaces(lambda: tc._fit(os.path.join(work, "train-count")))

    def same(a, b) -> bool:
        try:
            tc._assert_same(a, b)
            return True
        except AssertionError:
            return False

    for n in range(1, total + 1, 2):
        out = os.path.join(work, f"train-kill{n}")
        try:
            with die_at(n):
                tc._fit(out)
        except _Killed:
            pass
        model, _ = tc._fit(out)
        results.append((f"training, killed at write {n}/{total} (torn checkpoint pair)", same(tc._outcome(model, out), full)))
    # real SIGKILLs of a subprocess (no cleanup runs)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    script = os.path.join(ROOT, "tests", "train_worker.py")
    ref = os.path.join(work, "sig-full")
    subprocess.run([sys.executable, script, ref, "4"], env=env, check=True, timeout=300, cwd=ROOT)
    expected = json.load(open(os.path.join(ref, "rank0.json")))
    for n in (3, 10):
        out = os.path.join(work, f"sig-kill{n}")
        done = subprocess.run([sys.executable, "-c", tc._KILLER.format(root=ROOT, n=n, out=out)], env=env,
                              timeout=300, cwd=ROOT)
        subprocess.run([sys.executable, script, out, "4"], env=env, check=True, timeout=300, cwd=ROOT)
        got = json.load(open(os.path.join(out, "rank0.json")))
        results.append((f"training subprocess, SIGKILL at write {n}",
                        done.returncode == -signal.SIGKILL and got["weights"] == expected["weights"]
                        and [r["val_loss"] for r in got["history"]] == [r["val_loss"] for r in expected["history"]]))
    return results


# -- bad inputs -----------------------------------------------------------------------------------
def _clear(fn: Callable[[], object], errors, pattern: str) -> str:
    """``"clear"``, ``"unclear"`` (another error or a message that names nothing) or ``"silent"``."""
    try:
        fn()
    except errors as err:
        return "clear" if re.search(pattern, f"{type(err).__name__}: {err}", re.S) else f"unclear: {err}"
    except SystemExit as err:
        return "clear" if err.code not in (0, None) else "silent"
    except Exception as err:  # noqa: BLE001
        return f"unclear: {type(err).__name__}: {err}"
    return "silent"


def _edit_line(path: str, number: int, edit: Callable[[dict], object]) -> None:
    lines = open(path, encoding="utf-8").read().split("\n")
    value = edit(json.loads(lines[number - 1]))
    lines[number - 1] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    open(path, "w", encoding="utf-8").write("\n".join(lines))


def bad_inputs(work: str, inr_zoo: str, clf_zoo: str) -> list[tuple[str, str]]:
    from nngraph.data import ZooDataset
    from nngraph.gnn import NeuralGraphEncoder
    from nngraph.train.checkpoint import load_checkpoint, save_checkpoint

    cases: list[tuple[str, Callable, object, str]] = []
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3))
    batch = nngraph.batch_graphs([nngraph.to_graph(mlp), nngraph.to_graph(mlp)])
    enc = NeuralGraphEncoder(2, 8, 1)

    def with_fields(**fields):
        out = copy.copy(batch)
        for k, v in fields.items():
            delattr(out, k) if v is None else setattr(out, k, v)
        return out

    n = int(batch.num_nodes)
    for what, fields, pattern in [
        ("float64 graph, float32 encoder", dict(x=batch.x.double()), r"float64 but the encoder"),
        ("float64 edge_attr", dict(edge_attr=batch.edge_attr.double()), r"edge_attr is torch.float64"),
        ("edge_index out of range", dict(edge_index=batch.edge_index + n), r"edge_index refers to node"),
        ("negative edge_index", dict(edge_index=batch.edge_index - 1), r"edge_index refers to node -1"),
        ("node_type 7", dict(node_type=torch.full_like(batch.node_type, 7)), r"node_type holds 7"),
        ("node_kind out of range", dict(node_kind=torch.full_like(batch.node_kind, 99)), r"node_kind holds 99"),
        ("edge_type out of range", dict(edge_type=torch.full_like(batch.edge_type, 64)), r"edge_type holds 64"),
        ("no edge_attr", dict(edge_attr=None), r"no \['edge_attr'\]"),
        ("no x", dict(x=None), r"no \['x'\]"),
        ("x of 3 columns", dict(x=batch.x[:, :3]), r"graph.x has shape"),
        ("edge_attr rows short", dict(edge_attr=batch.edge_attr[:5]), r"kernels of its"),
    ]:
        cases.append((f"encoder: {what}", lambda f=fields: enc(with_fields(**f)), (TypeError, ValueError), pattern))
    probe_enc = NeuralGraphEncoder(2, 8, 1, probe_dim=4)
    cases += [
        ("encoder: probe of the wrong width", lambda: probe_enc(with_fields(probe=torch.zeros(n, 3))), ValueError,
         r"probe has shape .* expects"),
        ("encoder: probe missing", lambda: probe_enc(batch), ValueError, r"no 'probe'"),
        ("batch_graphs([])", lambda: nngraph.batch_graphs([]), ValueError, r"at least one graph"),
        ("to_graph of a meta-device model", lambda: nngraph.to_graph(copy.deepcopy(mlp).to("meta")), ValueError,
         r"meta device"),
        ("to_graph of a state dict", lambda: nngraph.to_graph(mlp.state_dict()), TypeError, r"needs a torch.nn.Module"),
        ("from_graph with swapped arguments", lambda: nngraph.from_graph(mlp, nngraph.to_graph(mlp)), TypeError,
         r"needs a torch.nn.Module"),
        ("from_graph of another architecture", lambda: nngraph.from_graph(
            nngraph.to_graph(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))), mlp),
         nngraph.GraphMismatchError, r"nodes"),
        ("from_graph of another activation", lambda: nngraph.from_graph(
            nngraph.to_graph(nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 3))), mlp),
         nngraph.GraphMismatchError, r"act"),
    ]

    def zoo_copy(src: str, name: str) -> str:
        dst = os.path.join(tempfile.mkdtemp(dir=work), name)
        shutil.copytree(src, dst)
        return dst

    def manifest(root: str) -> str:
        return os.path.join(root, "manifest.jsonl")

    def dataset_case(name, prepare, pattern, split="all", src=inr_zoo, errors=(NNGraphError, ValueError), **kw):
        def run():
            root = zoo_copy(src, re.sub(r"\W", "_", name))
            prepare(root)
            ds = ZooDataset(root, split, progress=False, **kw)
            ds[0]
            if ds.kind == "inr":
                ds.image(0)
        cases.append((f"zoo: {name}", run, errors, pattern))

    for field in ("id", "sha256", "file", "spec", "index", "split", "family", "label"):
        dataset_case(f"manifest line missing {field!r}",
                     lambda r, f=field: _edit_line(manifest(r), 1, lambda e: {k: v for k, v in e.items() if k != f}),
                     rf"manifest.jsonl:1: .*{field}")
    dataset_case("manifest line null", lambda r: _edit_line(manifest(r), 2, lambda e: "null"), r"manifest.jsonl:2")
    dataset_case("manifest line a list", lambda r: _edit_line(manifest(r), 2, lambda e: "[1]"), r"manifest.jsonl:2")
    dataset_case("manifest line cut JSON", lambda r: _edit_line(manifest(r), 2, lambda e: '{"id": "a'),
                 r"manifest.jsonl:2 is not valid JSON")
    dataset_case("manifest invalid UTF-8", lambda r: open(manifest(r), "ab").write(b'{"id": "\xff"}\n'),
                 r"manifest.jsonl:\d+ is not UTF-8")
    dataset_case("empty manifest", lambda r: open(manifest(r), "w").close(), r"holds no models")
    dataset_case("split 'trian'", lambda r: None, r"Could not resolve split 'trian'", split="trian")
    dataset_case("unknown family", lambda r: None, r"Could not resolve families", families=["nope"])
    dataset_case("unknown target field", lambda r: None, r"manifest.jsonl:\d+: .*lacks \['nope'\]", target="nope")
    dataset_case("garbage zoo.json", lambda r: open(os.path.join(r, "zoo.json"), "w").write("{oops"),
                 r"zoo.json is not valid JSON")
    dataset_case("zoo.json a list", lambda r: open(os.path.join(r, "zoo.json"), "w").write("[]"),
                 r"zoo.json holds no zoo settings")
    dataset_case("no zoo.json", lambda r: os.remove(os.path.join(r, "zoo.json")), r"zoo.json is missing")

    def truncate(path: str, size: int = 40) -> None:
        with open(path, "r+b") as f:
            f.truncate(size)

    dataset_case("truncated weights", lambda r: truncate(os.path.join(r, json.loads(open(manifest(r)).readline())["file"])),
                 r"weights/.*\.safetensors has sha256")
    dataset_case("flipped byte in weights", lambda r: _flip(os.path.join(r, json.loads(open(manifest(r)).readline())["file"])),
                 r"are corrupted")
    dataset_case("truncated images.safetensors", lambda r: truncate(os.path.join(r, "images.safetensors")),
                 r"images.safetensors is unreadable")
    dataset_case("spec that does not fit its weights",
                 lambda r: _edit_line(manifest(r), 1, lambda e: {**e, "spec": {**e["spec"], "hidden": [9, 9]}}),
                 r"(manifest|model|weights|spec|size)", errors=(NNGraphError, RuntimeError))

    def checkpoint_case(name, damage, pattern):
        def run():
            d = os.path.join(work, "ckpt", re.sub(r"\W", "_", name))
            save_checkpoint(d, "last", nn.Linear(3, 2), {"epoch": 1})
            damage(d)
            load_checkpoint(d, "last")
        cases.append((f"checkpoint: {name}", run, NNGraphError, r"last\.(json|safetensors)"))

    checkpoint_case("garbage last.json", lambda d: open(os.path.join(d, "last.json"), "w").write("{x"), None)
    checkpoint_case("last.json a list", lambda d: open(os.path.join(d, "last.json"), "w").write("[]"), None)
    checkpoint_case("truncated last.safetensors", lambda d: truncate(os.path.join(d, "last.safetensors"), 20), None)
    checkpoint_case("flipped byte in last.safetensors", lambda d: _flip(os.path.join(d, "last.safetensors")), None)
    checkpoint_case("edited last.json", lambda d: open(os.path.join(d, "last.json"), "w").write(
        open(os.path.join(d, "last.json")).read().replace('"epoch": 1', '"epoch": 2')), None)

    def best_json():
        d = os.path.join(work, "ckpt", "best")
        save_checkpoint(d, "best", nn.Linear(3, 2), {"epoch": 1})
        open(os.path.join(d, "best.json"), "w").write("garbage")
        load_checkpoint(d, "best")
    cases.append(("checkpoint: garbage best.json", best_json, NNGraphError, r"best\.json"))

    # the command lines
    from nngraph.cli import main as cli

    def quiet(fn):
        with contextlib.redirect_stderr(open(os.devnull, "w")), contextlib.redirect_stdout(open(os.devnull, "w")):
            return fn()

    def task_fails(argv, module="inr_classification"):
        import importlib

        def run():
            cwd = os.getcwd()
            empty = tempfile.mkdtemp(dir=work)
            os.chdir(empty)
            try:
                code = quiet(lambda: importlib.import_module(f"tasks.{module}").main(argv))
            finally:
                os.chdir(cwd)
            if code == 1 and not os.listdir(empty):
                raise ValueError("exit 1, one line, nothing created")
        return run

    cases += [
        ("task: inr_classification on a classifier zoo", task_fails(["--zoo", clf_zoo]), ValueError, "nothing created"),
        ("task: accuracy_prediction on an INR zoo", task_fails(["--zoo", inr_zoo], "accuracy_prediction"), ValueError,
         "nothing created"),
        ("task: a wrong --zoo path", task_fails(["--zoo", os.path.join(work, "nowhere")]), ValueError,
         "nothing created"),
        ("cli: nngraph task --help exits 0", lambda: quiet(lambda: cli(["task", "--help"])) == 0 or 1 / 0, (), ""),
        ("cli: convert of a missing file", lambda: quiet(lambda: cli(["convert", "nope.pt2", "-o", "g.pt"])) == 2
         and _raise(ValueError("exit 2")), ValueError, "exit 2"),
        ("cli: convert of a state dict without --factory", lambda: _cli_exit(cli, work, ["--factory"]), ValueError, "exit 2"),
        ("cli: --inputs that is not a shape", lambda: _cli_exit(cli, work, ["--factory", "x:y", "--inputs", "a,b"]),
         ValueError, "exit 2"),
    ]
    results = []
    for name, fn, errors, pattern in cases:
        if errors == ():  # a case that must simply succeed
            try:
                fn()
                results.append((name, "clear"))
            except Exception as err:  # noqa: BLE001
                results.append((name, f"unclear: {err}"))
            continue
        results.append((name, _clear(fn, errors, pattern)))
    return results


def _raise(err):
    raise err


def _cli_exit(cli, work, extra) -> None:
    from safetensors.torch import save_file

    path = os.path.join(work, "sd.safetensors")
    save_file(nn.Linear(2, 2).state_dict(), path)
    args = ["convert", path, "-o", os.path.join(work, "g.pt")]
    if extra != ["--factory"]:
        args += extra
    with contextlib.redirect_stderr(open(os.devnull, "w")):
        code = cli(args)
    if code == 2 and not os.path.exists(os.path.join(work, "g.pt")):
        raise ValueError("exit 2")


def _flip(path: str, offset: int = -3) -> None:
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x01
    open(path, "wb").write(bytes(data))


# -- hostile files --------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile(work: str, inr_zoo: str) -> list[tuple[str, bool]]:
    from safetensors.torch import load_file

    from nngraph.data import ZooDataset
    from nngraph.train.checkpoint import load_checkpoint, save_checkpoint
    from nngraph.zoo import Zoo
    from nngraph.zoo.specs import SpecLimits

    victim_dir = os.path.join(work, "victim")
    os.makedirs(victim_dir, exist_ok=True)
    outside = os.path.join(victim_dir, "secret.safetensors")
    shutil.copy(os.path.join(inr_zoo, json.loads(open(os.path.join(inr_zoo, "manifest.jsonl")).readline())["file"]),
                outside)
    results = []

    def refused(name: str, prepare: Callable[[str], None], run: Callable[[str], object],
                untouched: Callable[[], bool] = lambda: True) -> None:
        root = os.path.join(tempfile.mkdtemp(dir=work), "zoo")
        shutil.copytree(inr_zoo, root)
        prepare(root)
        try:
            run(root)
            ok = False
        except (NNGraphError, pickle.UnpicklingError) as err:
            ok = untouched() and "Traceback" not in str(err)
        except Exception:  # noqa: BLE001
            ok = False
        results.append((name, ok))

    def append(root: str, **changes) -> None:
        e = json.loads(open(os.path.join(root, "manifest.jsonl")).readline())
        with open(os.path.join(root, "manifest.jsonl"), "a") as f:
            f.write(json.dumps({**e, "index": 10 ** 6, **changes}, sort_keys=True) + "\n")

    dataset = lambda root: ZooDataset(root, "all", progress=False)  # noqa: E731
    for bad_id in ("../../escaped", os.path.join(victim_dir, "abs"), ".hidden", "a/b", "x" * 300, "", 7):
        refused(f"manifest id {str(bad_id)[:24]!r}", lambda r, i=bad_id: append(r, id=i), dataset,
                lambda: not any(p.endswith(".pt") for p in os.listdir(victim_dir)))
    for bad_file in (outside, "../" * 8 + outside.lstrip("/"), "weights/../../escape.safetensors", ""):
        refused(f"manifest file {bad_file[-30:]!r}", lambda r, f=bad_file: append(r, id="evil", file=f), dataset)

    def symlink(root: str) -> None:
        os.symlink(outside, os.path.join(root, "weights", "link.safetensors"))
        append(root, id="evil", file="weights/link.safetensors")
    refused("manifest file a symlink out of the zoo", symlink, dataset)
    for hidden in ([60000, 60000], [10 ** 9], [-5], ["8"]):
        def prepare(root, h=hidden):
            append(root, id="huge", spec={**json.loads(open(os.path.join(root, "manifest.jsonl")).readline())["spec"],
                                          "hidden": h})
        start = time.perf_counter()
        refused(f"spec hidden={hidden}", prepare, dataset, lambda s=start: time.perf_counter() - s < 30)
    refused("spec over a lowered SpecLimits", lambda r: None,
            lambda r: ZooDataset(r, "all", progress=False, limits=SpecLimits(max_parameters=10)))
    refused("sha256 not hex", lambda r: append(r, id="evil", sha256="zz" * 32), dataset)

    # pickles where tensors are expected: a payload that would create a marker file
    marker = os.path.join(work, "pwned")

    def pickled(path: str) -> None:
        with open(path, "wb") as f:
            torch.save({"x": _Payload(marker)}, f) if path.endswith(".pt") else pickle.dump(_Payload(marker), f)

    def cache_pickle(root: str) -> None:
        ds = ZooDataset(root, "all", progress=False)
        pickled(os.path.join(ds.cache_dir, f"{ds.entry(0)['id']}.pt"))

    no_marker = lambda: not os.path.exists(marker)  # noqa: E731
    refused("pickle as a cached graph", cache_pickle, lambda r: ZooDataset(r, "all", progress=False)[0], no_marker)

    def structure_pickle(root: str) -> None:
        ds = ZooDataset(root, "all", progress=False)
        cache = ds.cache_dir
        pickled(os.path.join(cache, next(n for n in os.listdir(cache) if n.startswith("structure-"))))
    refused("pickle as a cached structure", structure_pickle, lambda r: ZooDataset(r, "all", progress=False)[0],
            no_marker)

    def weights_pickle(root: str) -> None:
        e = Zoo(root).entries[0]
        pickled(os.path.join(root, e["file"]))
    refused("pickle as zoo weights", weights_pickle, lambda r: Zoo(r).load_state_dict(Zoo(r).entries[0], verify=False),
            no_marker)

    def checkpoint_pickle(root: str) -> None:
        save_checkpoint(os.path.join(root, "run"), "last", nn.Linear(2, 2), {"epoch": 1})
        pickled(os.path.join(root, "run", "last.safetensors"))
    refused("pickle as a checkpoint", checkpoint_pickle, lambda r: load_checkpoint(os.path.join(r, "run"), "last"),
            no_marker)

    def program_pickle(root: str, trusted: bool) -> None:
        """A zoo entry whose architecture is a torch.export program (.pt2, which torch.export.load unpickles)
        holding the payload: untrusted, or trusted by '*' but with another sha256 than the manifest's."""
        from nngraph.zoo.architectures import program_name

        path = os.path.join(root, "architecture", "evil.pt2")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pickled(path)
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
        claimed = "0" * 64 if trusted else digest
        append(root, id="evil", family="program", spec={"family": "program", "file": "architecture/evil.pt2",
                                                        "sha256": claimed,
                                                        "inputs": [{"shape": [2, 2], "dtype": "float32"}]})
        assert program_name(digest).startswith("sha256:")

    def build_evil(root: str, trust_all: bool) -> object:
        old = os.environ.get("NNGRAPH_TRUSTED_CODE")
        os.environ["NNGRAPH_TRUSTED_CODE"] = "*" if trust_all else ""
        try:
            zoo = Zoo(root)
            return zoo.build(next(e for e in zoo.entries if e["id"] == "evil")["spec"])
        finally:
            if old is None:
                os.environ.pop("NNGRAPH_TRUSTED_CODE", None)
            else:
                os.environ["NNGRAPH_TRUSTED_CODE"] = old
    refused("pickle as an untrusted .pt2 architecture", lambda r: program_pickle(r, False),
            lambda r: build_evil(r, False), no_marker)
    refused("pickle as a .pt2 trusted by '*', other sha256", lambda r: program_pickle(r, True),
            lambda r: build_evil(r, True), no_marker)

    def huge_header(root: str) -> None:
        e = Zoo(root).entries[0]
        with open(os.path.join(root, e["file"]), "wb") as f:
            f.write(struct.pack("<Q", 1 << 40) + b"{")
    refused("safetensors header of 1 TB", huge_header,
            lambda r: Zoo(r).load_state_dict(Zoo(r).entries[0], verify=False))

    def images_pickle(root: str) -> None:
        pickled(os.path.join(root, "images.safetensors"))
    refused("pickle as images.safetensors", images_pickle, lambda r: ZooDataset(r, "all", progress=False).image(0),
            no_marker)
    del load_file
    return results


# -- issues 27 and 33: tables, sources, manifests, embeddings files and the command lines ---------------
MLP_SPEC = {"family": "mlp", "in_shape": [1, 1, 3], "hidden": [6], "num_classes": 2, "act": "relu", "norm": "none"}


def _mlp_source(root: str, n: int = 4) -> str:
    """``n`` state dicts of :data:`MLP_SPEC` under ``root/{train,test}/m<i>.safetensors`` and ``root/t.csv``."""
    from safetensors.torch import save_file

    from nngraph.zoo import build_model

    rows = []
    for i in range(n):
        torch.manual_seed(i)
        split = "train" if i % 2 == 0 else "test"
        os.makedirs(os.path.join(root, split), exist_ok=True)
        save_file(build_model(MLP_SPEC).state_dict(), os.path.join(root, split, f"m{i}.safetensors"))
        rows.append(f"m{i},{0.1 * (i + 1):.2f}\n")
    _text(os.path.join(root, "t.csv"), "file,test_acc\n" + "".join(rows))
    return os.path.join(root, "t.csv")


def _text(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _one_line(fn: Callable[[], int], code: int, pattern: str) -> None:
    """Run a command's ``main``; ``ValueError("one line")`` if it exits ``code`` with one line on standard error that
    matches ``pattern`` and no traceback, else an ``AssertionError`` saying what it printed."""
    import io

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        got = fn()
    text = err.getvalue()
    if got == code and text.count("\n") == 1 and "Traceback" not in text and re.search(pattern, text):
        raise ValueError("one line")
    raise AssertionError(f"exit {got}, stderr {text[-300:]!r}")


def issue_cases(work: str, inr_zoo: str) -> tuple[list[tuple[str, str]], list[tuple[str, bool]], list[tuple[str, bool]]]:
    """``(bad inputs, hostile files, faults)`` of issues 27 and 33: import tables and sources, manifests a stranger
    wrote, image sources, embeddings files, the command lines' one-line errors, and kills of an import."""
    import numpy as np
    from safetensors.torch import load_file, save_file

    from nngraph.cli import main as cli
    from nngraph.data import ZooDataset
    from nngraph.errors import ZooError
    from nngraph.zoo import Zoo, build_classifier_zoo, build_inr_zoo, import_zoo
    from nngraph.zoo.__main__ import main as zoo_main
    from tests.zoo.tiny import checksums, tiny_classifiers, tiny_inr

    base = os.path.join(work, "issues")
    os.makedirs(base, exist_ok=True)

    def fresh(name: str) -> tuple[str, str, str]:
        """``(source folder with 4 MLPs, its table, a zoo path not yet created)``."""
        d = tempfile.mkdtemp(dir=base, prefix=re.sub(r"\W", "_", name)[:40])
        src = os.path.join(d, "src")
        return src, _mlp_source(src), os.path.join(d, "zoo")

    cases: list[tuple[str, Callable, object, str]] = []

    def import_case(name, table_text, pattern, **kw):
        def run():
            src, table, out = fresh(name)
            if table_text is not None:
                _text(table, table_text)
            import_zoo(src, out, spec=MLP_SPEC, table=None if table_text == "" else table, progress=False, **kw)
        cases.append((f"import: {name}", run, ZooError, pattern))

    import_case("table column 'id' (a reserved field)", "file,test_acc,id\nm0,0.1,a\nm1,0.2,a\nm2,0.3,b\nm3,0.4,c\n",
                r"t.csv:2: column 'id' would set a manifest field")
    import_case("table column 'spec'", "file,test_acc,spec\nm0,0.1,x\nm1,0.2,x\nm2,0.3,x\nm3,0.4,x\n",
                r"t.csv:2: column 'spec'")
    import_case("two table rows for one file", "file,test_acc\nm0,0.1\nm1,0.2\nm2,0.3\nm3,0.4\nm1,0.9\n",
                r"t.csv:6: file 'm1' has a row already at .*t.csv:3")
    import_case("table without test_acc", "file,acc\nm0,0.1\nm1,0.2\nm2,0.3\nm3,0.4\n", r"has no 'test_acc' column")
    import_case("table without a file column", "name,test_acc\nm0,0.1\n", r"has no 'file' column")
    import_case("text in test_acc", "file,test_acc\nm0,0.1\nm1,high\nm2,0.3\nm3,0.4\n",
                r"t.csv:3 .*test_acc is 'high'")
    import_case("split 'trian' in the table", "file,test_acc,split\nm0,0.1,train\nm1,0.2,trian\nm2,0.3,test\n"
                "m3,0.4,val\n", r"t.csv:3 .*split 'trian' is not one of")
    import_case("a column twice in the header", "file,test_acc,test_acc\nm0,0.1,1\n",
                r"t.csv:1: column 'test_acc' appears 2 times")
    import_case("test_acc nan", "file,test_acc\nm0,nan\nm1,0.2\nm2,0.3\nm3,0.4\n", r"t.csv:2 .*test_acc is nan")
    import_case("classifiers without a table", "", r"have no 'test_acc'")

    def float64_no_cast():
        src, table, out = fresh("float64")
        path = os.path.join(src, "test", "m1.safetensors")
        save_file({k: v.double() for k, v in load_file(path).items()}, path)
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False, casts="refuse")
    cases.append(("import: float64 checkpoint with --no-cast", float64_no_cast, ZooError,
                  r"m1.safetensors: tensor '.*' is float64, the architecture's is float32 .* --no-cast"))

    def inr_label(label):
        def run():
            from nngraph.zoo import build_model, siren_spec

            spec = siren_spec(2, [4], 1, 30.0)
            src = os.path.join(tempfile.mkdtemp(dir=base), "src")
            os.makedirs(src)
            for i in range(2):
                save_file(build_model(spec).state_dict(), os.path.join(src, f"i{i}.safetensors"))
            table = _text(os.path.join(src, "t.csv"), f"file,label\ni0,1\ni1,{label}\n")
            import_zoo(src, os.path.join(src, "..", "zoo"), spec=spec, table=table, progress=False)
        return run
    cases.append(("import: INR label -1", inr_label(-1), ZooError, r"t.csv:3 .*label is -1, not an integer class"))
    cases.append(("import: INR label 2.5", inr_label(2.5), ZooError, r"t.csv:3 .*label is 2.5"))

    # manifests of a stranger's zoo
    def zoo_case(name, prepare, pattern, read=lambda r: ZooDataset(r, "all", progress=False)[0], errors=NNGraphError):
        def run():
            root = os.path.join(tempfile.mkdtemp(dir=base), "zoo")
            shutil.copytree(inr_zoo, root)
            prepare(root)
            read(root)
        cases.append((f"zoo: {name}", run, errors, pattern))

    def manifest(root):
        return os.path.join(root, "manifest.jsonl")

    def first(root):
        return json.loads(open(manifest(root)).readline())

    def add(root, **changes):
        with open(manifest(root), "a") as f:
            f.write(json.dumps({**first(root), **changes}, sort_keys=True) + "\n")

    zoo_case("one id twice, the same sha256, another split", lambda r: add(r, split="test" if first(r)["split"] != "test"
                                                                           else "train"),
             r"manifest.jsonl:\d+: model .* appears twice with conflicting \['split'\] \(also at .*manifest.jsonl:1")
    zoo_case("one id twice, the same sha256, another label", lambda r: add(r, label=first(r)["label"] + 1),
             r"manifest.jsonl:\d+: model .* appears twice with conflicting \['label'\]")
    zoo_case("split 'trian' in the manifest", lambda r: add(r, id="odd", index=99, split="trian"),
             r"manifest.jsonl:\d+: split of model odd is 'trian', not one of")
    zoo_case("string label", lambda r: _edit_line(manifest(r), 1, lambda e: {**e, "label": "three"}),
             r"manifest.jsonl:1: label of model .* is 'three', not a finite number")
    zoo_case("negative label", lambda r: _edit_line(manifest(r), 1, lambda e: {**e, "label": -2}),
             r"manifest.jsonl:1: label of model .* is -2; an INR's label is a class")
    zoo_case("weights of another architecture", lambda r: save_file({"0.weight": torch.zeros(3, 2)}, os.path.join(
        r, first(r)["file"])), r"weights of model .* do not fit the siren architecture of its spec",
             read=lambda r: Zoo(r).load_model(Zoo(r).entries[0], verify=False))
    zoo_case("spec of another architecture", lambda r: _edit_line(manifest(r), 1, lambda e: {
        **e, "spec": {**e["spec"], "hidden": [5, 5]}}), r"weights of model .* wrong shapes",
             read=lambda r: Zoo(r).load_model(Zoo(r).entries[0]))
    # (own cases: what else a stranger's zoo may hold)
    zoo_case("index 10**30", lambda r: add(r, id="odd", index=10 ** 30), r"manifest.jsonl:\d+: index of model odd")
    zoo_case("images.safetensors of fewer images", lambda r: save_file(
        {k: v[:1].contiguous() for k, v in load_file(os.path.join(r, "images.safetensors")).items()},
        os.path.join(r, "images.safetensors")), r"image_index of model .* holds 1 images",
             read=lambda r: (lambda d: d.image(len(d) - 1))(ZooDataset(r, "all", progress=False)))

    def config_edit(change):
        def prepare(root):
            path = os.path.join(root, "zoo.json")
            json.dump({**json.load(open(path)), **change}, open(path, "w"))
        return prepare
    zoo_case("zoo.json kind 'transformer'", config_edit({"kind": "transformer"}), r"zoo.json: kind 'transformer'")
    zoo_case("zoo.json inr record with coord_order 'yx'", config_edit({"inr": {"coord_order": "yx"}}),
             r"zoo.json: Could not resolve coord_order 'yx'")

    # image sources of python -m nngraph.zoo inr --source
    def source_case(name, images, labels, pattern):
        def run():
            path = os.path.join(tempfile.mkdtemp(dir=base), "src.npz")
            np.savez(path, images=images, labels=labels)
            build_inr_zoo(os.path.join(os.path.dirname(path), "zoo"),
                          tiny_inr(source=path, max_images=None, resolution=6), progress=False)
        cases.append((f"inr --source: {name}", run, ValueError, pattern))

    gray, four = np.full((4, 6, 6), 0.5), np.arange(4)
    source_case("all-NaN images", np.full((4, 6, 6), np.nan), four, r"image 0 has NaN or infinite pixels")
    source_case("negative labels", gray, np.array([0, -3, 1, 2]), r"label 1 is -3")
    source_case("float labels", gray, np.array([0.0, 1.0, 2.5, 3.0]), r"label 2 is 2.5, not an integer class")
    source_case("zero images", gray[:0], four[:0], r"holds no images")

    # the command lines: one line, no traceback
    def cli_case(name, fn, code, pattern):
        cases.append((f"cli: {name}", lambda: _one_line(fn, code, pattern), ValueError, "one line"))

    def no_table():
        src, _, out = fresh("no-table")
        return zoo_main(["import", src, "--out", out, "--spec", json.dumps(MLP_SPEC), "--no-progress"])
    cli_case("zoo import without --table", no_table, 1, r"zoo import: error: .*have no 'test_acc'")

    def half_zoo():
        out = os.path.join(tempfile.mkdtemp(dir=base), "zoo")
        os.makedirs(out)
        _text(os.path.join(out, "zoo.json"), json.dumps({"kind": "classifier", "num_models": 6}))
        return zoo_main(["summary", out])
    cli_case("zoo summary of zoo.json without models", half_zoo, 1, r"holds no models")

    def unfinished():
        src, table, out = fresh("unfinished")
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False, max_models=2)
        return zoo_main(["summary", out])
    cli_case("zoo summary of an unfinished import", unfinished, 1, r"is an unfinished import \(2 of 4 models")

    def failed_first():
        src, table, out = fresh("failed-first")
        save_file({"0.weight": torch.zeros(6, 3)}, os.path.join(src, "test", "m1.safetensors"))
        code = zoo_main(["import", src, "--out", out, "--spec", json.dumps(MLP_SPEC), "--table", table,
                         "--no-progress"])
        return code if not os.path.exists(out) else 99  # a failed import leaves no half zoo
    cli_case("zoo import whose first model does not fit (nothing left)", failed_first, 1, r"does not match")

    def pickle_pt():
        src, table, out = fresh("pickle-pt")
        os.remove(os.path.join(src, "test", "m1.safetensors"))
        torch.save({"0.weight": _Payload(os.path.join(base, "pwned"))}, os.path.join(src, "test", "m1.pt"))
        return zoo_main(["import", src, "--out", out, "--spec", json.dumps(MLP_SPEC), "--table", table,
                         "--no-progress"])
    cli_case("zoo import of a pickle .pt", pickle_pt, 1, r"m1.pt holds Python objects")

    sd = os.path.join(base, "sd.safetensors")
    save_file(nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).state_dict(), sd)
    _text(os.path.join(base, "relfactory.py"), "import torch\nfrom torch import nn\n\n\ndef mlp():\n"
          "    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2))\n\n\ndef traced():\n"
          "    return torch.jit.trace(mlp(), torch.zeros(2, 3))\n")

    def in_base(argv):
        def run():
            cwd = os.getcwd()
            os.chdir(base)
            try:
                return cli(argv)
            finally:
                os.chdir(cwd)
        return run
    cli_case("convert --inputs 100000,100000,4", in_base(["convert", sd, "--factory", "relfactory:mlp", "--inputs",
                                                         "100000,100000,4", "-o", "g.pt"]), 2,
             r"--inputs '100000,100000,4': .* is 40,000,000,000 elements")
    cli_case("convert of a torch.jit.trace'd module", in_base(["convert", sd, "--factory", "relfactory:traced", "-o",
                                                              "g.pt"]), 2, r"returned a TorchScript module")
    jit = os.path.join(base, "traced.pt2")
    torch.jit.save(torch.jit.trace(nn.Linear(2, 2), torch.zeros(1, 2)), jit)
    cli_case("convert of a torch.jit.save archive", in_base(["convert", jit, "-o", "g.pt"]), 2,
             r"is a TorchScript archive")

    def factory_in_cwd():  # nngraph zoo import --factory relfactory:mlp from the folder it is in
        src, table, out = fresh("factory")
        for i, name in enumerate(("train/m0", "test/m1", "train/m2", "test/m3")):
            torch.manual_seed(i)
            save_file(nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).state_dict(),
                      os.path.join(src, name + ".safetensors"))
        path = list(sys.path)
        sys.path[:] = [p for p in sys.path if p not in ("", base)]
        sys.modules.pop("relfactory", None)  # imported by the convert cases above
        try:
            with contextlib.redirect_stdout(open(os.devnull, "w")):
                code = in_base(["zoo", "import", src, "--out", out, "--factory", "relfactory:mlp", "--input-shape",
                                "3", "--table", table, "--no-progress"])()
        finally:
            sys.path[:] = path
        if code == 0 and len(Zoo(out)) == 4:
            raise ValueError("imported")
    cases.append(("cli: zoo import --factory from the current folder", factory_in_cwd, ValueError, "imported"))

    # nngraph search on malformed embeddings files
    from safetensors import safe_open

    from tasks.embeddings import embed
    from tasks.embeddings import search

    clf = os.path.join(base, "clf")
    build_classifier_zoo(clf, tiny_classifiers(num_runs=6, max_epochs=1, checkpoints=1, split=[0.5, 0.2, 0.3]),
                         progress=False)
    embedded = os.path.join(base, "emb.safetensors")
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        embed.main(["--zoo", clf, "-o", embedded, "--epochs", "1", "--embed-dim", "8", "--hidden-dim", "8",
                    "--num-layers", "1", "--no-progress"])
    emb = load_file(embedded)["embeddings"]
    with safe_open(embedded, "pt") as f:
        meta = dict(f.metadata())
    models = json.loads(meta["models"])
    query = Zoo(clf).path(Zoo(clf).entries[0])
    for name, tensors, changes, pattern in [
        ("no 'models'", None, {"models": None}, r"metadata lacks \['models'\]"),
        ("no 'encoder'", None, {"encoder": None}, r"metadata lacks \['encoder'\]"),
        ("'models' not JSON", None, {"models": "[{"}, r"'models' is not valid JSON"),
        ("'models' a dict", None, {"models": "{}"}, r"'models' is a dict"),
        ("a model without 'label'", None, {"models": json.dumps([{"id": m["id"]} for m in models])},
         r"lacks \['label'\]"),
        ("rows of another width", {"embeddings": emb[:, :4].contiguous()}, {}, r"rows of width 4"),
        ("all rows NaN", {"embeddings": torch.full_like(emb, float("nan"))}, {}, r"rows are non-finite"),
    ]:
        def run(tensors=tensors, changes=changes, name=name):
            m = {k: v for k, v in {**meta, **changes}.items() if v is not None}
            path = os.path.join(base, re.sub(r"\W", "_", name) + ".safetensors")
            save_file(tensors if tensors is not None else {"embeddings": emb}, path, metadata=m)
            return search.main(["--zoo", clf, "--query", query, "--embeddings", path])
        cli_case(f"search, embeddings file with {name}", run, 1, pattern)

    inputs = []
    for name, fn, errors, pattern in cases:
        inputs.append((name, _clear(fn, errors, pattern)))

    # hostile files: refused, nothing read or written outside, no pickle run
    hostile_results: list[tuple[str, bool]] = []
    outside_dir = os.path.join(base, "outside")
    os.makedirs(outside_dir, exist_ok=True)

    def refused(name, run, untouched=lambda: True):
        try:
            run()
            ok = False
        except NNGraphError:
            ok = untouched()
        except Exception:  # noqa: BLE001
            ok = False
        hostile_results.append((name, ok))

    def linked_file():
        src, table, out = fresh("link")
        target = os.path.join(outside_dir, "secret.safetensors")
        os.replace(os.path.join(src, "test", "m1.safetensors"), target)
        os.symlink(target, os.path.join(src, "test", "m1.safetensors"))
        try:
            import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
        finally:
            linked_file.out = out
    refused("import: a .safetensors symlink out of SRC", linked_file, lambda: not os.path.exists(linked_file.out))

    def linked_dir():
        src, table, out = fresh("linkdir")
        target = os.path.join(tempfile.mkdtemp(dir=outside_dir), "test")
        os.replace(os.path.join(src, "test"), target)
        os.symlink(target, os.path.join(src, "test"))
        linked_dir.out = out
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    refused("import: a folder symlink out of SRC", linked_dir, lambda: not os.path.exists(linked_dir.out))

    def linked_cnn_zoo():
        from tests.zoo.layouts import write_cnn_zoo

        src = os.path.join(tempfile.mkdtemp(dir=base), "cnn")
        write_cnn_zoo(src, runs=1, steps=(86,))
        target = os.path.join(tempfile.mkdtemp(dir=outside_dir), "weights.npy")
        os.replace(os.path.join(src, "weights.npy"), target)
        os.symlink(target, os.path.join(src, "weights.npy"))
        linked_cnn_zoo.out = os.path.join(src, "..", "zoo")
        import_zoo(src, linked_cnn_zoo.out, progress=False)
    refused("import: the Small CNN Zoo's weights.npy a symlink out of SRC", linked_cnn_zoo,
            lambda: not os.path.exists(linked_cnn_zoo.out))

    def same_id():
        src, table, out = fresh("same-id")
        _text(table, "file,test_acc,id\nm0,0.1,dup\nm1,0.2,dup\nm2,0.3,x\nm3,0.4,y\n")
        same_id.out = out
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    refused("import: a table giving two rows one id (no model lost)", same_id, lambda: not os.path.exists(same_id.out))

    marker = os.path.join(base, "pwned")

    def pickled_source():
        src, table, out = fresh("pickled")
        os.remove(os.path.join(src, "test", "m1.safetensors"))
        torch.save({"0.weight": _Payload(marker)}, os.path.join(src, "test", "m1.pt"))
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False)
    refused("import: a pickle .pt in SRC", pickled_source, lambda: not os.path.exists(marker))

    def zoo_copy() -> str:
        root = os.path.join(tempfile.mkdtemp(dir=base), "zoo")
        shutil.copytree(inr_zoo, root)
        return root

    for name in ("zoo.json", "manifest.jsonl", "images.safetensors"):
        def own_link(name=name):
            root = zoo_copy()
            target = os.path.join(tempfile.mkdtemp(dir=outside_dir), name)
            os.replace(os.path.join(root, name), target)
            os.symlink(target, os.path.join(root, name))
            ZooDataset(root, "all", progress=False).image(0)
        refused(f"zoo: {name} a symlink out of the zoo", own_link)

    def pipe_weights():
        import signal

        root = zoo_copy()
        os.mkfifo(os.path.join(root, "weights", "pipe.safetensors"))
        add(root, id="pipe", index=99, file="weights/pipe.safetensors")
        old = signal.signal(signal.SIGALRM, lambda *a: _raise(RuntimeError("blocked on a pipe")))
        signal.alarm(10)
        try:
            ZooDataset(root, "all", progress=False)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    refused("zoo: weights a named pipe (no hang)", pipe_weights)

    def folder_weights():
        root = zoo_copy()
        add(root, id="dir", index=99, file="weights")
        ZooDataset(root, "all", progress=False)
    refused("zoo: weights a folder", folder_weights)

    def system_factory():
        root = zoo_copy()
        add(root, id="evil", index=99, family="factory", spec={
            "family": "factory", "factory": "os:system", "kwargs": {"command": f"touch {marker}-factory"},
            "inputs": [{"shape": [2, 2], "dtype": "float32"}]})
        old = os.environ.pop("NNGRAPH_TRUSTED_CODE", None)
        try:
            ZooDataset(root, "all", progress=False)
        finally:
            if old is not None:
                os.environ["NNGRAPH_TRUSTED_CODE"] = old
    refused("zoo: a factory spec naming os:system", system_factory, lambda: not os.path.exists(f"{marker}-factory"))

    # faults: an import killed at every write resumes to the zoo of an uninterrupted one
    faults = []
    src, table, full = fresh("import-full")
    total = count_replaces(lambda: import_zoo(src, full, spec=MLP_SPEC, table=table, progress=False, log=None))
    expected = checksums(Zoo(full))
    for n in range(1, total + 1):
        out = os.path.join(os.path.dirname(full), f"kill{n}")
        try:
            with die_at(n):
                import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False, log=None)
        except _Killed:
            pass
        unreadable = False
        try:
            Zoo(out)
        except ZooError:
            unreadable = True  # an unfinished import is never read as a zoo
        import_zoo(src, out, spec=MLP_SPEC, table=table, progress=False, log=None)
        faults.append((f"zoo import, killed at write {n}/{total}",
                       checksums(Zoo(out)) == expected and (unreadable or n == total)))

    root = os.path.join(base, "inr-images")
    config = tiny_inr(max_images=2, inrs_per_image=1, max_steps=2)
    build_inr_zoo(root, config, progress=False, max_models=1)
    good = open(os.path.join(root, "images.safetensors"), "rb").read()
    with open(os.path.join(root, "images.safetensors"), "r+b") as f:
        f.truncate(40)
    build_inr_zoo(root, config, progress=False)
    faults.append(("INR zoo resumed over a truncated images.safetensors",
                   open(os.path.join(root, "images.safetensors"), "rb").read() == good))
    return inputs, hostile_results, faults


def main(argv: list[str] | None = None) -> int:
    from nngraph.zoo import build_classifier_zoo, build_inr_zoo
    from tests.zoo.tiny import tiny_classifiers, tiny_inr

    torch.set_num_threads(1)
    start = time.perf_counter()
    import warnings

    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="nngraph-reliability-") as work:
        os.environ["NNGRAPH_CACHE"] = os.path.join(work, "cache")
        inr_zoo, clf_zoo = os.path.join(work, "inr"), os.path.join(work, "clf")
        build_inr_zoo(inr_zoo, tiny_inr(max_images=4, inrs_per_image=1), progress=False)
        build_classifier_zoo(clf_zoo, tiny_classifiers(num_runs=2, max_epochs=1, checkpoints=1), progress=False)
        faults = zoo_faults(work) + training_faults(work)
        inputs = bad_inputs(work, inr_zoo, clf_zoo)
        files = hostile(work, inr_zoo)
        more_inputs, more_files, more_faults = issue_cases(work, inr_zoo)
        inputs, files, faults = inputs + more_inputs, files + more_files, faults + more_faults
    rows = [("faults injected (kills, torn checkpoint pairs, killed imports)", len(faults), sum(ok for _, ok in faults),
             "resumed identically"),
            ("bad inputs (files, graphs, arguments)", len(inputs), sum(r == "clear" for _, r in inputs),
             "clear error naming file / line / field / argument"),
            ("hostile files (escaping ids, paths and symlinks, huge specs, pickles, pipes)", len(files),
             sum(ok for _, ok in files),
             "refused, no side effect")]
    print("| category | tried | passed | what passing means |")
    print("|---|---:|---:|---|")
    for what, tried, passed, means in rows:
        print(f"| {what} | {tried} | {passed} | {means} |")
    failures = [f"fault: {n}" for n, ok in faults if not ok] + [f"input: {n}: {r}" for n, r in inputs if r != "clear"]
    failures += [f"hostile: {n}" for n, ok in files if not ok]
    silent = sum(r == "silent" for _, r in inputs)
    print(f"\n{silent} bad inputs silent; {time.perf_counter() - start:.0f} s")
    for line in failures:
        print(f"- {line[:300]}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
