"""``nngraph embed``: one vector per model of a zoo, from a self-supervised equivariant encoder.

    nngraph embed --zoo zoos/clf -o embeddings.safetensors [--checkpoint DIR] [--epochs 20]
    nngraph embed --graph big.safetensors [...] --checkpoint DIR -o embeddings.safetensors

With ``--graph``, graph files of ``nngraph convert`` are embedded by an encoder trained before: a large model's
graph (blocked, :mod:`nngraph.blocks`) is memory-mapped and encoded block by block
(:func:`nngraph.gnn.stream_forward`), so a model larger than the encoder's memory for edge states still embeds.

Without ``--checkpoint`` it trains the encoder contrastively (:mod:`tasks.embeddings.contrastive`) on the zoo's training
split, validated on its validation split, and keeps the run next to the output (``embeddings.encoder/``;
rerunning resumes or reuses it). Then it writes one row per model of the zoo, every split
(:mod:`tasks.embeddings.retrieval` describes the file). ``nngraph search`` reads it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from nngraph.cli import run_command
from nngraph.zoo import Zoo

from .embedder import EmbeddingError, add_ssl_args, checkpoint_dir, embed_graphs, load_encoder, train_contrastive
from ..common.harness import add_run_args
from .retrieval import save_embeddings
from ..common.splits import Split, load_split

__all__ = ["build_parser", "encoder_dir", "train_on_splits", "run", "main"]


def build_parser(prog: str = "python -m tasks.embeddings.embed") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--zoo", help="a zoo directory (python -m nngraph.zoo ...)")
    source.add_argument("--graph", nargs="+", metavar="FILE",
                        help="graph files of nngraph convert (.safetensors / .pt) to embed; needs --checkpoint")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the embeddings file to write (.safetensors)")
    p.add_argument("--checkpoint", default=None, metavar="ENCODER",
                   help="an encoder run directory of an earlier nngraph embed (default: train one, saved next to "
                        "the output as <output>.encoder/)")
    add_ssl_args(p)
    add_run_args(p)
    p.add_argument("--debug", action="store_true",
                   help="show the Python traceback of an error instead of its one line (or set NNGRAPH_DEBUG=1)")
    return p


def encoder_dir(output: str) -> str:
    """Where ``nngraph embed -o output`` keeps the encoder it trains: ``<output without .safetensors>.encoder``."""
    return os.path.splitext(output)[0] + ".encoder"


def train_on_splits(args, everything: Split, kind: str, out_dir: str, progress: bool):
    """The encoder trained contrastively on the train split of ``everything``, validated on its val split, in
    ``out_dir``; returns ``(encoder, fit result)``."""
    train = everything.where(lambda e: e["split"] == "train")
    val = everything.where(lambda e: e["split"] == "val")
    return train_contrastive(train, val, out_dir, args, kind, progress)


def run(args: argparse.Namespace) -> str:
    """Embed every model of ``args.zoo`` into ``args.output``; returns a one-line summary."""
    if not args.output.endswith(".safetensors"):
        raise EmbeddingError(f"-o {args.output}: the embeddings file must end in .safetensors")
    start = time.perf_counter()
    if args.graph:
        return embed_graph_files(args, start)
    zoo = Zoo(args.zoo)
    loaded = load_encoder(args.checkpoint) if args.checkpoint else None
    everything = load_split(args.zoo, "all", loaded[1]["probe_dim"] if loaded else args.probes)
    if loaded:
        model, where = loaded[0], checkpoint_dir(args.checkpoint)
    else:
        where = encoder_dir(args.output)
        model, _ = train_on_splits(args, everything, zoo.config["kind"], where, not args.no_progress)
    emb = embed_graphs(model, everything.graphs, device=args.device)  # (M, D)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    save_embeddings(args.output, emb, everything.entries, where, args.zoo)
    return (f"{args.zoo}: {len(emb)} models -> {args.output} ({emb.shape[1]} dims; encoder {where}; "
            f"{time.perf_counter() - start:.0f} s)")


def embed_graph_files(args: argparse.Namespace, start: float) -> str:
    """Embed the graph files ``args.graph`` with the encoder ``args.checkpoint`` into ``args.output``."""
    from nngraph.graph_io import load_graph

    if not args.checkpoint:
        raise EmbeddingError("--graph needs --checkpoint ENCODER (an encoder of an earlier nngraph embed --zoo)")
    model, settings = load_encoder(args.checkpoint)
    if settings.get("probe_dim"):
        raise EmbeddingError(f"--checkpoint {args.checkpoint}: the encoder reads probe features, which a graph file "
                             "does not hold; use an encoder trained without --probes")
    dtype = model.encoder.param_dtype()
    rows = []
    for path in args.graph:
        if not os.path.isfile(path):
            raise EmbeddingError(f"--graph {path}: no such file (write one with nngraph convert MODEL -o {path})")
        graph = load_graph(path)  # a safetensors file memory-mapped
        for key in ("x", "edge_attr"):
            if graph[key].dtype != dtype:
                graph[key] = graph[key].to(dtype)
        with torch.no_grad():
            rows.append(model.embed(graph))  # (1, D); a blocked graph is read block by block
    emb = torch.cat(rows)  # (M, D)
    entries = [{"id": os.path.basename(p), "split": None} for p in args.graph]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    where = checkpoint_dir(args.checkpoint)
    save_embeddings(args.output, emb, entries, where, os.path.dirname(os.path.abspath(args.graph[0])))
    return (f"{len(emb)} graphs -> {args.output} ({emb.shape[1]} dims; encoder {where}; "
            f"{time.perf_counter() - start:.0f} s)")


def main(argv=None, prog: str | None = None) -> int:
    parser = build_parser(prog) if prog else build_parser()
    return run_command(parser, argv, lambda args: print(run(args)) or 0)


if __name__ == "__main__":
    sys.exit(main())
