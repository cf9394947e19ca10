"""Encoder throughput and memory: batches of 64 SIREN INRs (2->32->32->1) and of small CNNs, and one
forward pass over a ResNet-18-sized graph.

Throughput is graphs per second of the best and the median of several timed repetitions after warm-up
(on a shared machine the best is the closest to an idle one; with 2 threads, a busy second core can
slow OpenMP regions tenfold, so a 1-thread row is printed too); forward
runs under ``torch.no_grad()``, forward+backward backpropagates ``out.sum()`` into every parameter
(no optimizer step). Peak memory is the rise of the peak resident set size over one forward+backward
step in a fresh process (``VmHWM``, reset through ``/proc/self/clear_refs``; else the ``ru_maxrss``
growth), so earlier runs' freed-but-kept heap does not hide it. The machine's
load average is printed with the table: on a shared 2-core machine other processes slow everything.

By default the process first calls :func:`nngraph.train.keep_freed_memory` (as ``nngraph.train.fit``
does on the CPU): glibc then reuses freed memory instead of returning it to the kernel, and each
step stops page-faulting in its edge tensors afresh. ``--default-malloc`` measures glibc's defaults.

Usage: ``python -m benchmarks encoder`` or ``python benchmarks/bench_encoder.py [--hidden 32] [--layers 4]
[--batch 64] [--threads N] [--no-resnet] [--profile] [--default-malloc]``.
"""
from __future__ import annotations

import argparse
import gc
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nngraph
from nngraph.gnn import NeuralGraphEncoder
from nngraph.modules import Sine
from nngraph.train import keep_freed_memory


def _status(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def peak_mib(fn) -> tuple[float, str]:
    """Peak resident memory rise (MiB) while running ``fn()`` once."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before, exact = _status("VmRSS"), True
    except OSError:
        before, exact = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
    fn()
    after = _status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) / 1024, "VmHWM" if exact else "ru_maxrss growth"


def _child_peak(kind: str, batch_size: int, hidden: int, layers: int, threads: int, keep: bool) -> float:
    """Peak memory of one forward+backward, measured in a fresh process (a clean heap)."""
    code = ("import sys, torch; from benchmarks.bench_encoder import _peak_here; "
            f"print(_peak_here({kind!r}, {batch_size}, {hidden}, {layers}, {threads}, {keep}))")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _peak_here(kind: str, batch_size: int, hidden: int, layers: int, threads: int, keep: bool) -> float:
    if keep:
        keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    make, example = (siren, None) if kind == "siren" else (small_cnn, (torch.randn(1, 1, 28, 28),))
    batch = nngraph.batch_graphs([nngraph.to_graph(make(), example) for _ in range(batch_size)])
    encoder = NeuralGraphEncoder(out_dim=10, hidden_dim=hidden, num_layers=layers)
    # warm-up on one graph: one-time allocations (thread pools, caches) are not counted, the batch's are
    encoder(nngraph.batch_graphs([nngraph.to_graph(make(), example)])).sum().backward()
    encoder.zero_grad(set_to_none=True)
    return peak_mib(lambda: encoder(batch).sum().backward())[0]


def timed(fn, reps: int, warmup: int = 2) -> tuple[float, float]:
    """Best and median wall seconds of ``fn()`` (other processes only ever add time: the best is the
    closest to an idle machine)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def siren() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 32), Sine(), nn.Linear(32, 32), Sine(), nn.Linear(32, 1))


def small_cnn() -> nn.Module:
    """The CNN-zoo classifier shape (Unterthiner et al.): three 3x3 convs of 16 channels, 10 classes."""
    return nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def bench_batch(name: str, make, example, encoder: nn.Module, batch_size: int, reps: int, kind: str,
                keep: bool) -> dict:
    torch.manual_seed(0)
    graphs = [nngraph.to_graph(make(), example) for _ in range(batch_size)]
    batch = nngraph.batch_graphs(graphs)

    def forward():
        with torch.no_grad():
            encoder(batch)

    def forward_backward():
        encoder.zero_grad(set_to_none=True)
        encoder(batch).sum().backward()

    t_fwd, t_fwd_med = timed(forward, reps)
    t_fb, t_fb_med = timed(forward_backward, reps)
    mem = _child_peak(kind, batch_size, encoder.hidden_dim, encoder.num_layers, torch.get_num_threads(), keep)
    return {"name": name, "nodes": graphs[0].num_nodes, "edges": graphs[0].num_edges, "K": batch.edge_attr.size(0) / batch.num_edges,
            "fwd": batch_size / t_fwd, "fb": batch_size / t_fb, "mem": mem,
            "fwd_med": batch_size / t_fwd_med, "fb_med": batch_size / t_fb_med, "how": "VmHWM rise in a fresh process"}


