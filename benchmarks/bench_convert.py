"""Conversion cost against the floor: ``to_graph`` and ``from_graph`` for ResNet-18 (11.7M
parameters), a ViT-B-sized transformer stack (86.4M) and VGG-11 (132.9M), each timed against one
``torch.cat`` of all parameters' flattened views in the same process.

Columns: the floor's time; ``to_graph`` on the first call (tracing included) and with the layout
cached, ``from_graph``, each as a ratio to the floor (best of ``--reps``); the peak memory rise of
each step over the graph's bytes; the graph's bytes (every tensor of the ``Data``) and its feature
bytes (``x`` and ``edge_attr``) over the parameter bytes; and whether the round trip is exact.

Peak memory is the rise of the process's peak resident set size (``VmHWM`` in
``/proc/self/status``, reset before every step by writing ``5`` to ``/proc/self/clear_refs``)
over the resident size before the step, so it counts torch's allocations, which ``tracemalloc``
does not see. Where the reset is not allowed it falls back to the ``ru_maxrss`` delta, which only
shows growth beyond the previous peak (the table says which).

Usage: ``python -m benchmarks convert`` or ``python benchmarks/bench_convert.py [--models resnet18,vit,vgg11]
[--reps 3] [--size 224]``.
"""
from __future__ import annotations

import argparse
import ctypes
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
from nngraph.blocks import is_blocked  # noqa: E402
from nngraph.convert import api  # noqa: E402

from benchmarks.models import ViTStack, vgg11  # noqa: E402
from benchmarks.resnet import resnet18  # noqa: E402


def _status(field: str) -> int:
    """A memory field of this process's ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``RssAnon``) in KiB."""
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    """Hand freed heap back to the kernel (glibc), so the resident size before a step counts only
    live memory and the step's own allocations show as a rise."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn):
    """``(result, seconds, peak_MiB, method)``: wall time and peak memory rise of ``fn()``."""
    gc.collect()
    _trim()
    exact = _reset_peak()
    before = _status("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    after = _status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result, seconds, (after - before) / 1024, "VmHWM" if exact else "ru_maxrss"


def best(fn, reps: int) -> float:
    """Best wall seconds of ``reps`` calls (results freed between calls)."""
    times = []
    for _ in range(reps):
        gc.collect()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
        del out
    return min(times)


def graph_bytes(graph) -> tuple[int, int]:
    """``(all tensors, x + edge_attr)`` bytes of ``graph``."""
    total = sum(v.numel() * v.element_size() for _, v in graph.items() if torch.is_tensor(v))
    if is_blocked(graph):  # a large model's edges as blocks (nngraph.blocks)
        total += graph.edge_blocks.nbytes
    features = sum(graph[k].numel() * graph[k].element_size() for k in ("x", "edge_attr"))
    return total, features


MODELS = {
    "resnet18": ("ResNet-18", lambda: resnet18(), lambda s: (torch.randn(1, 3, s, s),)),
    "vit": ("ViT-B stack", lambda: ViTStack(), lambda s: (torch.randn(1, (s // 16) ** 2, 768),)),
    "vgg11": ("VGG-11", lambda: vgg11(), lambda s: (torch.randn(1, 3, s, s),)),
}


def run(key: str, size: int, reps: int) -> dict:
    name, make, inputs = MODELS[key]
    torch.manual_seed(0)
    model = make().eval()
    x = inputs(size)
    params = [p.detach() for p in model.parameters()]
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    floor = best(lambda: torch.cat([p.reshape(-1) for p in params]), reps)
    api.clear_cache()
    graph, first, first_mem, how = measure(lambda: nngraph.to_graph(model, x))
    del graph
    graph, _, cached_mem, _ = measure(lambda: nngraph.to_graph(model, x))
    cached = best(lambda: nngraph.to_graph(model, x), reps)
    back, _, back_mem, _ = measure(lambda: nngraph.from_graph(graph, model, x))
    exact = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    del back
    back_s = best(lambda: nngraph.from_graph(graph, model, x), reps)
    total, features = graph_bytes(graph)
    mib = total / 2**20
    return {
        "model": name, "params": f"{sum(p.numel() for p in params) / 1e6:.1f}M",
        "floor (s)": floor,
        "to_graph first / floor": first / floor, "to_graph / floor": cached / floor, "from_graph / floor": back_s / floor,
        f"peak first / graph ({how})": first_mem / mib, "peak to / graph": cached_mem / mib,
        "peak from / graph": back_mem / mib,
        "graph (MiB)": mib, "graph / params": total / param_bytes, "x+edge_attr / params": features / param_bytes,
        "edges": graph.edge_blocks.num_edges if is_blocked(graph) else graph.num_edges, "exact": exact,
        "_seconds": f"first {first:.2f}, cached {cached:.3f}, from {back_s:.3f}",
    }


def print_table(rows: list[dict]) -> None:
    keys = [k for k in rows[0] if not k.startswith("_")]
    cells = [[f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for row in cells:
        print("| " + " | ".join(row) + " |")
    for r in rows:
        print(f"\n{r['model']}: {r['_seconds']} s", end="")
    print()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet18,vit,vgg11", help=f"comma-separated, of {sorted(MODELS)}")
    parser.add_argument("--size", type=int, default=224, help="input height and width (default: 224)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions, best kept (default: 3)")
    args = parser.parse_args(argv if argv is not None else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input size {args.size}; "
          "targets: time ratio <= 3, peak <= 3x graph bytes\n")
    rows = []
    for key in args.models.split(","):
        rows.append(run(key, args.size, args.reps))
        gc.collect()
    print_table(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
