"""``nngraph search``: the models of a zoo most like a query model (cosine similarity of embeddings).

    nngraph search --zoo zoos/clf --query model.safetensors -k 10 [--embeddings embeddings.safetensors]

The query is embedded by the encoder the embeddings file names (``nngraph embed``). It is a safetensors state
dict of one of the zoo's architectures (found by its sha256 among the zoo's models, else by its parameter
names and shapes), a state dict with ``--factory package.module:function``, or a ``torch.export`` program
(``.pt2``), as for ``nngraph convert``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import nngraph
from nngraph.data import example_inputs_for_spec
from nngraph.cli import add_common_args, run_command
from nngraph.zoo import Zoo, sha256_file
from nngraph.zoo.storage import state_mismatch
from nngraph.zoo.inr_meta import INRMetadata

from .embedder import EmbeddingError, embed_graphs, load_encoder
from ..common.features import probe_inputs_for
from .retrieval import cosine_neighbours, load_embeddings

__all__ = ["build_parser", "resolve_query", "query_graph", "search", "format_hits", "main"]


def build_parser(prog: str = "python -m tasks.embeddings.search") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--zoo", required=True, help="the zoo the embeddings file was written from")
    p.add_argument("--query", required=True, metavar="MODEL",
                   help="a safetensors state dict (of a zoo architecture, or with --factory) or a .pt2 program")
    p.add_argument("-k", type=int, default=10, help="how many neighbours to list")
    p.add_argument("--embeddings", default="embeddings.safetensors", help="the file of nngraph embed")
    p.add_argument("--factory", default=None, metavar="MODULE:FUNCTION",
                   help="for a state dict of an architecture the zoo does not hold: a function returning the model")
    p.add_argument("--inputs", default=None, metavar="SHAPE",
                   help="example input shapes of a --factory / .pt2 model, e.g. 2,1,8,8 (see nngraph convert)")
    add_common_args(p)
    return p


def _zoo_architecture(zoo: Zoo, state: dict) -> dict | None:
    """The first spec of ``zoo`` whose model has exactly the parameter names and shapes of ``state``."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    seen = set()
    for e in zoo.entries:
        key = json.dumps(e["spec"], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        model = zoo.build(e["spec"])
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes:
            return e["spec"]
    return None


def resolve_query(zoo: Zoo, path: str, factory: str | None = None, inputs: str | None = None):
    """``(model, example_inputs, method, spec or None, zoo entry or None)`` of query file ``path``.

    Raises:
        EmbeddingError: naming the file if it is missing, unreadable, or fits no architecture of the zoo.
    """
    from nngraph.cli import CommandError, load_model

    if not os.path.isfile(path):
        raise EmbeddingError(f"--query {path}: no such file")
    if path.endswith(".safetensors") and factory is None:
        digest = sha256_file(path)
        member = next((e for e in zoo.entries if e.get("sha256") == digest), None)
        try:
            state = load_file(path)
        except (SafetensorError, OSError) as err:
            raise EmbeddingError(f"--query {path} is not a readable safetensors file ({err})") from None
        spec = member["spec"] if member is not None else _zoo_architecture(zoo, state)
        if spec is None:
            raise EmbeddingError(f"--query {path}: its parameters fit none of the architectures of zoo {zoo.root}; "
                                 "give --factory package.module:function that builds its model")
        model = zoo.build(spec)
        problems = state_mismatch(state, model.state_dict())
        if problems:  # a zoo member whose spec does not fit its own weights
            raise EmbeddingError(f"--query {path} does not fit the architecture of zoo model {(member or {}).get('id')}: {problems}")
        model.load_state_dict(state)
        return model.eval(), example_inputs_for_spec(spec), "auto", spec, member
    try:
        model, example, method = load_model(path, factory, inputs)
    except CommandError as err:
        raise EmbeddingError(str(err)) from None
    return model, example, method, None, None


def query_graph(zoo: Zoo, model, example, method: str, spec: dict | None, probe_dim: int):
    """The query's neural graph, with the probe features the encoder reads (``probe_dim`` of them, drawn as
    :func:`tasks.common.splits.load_split` draws the zoo's)."""
    graph = nngraph.to_graph(model, example, method=method)
    if probe_dim:
        if spec is None:
            raise EmbeddingError(f"the encoder reads {probe_dim} probe features, which need the query to be of a "
                                 "zoo architecture (a state dict the zoo's specs build)")
        inputs = probe_inputs_for(spec, probe_dim, 0, "grid", INRMetadata.of_zoo(zoo.config))
        graph.probe = nngraph.probe_features(model, inputs).float()  # (N, P)
    return graph


def search(zoo_dir: str, query: str, k: int = 10, embeddings: str = "embeddings.safetensors",
           factory: str | None = None, inputs: str | None = None) -> tuple[list[dict], dict | None]:
    """The ``k`` zoo models nearest to ``query``: ``[{"rank", "id", "label", "similarity"}]`` (most similar
    first) and the zoo entry of the query if it is a zoo member.

    Raises:
        EmbeddingError: for a bad ``k``, files, or an embeddings file of another zoo.
    """
    if k < 1:
        raise EmbeddingError(f"-k {k}: ask for at least one neighbour")
    zoo = Zoo(zoo_dir)
    emb, models, encoder_path = load_embeddings(embeddings)
    unknown = [m["id"] for m in models if m["id"] not in {e["id"] for e in zoo.entries}]
    if unknown:
        raise EmbeddingError(f"{embeddings} holds models zoo {zoo_dir} does not have (e.g. {unknown[0]!r}): it was "
                             "embedded from another zoo; embed this one with nngraph embed")
    encoder, settings = load_encoder(encoder_path)
    if emb.size(1) != settings.get("embed_dim"):
        raise EmbeddingError(f"{embeddings}: rows of width {emb.size(1)}, but its encoder ({encoder_path}) embeds in "
                             f"{settings.get('embed_dim')} dimensions: the file and the encoder do not belong together; "
                             "embed the zoo again")
    model, example, method, spec, member = resolve_query(zoo, query, factory, inputs)
    graph = query_graph(zoo, model, example, method, spec, settings["probe_dim"])
    q = embed_graphs(encoder, [graph])  # (1, D)
    if not torch.isfinite(q).all():
        raise EmbeddingError(f"--query {query} has non-finite weights: it has no embedding")
    sims, idx = cosine_neighbours(q, emb, k)  # (1, k) each
    hits = [{"rank": r + 1, "id": models[i]["id"], "label": models[i]["label"], "similarity": float(s)}
            for r, (s, i) in enumerate(zip(sims[0].tolist(), idx[0].tolist()))]
    return hits, member


def format_hits(hits: list[dict]) -> str:
    """The result table: rank, id, label, cosine similarity."""
    lines = ["| rank | id | label | similarity |", "|---:|---|---|---:|"]
    lines += [f"| {h['rank']} | {h['id']} | {h['label']} | {h['similarity']:.4f} |" for h in hits]
    return "\n".join(lines)


def _show(args) -> int:
    hits, member = search(args.zoo, args.query, args.k, args.embeddings, args.factory, args.inputs)
    print(f"query {args.query}" + (f" (zoo model {member['id']})" if member else "") + f": {len(hits)} nearest models")
    print(format_hits(hits))
    return 0


def main(argv=None, prog: str | None = None) -> int:
    parser = build_parser(prog) if prog else build_parser()
    return run_command(parser, argv, _show)


if __name__ == "__main__":
    sys.exit(main())
