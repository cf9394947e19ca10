"""Models at the size people hold them: Hugging Face configs at real widths (random init, never downloaded).

For each model: the floor (one ``torch.cat`` of every parameter, same process); the first ``to_graph``
(tracing included) and a cached one as ratios to the floor, with their peak memory rise; the graph's bytes in
memory and in a safetensors file over the parameter bytes; whether the round trip is exact; and the
block-by-block encoder (:func:`nngraph.gnn.stream_forward`) on the graph: seconds per million edges and its peak.
``verify`` runs on a reduced copy (2 layers, same widths).

Peaks are the rise of ``VmHWM`` over the resident size before each step (see ``bench_convert``).

Usage: ``python -m benchmarks scale [--models gpt2-medium,llama-1b] [--encode] [--hidden 32] [--layers 4]``.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nngraph  # noqa: E402
from nngraph.blocks import is_blocked  # noqa: E402
from nngraph.convert import api  # noqa: E402

from benchmarks.bench_convert import _status, best, graph_bytes, measure  # noqa: E402


def _llama(layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    # TinyLlama-1.1B's shape: hidden 2048, 22 layers, 32 heads (4 key/value heads), MLP 5632, vocab 32000
    config = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers, num_attention_heads=32,
                         num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, use_cache=False)
    return LlamaForCausalLM(config)


def _gpt2(layers: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_embd=1024, n_layer=layers, n_head=16, vocab_size=50257, n_positions=1024, use_cache=False)
    return GPT2LMHeadModel(config)


MODELS = {
    "gpt2-medium": ("GPT-2 medium", lambda layers=24: _gpt2(layers)),
    "llama-1b": ("LLaMA 1.1B", lambda layers=22: _llama(layers)),
}


def _ids() -> tuple[torch.Tensor, ...]:
    return (torch.zeros(1, 8, dtype=torch.long),)


def file_bytes(graph) -> int:
    from nngraph.graph_io import save_graph

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "g.safetensors")
        save_graph(graph, path)
        return os.path.getsize(path)


def encode_cost(graph, hidden: int, layers: int) -> dict:
    from nngraph.gnn import NeuralGraphEncoder, stream_forward

    torch.manual_seed(0)
    encoder = NeuralGraphEncoder(16, hidden_dim=hidden, num_layers=layers).eval()
    out, seconds, peak, _ = measure(lambda: stream_forward(encoder, graph, progress=True))
    edges = graph.edge_blocks.num_edges if is_blocked(graph) else graph.edge_index.size(1)
    return {"encode s / M edges": seconds / (edges / 1e6), "encode peak (MiB)": peak,
            "_encode": f"{seconds:.1f} s for {edges / 1e6:.1f}M edges, out {tuple(out.shape)}"}


def encoder_rows(hidden: int, layers: int, width: int = 1024, depth: int = 3) -> list[dict]:
    """The encoder on one MLP graph (``depth`` layers of ``width``) in memory, block by block with the edge
    states kept, and block by block rebuilding them (what a graph larger than memory takes): seconds per
    million edges and peak memory rise, same process, with the largest output difference to the in-memory one."""
    from torch import nn

    from nngraph.blocks import materialize
    from nngraph.gnn import NeuralGraphEncoder, stream_forward

    torch.manual_seed(0)
    mlp = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())])
    graph = nngraph.convert.build_layout(mlp, (torch.randn(1, width),)).to_graph(mlp, compact=True)
    plain = materialize(graph)
    edges = graph.edge_blocks.num_edges
    encoder = NeuralGraphEncoder(16, hidden_dim=hidden, num_layers=layers).eval()
    rows = []
    with torch.no_grad():
        expected, seconds, peak, _ = measure(lambda: encoder(plain))
    rows.append({"model": f"MLP {depth}x{width} ({edges / 1e6:.1f}M edges)", "encoder": "in memory", "s / M edges":
                 seconds / (edges / 1e6), "peak (MiB)": peak, "max |diff|": 0.0})
    for name, cache in (("blocks, states kept", 1 << 40), ("blocks, states rebuilt", 0)):
        out, seconds, peak, _ = measure(lambda: stream_forward(encoder, graph, cache_bytes=cache))
        rows.append({"model": rows[0]["model"], "encoder": name, "s / M edges": seconds / (edges / 1e6),
                     "peak (MiB)": peak, "max |diff|": float((out - expected).abs().max())})
    return rows


def run(key: str, encode: bool, hidden: int, layers: int, verify: bool, save_dir: str | None = None) -> dict:
    name, make = MODELS[key]
    torch.manual_seed(0)
    start = time.perf_counter()
    model = make().eval()
    build_s = time.perf_counter() - start
    params = [p.detach() for p in model.parameters()]
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    floor = best(lambda: torch.cat([p.reshape(-1) for p in params]), 2)
    del params
    api.clear_cache()
    graph, first, first_mem, _ = measure(lambda: nngraph.to_graph(model, _ids()))
    del graph
    graph, cached, cached_mem, _ = measure(lambda: nngraph.to_graph(model, _ids()))
    back = nngraph.from_graph(graph, model, _ids())
    exact = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    del back
    gc.collect()
    mib = param_bytes / 2**20
    row = {
        "model": name, "params": f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M",
        "floor (s)": floor, "to_graph first / floor": first / floor, "to_graph cached / floor": cached / floor,
        "peak first (MiB)": first_mem, "peak cached (MiB)": cached_mem,
        "graph / params (memory)": graph_bytes(graph)[0] / param_bytes, "graph / params (file)": file_bytes(graph) / param_bytes,
        "exact": exact, "blocked": is_blocked(graph),
        "_seconds": f"model built in {build_s:.0f} s; params {mib:.0f} MiB; first {first:.1f} s, cached {cached:.2f} s",
    }
    if encode:
        row.update(encode_cost(graph, hidden, layers))
    if save_dir:  # for nngraph embed --graph (the embedding of a model larger than the encoder's memory)
        from nngraph.graph_io import save_graph

        path = os.path.join(save_dir, f"{key}.safetensors")
        start = time.perf_counter()
        save_graph(graph, path)
        row["_seconds"] += f"; graph file {path} ({os.path.getsize(path) / 2**30:.2f} GiB, {time.perf_counter() - start:.0f} s)"
    del graph, model
    gc.collect()
    if verify:
        small = make(layers=2).eval()
        report = nngraph.verify(small, _ids())
        row["verify (2 layers)"] = report.ok
        del small
    return row


def print_table(rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r if not k.startswith("_")))
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |")
    for r in rows:
        if "_seconds" in r:
            print(f"\n{r['model']}: {r['_seconds']}" + (f"; encode {r['_encode']}" if "_encode" in r else ""), end="")
    print()


def _anon_bytes() -> int:
    """The process's anonymous resident bytes (``RssAnon``: its own memory, not mapped files' pages)."""
    return _status("RssAnon") * 1024


def checkpoint_child(key: str, path: str) -> dict:
    """In a fresh process: the model built with its parameters on the meta device and filled from the
    safetensors file ``path`` by memory mapping (:mod:`nngraph.convert.checkpoint`), then converted; the peak of
    its anonymous memory sampled every 10 ms."""
    import threading

    import nngraph
    from nngraph.convert.checkpoint import load_mapped, parameters_on_meta

    with parameters_on_meta():
        model = MODELS[key][1]()
    load_mapped(model, path)
    base, peak, done = _anon_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _anon_bytes())
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    graph = nngraph.to_graph(model, _ids())
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    largest = max(p.numel() * p.element_size() for p in model.parameters())
    return {"seconds": seconds, "anon_before": base, "anon_peak_rise": max(peak[0], _anon_bytes()) - base,
            "graph": graph_bytes(graph)[0], "params": params, "largest": largest}


def checkpoint_rows(keys: list[str], directory: str) -> list[dict]:
    """Per model: its checkpoint written to ``directory`` (once), converted from it in a fresh process."""
    import json
    import subprocess

    from safetensors.torch import save_model

    rows = []
    for key in keys:
        path = os.path.join(directory, f"{key}.safetensors")
        if not os.path.exists(path):
            model = MODELS[key][1]()
            save_model(model, path + ".tmp")
            os.replace(path + ".tmp", path)
            del model
            gc.collect()
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--checkpoint-child", key, path],
                             check=True, capture_output=True, text=True, cwd=str(Path(__file__).resolve().parent.parent))
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"model": MODELS[key][0], "params (GiB)": r["params"] / 2**30, "to_graph (s)": r["seconds"],
                     "own memory before (GiB)": r["anon_before"] / 2**30,
                     "own memory rise (GiB)": r["anon_peak_rise"] / 2**30, "graph (GiB)": r["graph"] / 2**30,
                     "rise / graph": r["anon_peak_rise"] / r["graph"],
                     "transient / largest tensor": (r["anon_peak_rise"] - r["graph"]) / r["largest"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="gpt2-medium,llama-1b", help=f"comma-separated, of {sorted(MODELS)}")
    parser.add_argument("--encode", action="store_true", help="also run the block-by-block encoder on each graph")
    parser.add_argument("--hidden", type=int, default=32, help="encoder width for --encode (default: 32)")
    parser.add_argument("--layers", type=int, default=4, help="encoder layers for --encode (default: 4)")
    parser.add_argument("--no-verify", action="store_true", help="skip verify on the 2-layer copy")
    parser.add_argument("--save-graphs", metavar="DIR", default=None,
                        help="write each model's graph to DIR/<model>.safetensors (for nngraph embed --graph)")
    parser.add_argument("--encoder-only", action="store_true",
                        help="only the encoder table (in memory against block by block, on an MLP graph)")
    parser.add_argument("--from-checkpoint", metavar="DIR", default=None,
                        help="only the table of conversions from a checkpoint: each model saved to "
                             "DIR/<model>.safetensors, then converted in a fresh process with its weights mapped")
    parser.add_argument("--checkpoint-child", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.checkpoint_child:
        import json

        print(json.dumps(checkpoint_child(*args.checkpoint_child)))
        return
    if args.from_checkpoint:
        print_table(checkpoint_rows(args.models.split(","), args.from_checkpoint))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(f"encoder width {args.hidden}, {args.layers} layers:\n")
    print_table(encoder_rows(args.hidden, args.layers))
    if args.encoder_only:
        return
    rows = []
    for key in args.models.split(","):
        rows.append(run(key, args.encode, args.hidden, args.layers, not args.no_verify, args.save_graphs))
        print(rows[-1], flush=True)
        gc.collect()
    print_table(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