def bench_resnet(encoder: nn.Module) -> dict:
    from benchmarks.resnet import resnet18

    torch.manual_seed(0)
    model = resnet18()
    start = time.perf_counter()
    graph = nngraph.to_graph(model, (torch.randn(1, 3, 64, 64),))
    t_conv = time.perf_counter() - start
    out = {}

    def forward():
        with torch.no_grad():
            out["y"] = encoder(graph)

    start = time.perf_counter()
    mem, how = peak_mib(forward)
    t_fwd = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    return {"name": "ResNet-18 (1 graph)", "nodes": graph.num_nodes, "edges": graph.num_edges,
            "K": graph.edge_attr.size(0) / graph.num_edges, "params": params, "convert": t_conv, "fwd_s": t_fwd, "mem": mem, "how": how}


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: rows for 1 thread and for torch's default)")
    parser.add_argument("--no-resnet", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table for the INR step")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's malloc defaults (no nngraph.train.keep_freed_memory)")
    args = parser.parse_args(argv if argv is not None else [])
    keep = not args.default_malloc and keep_freed_memory()

    torch.manual_seed(0)
    encoder = NeuralGraphEncoder(out_dim=10, hidden_dim=args.hidden, num_layers=args.layers)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; encoder hidden {args.hidden}, {args.layers} layers, "
          f"{sum(p.numel() for p in encoder.parameters()):,} parameters; "
          f"malloc: {'keep_freed_memory' if keep else 'glibc defaults'}\n")
    threads = sorted({1, torch.get_num_threads()}) if args.threads is None else [args.threads]
    default_threads = torch.get_num_threads()
    rows = []
    for nt in threads:
        torch.set_num_threads(nt)
        cnn_input = (torch.randn(1, 1, 28, 28),)
        rows.append({**bench_batch("SIREN 2-32-32-1", siren, None, encoder, args.batch, args.reps, "siren", keep),
                     "threads": nt})
        rows.append({**bench_batch("CNN 1-16-16-16-10 (3x3)", small_cnn, cnn_input, encoder, args.batch, args.reps,
                                   "cnn", keep), "threads": nt})
    torch.set_num_threads(default_threads)
    print(f"| batch of {args.batch} | threads | nodes/graph | edges/graph | kernel entries/edge | forward graphs/s (best / median) "
          "| fwd+bwd graphs/s (best / median) | peak MiB (fwd+bwd) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['threads']} | {r['nodes']} | {r['edges']} | {r['K']:.2f} "
              f"| {r['fwd']:.0f} / {r['fwd_med']:.0f} | {r['fb']:.0f} / {r['fb_med']:.0f} | {r['mem']:.0f} |")
    print(f"\n(peak memory: {rows[0]['how']}; target: SIREN fwd+bwd >= 175 graphs/s at hidden 32, 4 layers)")

    if not args.no_resnet:
        r = bench_resnet(encoder)
        print(f"\n| {r['name']}, {torch.get_num_threads()} threads | params | nodes | edges | K | to_graph s "
              "| encoder forward s | peak MiB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| | {r['params']:,} | {r['nodes']:,} | {r['edges']:,} | {r['K']:.2f} | {r['convert']:.1f} "
              f"| {r['fwd_s']:.1f} | {r['mem']:.0f} |")

    if args.profile:
        from torch.profiler import profile

        graphs = [nngraph.to_graph(siren()) for _ in range(args.batch)]
        batch = nngraph.batch_graphs(graphs)
        with profile() as prof:
            for _ in range(3):
                encoder.zero_grad(set_to_none=True)
                encoder(batch).sum().backward()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main(sys.argv[1:])
