"""Conversion cost on the real-world suite (``tests/realworld/hf_models.py``: 19 tiny Hugging Face models, fx and
export paths, hand-written attention included), each against its floor measured in the same process.

The models are tiny (thousands of parameters), so their floor is microseconds and the times are the converter's
fixed costs (tracing, walking, proving): the table gives seconds, and the ratio to an older checkout where given.
Per model: ``floor`` is one ``torch.cat`` of every parameter (best of ``--reps``); ``first`` the first ``to_graph``
with the layout cache cleared; ``cached`` the best of ``--reps`` later calls; ``proof`` the part of the first call
spent proving a graph a fallback helped build (``to_graph`` less ``build_layout(check=False)``, as the coverage
benchmark measures it). ``--against PATH`` runs the same measurement on another checkout of nngraph (a
``git worktree`` of an older commit) in a subprocess first, and prints both with the ratio new / old.

Usage: ``python -m benchmarks realworld [--models a,b] [--reps 3] [--against /tmp/old-checkout]``.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _models():
    """The suite's builders, read from this checkout's tests (the models stay the same whichever nngraph runs)."""
    import nngraph.testing

    if not hasattr(nngraph.testing, "reinitialise"):  # an older nngraph (--against): the builders' random
        nngraph.testing.reinitialise = lambda model: model  # re-initialisation does not change conversion time
    spec = importlib.util.spec_from_file_location("_realworld_models", ROOT / "tests" / "realworld" / "hf_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MODELS


def _best(fn, reps: int) -> float:
    """Best wall seconds of ``reps`` calls (this file's own: under ``--against`` it runs beside an older nngraph
    whose ``benchmarks`` package may lack the shared helpers)."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(names: list[str] | None, reps: int) -> list[dict]:
    """One row per model of the suite: seconds of the floor, the first and the cached ``to_graph``, the proof."""
    import nngraph
    from nngraph.convert import api

    clear = getattr(api, "clear_cache", None) or importlib.import_module("nngraph.convert.building").clear_cache
    build = getattr(api, "build_layout")
    torch.manual_seed(0)
    rows = []
    for name, make in _models().items():
        if names and name not in names:
            continue
        model, inputs = make()
        model = model.eval()
        params = [p.detach().reshape(-1) for p in model.parameters()]
        floor = _best(lambda: torch.cat(params), max(reps, 5))
        clear()
        gc.collect()
        t0 = time.perf_counter()
        graph = nngraph.to_graph(model, inputs)
        first = time.perf_counter() - t0
        cached = _best(lambda: nngraph.to_graph(model, inputs), reps)
        proof = 0.0
        if getattr(graph, "fallbacks", None) or "check" in inspect.signature(build).parameters:
            clear()
            t0 = time.perf_counter()
            layout = build(model, inputs, cache=False, check=False)
            unchecked = time.perf_counter() - t0
            proof = max(first - unchecked, 0.0) if layout.fallbacks else 0.0  # (an nngraph before the fallback: 0)
        rows.append({"model": name, "params": sum(p.numel() for p in params), "floor": floor, "first": first,
                     "cached": cached, "proof": proof, "nodes": int(graph.num_nodes)})
        clear()
    return rows


def _table(rows: list[dict], old: dict[str, dict] | None) -> str:
    head = ["model", "params", "floor (ms)", "first (s)", "cached (ms)", "proof (s)"]
    if old is not None:
        head += ["first new / old", "cached new / old"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], f"{r['params'] / 1e3:.0f}k", f"{r['floor'] * 1e3:.3f}", f"{r['first']:.2f}",
                 f"{r['cached'] * 1e3:.1f}", f"{r['proof']:.2f}"]
        if old is not None:
            o = old.get(r["model"])
            cells += [f"{r['first'] / o['first']:.2f}", f"{r['cached'] / o['cached']:.2f}"] if o else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    if old is not None:
        both = [r for r in rows if r["model"] in old]
        total = lambda rs, key: sum(x[key] for x in rs)  # noqa: E731
        lines.append(f"\nsum over {len(both)} models: first {total(both, 'first'):.2f} s against "
                     f"{total([old[r['model']] for r in both], 'first'):.2f} s "
                     f"({total(both, 'first') / total([old[r['model']] for r in both], 'first'):.2f}x); cached "
                     f"{total(both, 'cached'):.3f} s against {total([old[r['model']] for r in both], 'cached'):.3f} s "
                     f"({total(both, 'cached') / total([old[r['model']] for r in both], 'cached'):.2f}x)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="", help="comma-separated names of the suite (default: all)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions of the cached call, best kept")
    parser.add_argument("--against", default=None, help="another nngraph checkout, measured first in a subprocess")
    parser.add_argument("--json", default=None, help="write the rows to this file (what --against reads)")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n] or None
    warnings.filterwarnings("ignore")
    old = None
    if args.against:
        out = Path(args.against) / ".bench_realworld.json"
        env = dict(os.environ, PYTHONPATH=str(Path(args.against).resolve()))
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--reps", str(args.reps), "--json", str(out),
                        *(["--models", args.models] if args.models else [])], check=True, env=env, cwd=args.against)
        old = {r["model"]: r for r in json.loads(out.read_text())}
    if __package__ in (None, "") and "PYTHONPATH" not in os.environ:
        sys.path.insert(0, str(ROOT))
    rows = measure(names, args.reps)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
        return
    import nngraph

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, nngraph from "
          f"{Path(nngraph.__file__).parent.parent}" + (f", old: {args.against}" if args.against else "") + "\n")
    print(_table(rows, old))


if __name__ == "__main__":
    main()
