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
    rows = [("faults injected (kills, torn checkpoint pairs)", len(faults), sum(ok for _, ok in faults),
             "resumed identically"),
            ("bad inputs (files, graphs, arguments)", len(inputs), sum(r == "clear" for _, r in inputs),
             "clear error naming file / line / field / argument"),
            ("hostile files (escaping ids and paths, huge specs, pickles)", len(files), sum(ok for _, ok in files),
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
