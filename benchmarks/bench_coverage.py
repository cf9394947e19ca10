"""Coverage on a held-out set: how many of ~60 real architectures that no test names
(``benchmarks/heldout_models.py``: causal LMs, text encoders, vision and speech models from tiny
Hugging Face configs, and hand-written PyTorch models) convert soundly.

For each model, sequentially in one process: the model's own forward is run once (a failure there,
or non-finite outputs, is ``builder broken``: a bug of the set, not of nngraph); then
``nngraph.to_graph(model, inputs)``: an :class:`nngraph.UnsupportedError` is ``refused`` (with the first
line of its message; the JSON keeps the whole message), any other exception is ``error``. A converted model is checked with
``nngraph.verify(model, inputs, num_permutations=3)``: ``sound`` if ``report.ok``, else ``WRONG``
with the worst defect (output error over the tolerance, or a round-trip error). ``exact`` says
whether ``from_graph(to_graph(m), m)`` gives every parameter back bit for bit (``torch.equal``);
``recall`` is ``num_permutable / num_hidden``, the share of hidden neurons nngraph found a symmetry
for; ``seconds`` is the time of ``to_graph`` (first conversion, layout cache cleared), ``proof`` the share of it
spent proving a graph that used the fallback (``to_graph``'s time less that of ``build_layout(check=False)``);
``fixed by`` the operations the fallback made opaque and how many it saw through. A model that
takes longer than ``--timeout`` seconds in all is an ``error: timeout`` (``signal.alarm``).

Summary: ``N models: S sound, R refused, W wrong, E errors (X% convert)``, where ``convert`` counts
the sound and the wrong ones (``to_graph`` returned a graph).

Usage: ``python -m benchmarks coverage`` or ``python benchmarks/bench_coverage.py [--models a,b]
[--json PATH] [--timeout 120]``.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import re
import signal
import sys
import time
import warnings
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nngraph  # noqa: E402
from nngraph.convert import api  # noqa: E402
from nngraph.convert.module_info import output_tensors  # noqa: E402

from benchmarks.heldout_models import CATEGORY, HELDOUT  # noqa: E402

REASON_CHARS = 160


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def _first_line(err: BaseException, limit: int = REASON_CHARS) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _params_equal(model: torch.nn.Module, back: torch.nn.Module) -> bool:
    mine, theirs = dict(model.named_parameters()), dict(back.named_parameters())
    return mine.keys() == theirs.keys() and all(torch.equal(p, theirs[n]) for n, p in mine.items())


def _defect(report) -> str:
    parts = []
    if not report.max_output_error <= report.tolerance:
        parts.append(f"output error {report.max_output_error:.2e} > tolerance {report.tolerance:.0e}")
    if report.round_trip_error != 0.0:
        parts.append(f"round-trip error {report.round_trip_error:.2e}")
    return "; ".join(parts)


def run(name: str, timeout: int) -> dict:
    row = {"model": name, "category": CATEGORY[name], "result": "", "recall": None, "exact": None,
           "seconds": None, "proof_seconds": None, "reason": "", "fixed_by": ""}
    start = time.perf_counter()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(timeout)
    try:
        try:
            model, inputs = HELDOUT[name]()
            with torch.no_grad():
                outs = output_tensors(model(*inputs))
            if not outs or not all(torch.isfinite(o).all() for o in outs if o.is_floating_point()):
                raise ValueError("no tensor outputs" if not outs else "non-finite outputs")
        except _Timeout:
            raise
        except Exception as err:  # noqa: BLE001
            row.update(result="builder broken", reason=f"{type(err).__name__}: {_first_line(err)}")
            return row
        api.clear_cache()
        t0 = time.perf_counter()
        try:
            graph = nngraph.to_graph(model, inputs)
        except nngraph.UnsupportedError as err:
            row.update(result="refused", seconds=time.perf_counter() - t0, reason=_first_line(err),
                       message=str(err)[:4000])
            return row
        except _Timeout:
            raise
        except Exception as err:  # noqa: BLE001
            row.update(result="error", seconds=time.perf_counter() - t0,
                       reason=f"to_graph: {type(err).__name__}: {_first_line(err)}", message=str(err)[:4000])
            return row
        row["seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        unchecked = api.build_layout(model, inputs, cache=False, check=False)
        if unchecked.fallbacks:  # the proof's share of the first conversion: to_graph's time without it
            row["proof_seconds"] = max(row["seconds"] - (time.perf_counter() - t0), 0.0)
        try:
            back = nngraph.from_graph(graph, model)
            row["exact"] = _params_equal(model, back)
            del back
        except _Timeout:
            raise
        except Exception as err:  # noqa: BLE001
            row["exact"] = False
            row["reason"] = f"from_graph: {type(err).__name__}: {_first_line(err)}"
        try:
            report = nngraph.verify(model, inputs, num_permutations=3)
        except _Timeout:
            raise
        except Exception as err:  # noqa: BLE001
            row.update(result="error", reason=f"verify: {type(err).__name__}: {_first_line(err)}")
            return row
        row["recall"] = report.num_permutable / report.num_hidden if report.num_hidden else None
        row["fixed_by"] = fixed_by(report.fallbacks)
        row["fallbacks"] = list(report.fallbacks)
        row["report"] = {k: getattr(report, k) for k in (
            "max_output_error", "output_scale", "round_trip_error", "num_nodes", "num_hidden", "num_permutable",
            "moved_fraction", "tolerance")}
        if report.ok:
            row["result"] = "sound"
        else:
            row.update(result="WRONG", reason="; ".join(r for r in (_defect(report), row["reason"]) if r))
        return row
    except _Timeout:
        row.update(result="error", reason=f"timeout ({timeout} s)")
        return row
    finally:
        signal.alarm(0)
        row["total_seconds"] = time.perf_counter() - start


def fixed_by(fallbacks) -> str:
    """The operations the fallback made opaque (fixing neurons), counted, and how many it saw through:
    ``torch.cumsum x2, aten.topk.default; 3 seen through``."""
    opaque = collections.Counter()
    seen = 0
    for line in fallbacks:
        if ": seen through" in line:
            seen += 1
            continue
        match = re.match(r"(?:operation (\S+) at fx node|module '[^']*' \((\w+)\))", line)
        if match:
            opaque[match.group(1) or match.group(2)] += 1
        elif line.startswith("check:"):
            opaque["(the proof)"] += 1
    parts = [f"{op}{f' x{c}' if c > 1 else ''}" for op, c in opaque.most_common()]
    return ", ".join(parts) + (f"; {seen} seen through" if seen else "")


def summary(rows: list[dict]) -> str:
    n = len(rows)
    count = {k: sum(r["result"] == k for r in rows) for k in ("sound", "refused", "WRONG", "error", "builder broken")}
    converted = count["sound"] + count["WRONG"]
    line = (f"{n} models: {count['sound']} sound, {count['refused']} refused, {count['WRONG']} wrong, "
            f"{count['error']} errors ({100 * converted / n if n else 0:.0f}% convert)")
    if count["builder broken"]:
        line += f"; {count['builder broken']} builder broken (fix the set)"
    return line


def print_table(rows: list[dict]) -> None:
    keys = ["model", "category", "result", "recall", "exact", "seconds", "proof (s)", "fixed by", "reason"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for r in rows:
        cells = [r["model"], r["category"], r["result"],
                 "" if r["recall"] is None else f"{r['recall']:.2f}",
                 "" if r["exact"] is None else ("yes" if r["exact"] else "NO"),
                 "" if r["seconds"] is None else f"{r['seconds']:.2f}",
                 "" if r.get("proof_seconds") is None else f"{r['proof_seconds']:.2f}",
                 r.get("fixed_by", "").replace("|", "\\|"), r["reason"].replace("|", "\\|")]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=None, help=f"comma-separated, of {list(HELDOUT)} (default: all)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per model (default: 120)")
    args = parser.parse_args(argv if argv is not None else [])
    names = args.models.split(",") if args.models else list(HELDOUT)
    unknown = [n for n in names if n not in HELDOUT]
    if unknown:
        parser.error(f"unknown models {unknown}; choices: {list(HELDOUT)}")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    try:
        import transformers
        transformers.logging.set_verbosity_error()
        tf_version = transformers.__version__
    except ImportError:
        tf_version = None
    logging.getLogger("transformers").setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, transformers {tf_version}, {torch.get_num_threads()} thread, "
          f"{len(names)} held-out models, timeout {args.timeout} s\n", flush=True)
    start = time.perf_counter()
    rows = []
    for name in names:
        rows.append(run(name, args.timeout))
        r = rows[-1]
        print(f"  {name}: {r['result']} ({r['total_seconds']:.1f} s)", file=sys.stderr, flush=True)  # progress
        gc.collect()
    total = time.perf_counter() - start
    print_table(rows)
    line = summary(rows)
    print(f"\n{line}\ntotal {total:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "summary": line, "total_seconds": total, "torch": torch.__version__, "transformers": tf_version,
            "timeout": args.timeout, "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
