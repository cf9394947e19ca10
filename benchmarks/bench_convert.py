"""Conversion cost of a ResNet-18-sized network (11.7M parameters): to_graph (first call, with
tracing; and with the layout cached), from_graph, peak memory, graph size.

Peak memory is the rise of the process's peak resident set size (``VmHWM`` in
``/proc/self/status``, reset before every step by writing ``5`` to ``/proc/self/clear_refs``)
over the resident size before the step, so it counts torch's allocations, which ``tracemalloc``
does not see. Where the reset is not allowed it falls back to the ``ru_maxrss`` delta, which only
shows growth beyond the previous peak (the table says which).

Usage: ``python -m benchmarks convert`` or ``python benchmarks/bench_convert.py [--size 224]``.
"""
from __future__ import annotations

import argparse
import gc
import re
import resource
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nngraph  # noqa: E402
from nngraph.convert import api, supported_modules  # noqa: E402

from benchmarks.resnet import resnet18  # noqa: E402


def _status(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in KiB."""
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn):
    """``(result, seconds, peak_MiB, method)``: wall time and peak memory rise of ``fn()``."""
    gc.collect()
    exact = _reset_peak()
    before = _status("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    after = _status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result, seconds, (after - before) / 1024, "VmHWM" if exact else "ru_maxrss"


def run(norm: bool, size: int) -> dict:
    torch.manual_seed(0)
    model = resnet18(norm=norm).eval()
    x = torch.randn(1, 3, size, size)
    api.clear_cache()
    graph, first, first_mem, how = measure(lambda: nngraph.to_graph(model, x))
    graph = None  # noqa: F841  (free it before the next measurement)
    graph, cached, cached_mem, _ = measure(lambda: nngraph.to_graph(model, x))
    back, back_s, back_mem, _ = measure(lambda: nngraph.from_graph(graph, model, x))
    exact = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    return {
        "model": f"ResNet-18{'' if norm else ' (no BN)'}",
        "params": sum(p.numel() for p in model.parameters()),
        "to_graph first (s)": first, "to_graph cached (s)": cached, "from_graph (s)": back_s,
        f"peak first (MiB, {how})": first_mem, "peak cached (MiB)": cached_mem, "peak from (MiB)": back_mem,
        "nodes": graph.num_nodes, "edges": graph.num_edges,
        "kernel box": "x".join(str(v) for v in graph.kernel_box[0].tolist()),
        "edge_attr (MiB)": graph.edge_attr.numel() * graph.edge_attr.element_size() / 2**20,
        "exact": exact,
    }


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    cells = [[f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for row in cells:
        print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width (default: 224)")
    args = parser.parse_args(argv if argv is not None else [])
    variants = [False] + ([True] if "BatchNorm2d" in supported_modules() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input 1x3x{args.size}x{args.size}\n")
    print_table([run(norm, args.size) for norm in variants])


if __name__ == "__main__":
    main(sys.argv[1:])
