"""Nearest models by cosine similarity, retrieval precision@k, and the embeddings file.

The embeddings file (``nngraph embed -o FILE``) is a safetensors file with one tensor, ``embeddings``
``(M, D)`` float32, one row per model of the zoo; its metadata holds ``models`` (JSON: one ``{"id", "label",
"split"}`` per row, in row order), ``encoder`` (the encoder checkpoint's directory, relative to the file) and
``zoo`` (the zoo's absolute path when it was embedded). Rows of diverged models are NaN and never retrieved.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from nngraph.io import atomic_write

from .embedder import EmbeddingError

__all__ = ["cosine_neighbours", "precision_at_k", "save_embeddings", "load_embeddings", "model_label"]


def cosine_neighbours(queries: torch.Tensor, database: torch.Tensor, k: int,
                      exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows of ``database`` most cosine-similar to each query, most similar first (ties: lower index).

    Rows with non-finite entries (in either) are never neighbours; ``exclude`` ``(Q,)`` long names one database
    row per query to leave out (the query itself, for leave-one-out retrieval inside one set).

    Shapes:
        - ``queries`` :math:`(Q, D)`, ``database`` :math:`(M, D)`
        - **output:** similarities :math:`(Q, k)` and indices :math:`(Q, k)` long (``k`` at most the rows left)
    """
    if queries.dim() != 2 or database.dim() != 2 or queries.size(1) != database.size(1):
        raise ValueError(f"queries {tuple(queries.shape)} and database {tuple(database.shape)} must be (Q, D) and "
                         "(M, D) of one width D")
    ok = torch.isfinite(database).all(-1)  # (M,)
    q = F.normalize(torch.nan_to_num(queries.double()), dim=-1)  # (Q, D)
    d = F.normalize(torch.nan_to_num(database.double()), dim=-1)  # (M, D)
    sim = q @ d.t()  # (Q, M)
    sim = sim.masked_fill(~ok.unsqueeze(0), float("-inf"))
    if exclude is not None:
        sim[torch.arange(len(q)), exclude] = float("-inf")
    k = min(k, int(ok.sum()) - (0 if exclude is None else 1))
    if k < 1:
        raise ValueError(f"no rows to retrieve: {int(ok.sum())} finite database rows")
    # a stable descending sort: equal similarities keep the database order
    order = torch.sort(sim, dim=-1, descending=True, stable=True).indices[:, :k]  # (Q, k)
    return sim.gather(1, order), order


def precision_at_k(embeddings: torch.Tensor, labels: Sequence, k: int = 10) -> float:
    """Mean over the finite rows of the share of their ``k`` nearest other rows (cosine) with the same label.

    Shapes:
        - ``embeddings`` :math:`(M, D)`; ``labels`` :math:`M` hashable values
    """
    if len(labels) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(labels)} labels")
    ok = torch.nonzero(torch.isfinite(embeddings).all(-1)).flatten()  # (M_ok,)
    emb, lab = embeddings[ok], [labels[i] for i in ok.tolist()]
    if len(emb) < 2:
        raise ValueError(f"precision@k needs at least 2 finite rows, got {len(emb)}")
    _, idx = cosine_neighbours(emb, emb, k, exclude=torch.arange(len(emb)))  # (M_ok, k)
    codes = {v: c for c, v in enumerate(dict.fromkeys(lab))}
    y = torch.tensor([codes[v] for v in lab])  # (M_ok,)
    return float((y[idx] == y.unsqueeze(-1)).double().mean())


def model_label(entry: dict) -> str:
    """What a search result shows of a model: the digit of an INR, the family and test accuracy of a classifier."""
    if "label" in entry:
        return f"digit {entry['label']}" if entry.get("family") == "siren" else str(entry["label"])
    acc = entry.get("test_acc")
    return f"{entry.get('family', '?')}" + ("" if acc is None else f", test acc {float(acc):.3f}")


def save_embeddings(path: str, embeddings: torch.Tensor, entries: Sequence[dict], encoder_dir: str,
                    zoo: str) -> None:
    """Write the embeddings file (module docstring) atomically."""
    if len(entries) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(entries)} models")
    models = [{"id": e["id"], "label": model_label(e), "split": e.get("split")} for e in entries]
    rel = os.path.relpath(os.path.abspath(encoder_dir), os.path.dirname(os.path.abspath(path)))
    data = save({"embeddings": embeddings.detach().float().contiguous()},
                metadata={"format": "nngraph-embeddings", "models": json.dumps(models), "encoder": rel,
                          "zoo": os.path.abspath(zoo)})
    atomic_write(path, data)


def load_embeddings(path: str) -> tuple[torch.Tensor, list[dict], str]:
    """``(embeddings (M, D), models, encoder directory)`` of an embeddings file.

    Raises:
        EmbeddingError: if the file is missing, unreadable or not written by ``nngraph embed``.
    """
    if not os.path.isfile(path):
        raise EmbeddingError(f"embeddings file {path}: no such file (write it with nngraph embed --zoo DIR -o {path})")
    try:
        tensors = load_file(path)
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise EmbeddingError(f"embeddings file {path} is not a readable safetensors file ({err})") from None
    if meta.get("format") != "nngraph-embeddings" or "embeddings" not in tensors:
        raise EmbeddingError(f"{path} is not an embeddings file of nngraph embed (format {meta.get('format')!r})")
    lacking = [k for k in ("models", "encoder") if not isinstance(meta.get(k), str)]
    if lacking:
        raise EmbeddingError(f"{path}: its metadata lacks {lacking} (nngraph embed writes models, encoder and zoo); "
                             "the file is damaged: embed the zoo again")
    try:
        models = json.loads(meta["models"])
    except json.JSONDecodeError as err:
        raise EmbeddingError(f"{path}: its metadata 'models' is not valid JSON ({err}); embed the zoo again") from None
    if not isinstance(models, list):
        raise EmbeddingError(f"{path}: its metadata 'models' is a {type(models).__name__}, not a list of "
                             "{id, label, split}")
    for i, m in enumerate(models):
        missing = [k for k in ("id", "label") if not isinstance(m, dict) or k not in m]
        if missing:
            raise EmbeddingError(f"{path}: model {i} of its metadata 'models' lacks {missing} ({m!r:.80}); embed the "
                                 "zoo again")
        if not isinstance(m["id"], str):
            raise EmbeddingError(f"{path}: model {i} of its metadata 'models' has id {m['id']!r}, not a string")
    emb = tensors["embeddings"]
    if emb.dim() != 2 or len(models) != len(emb):
        raise EmbeddingError(f"{path}: {tuple(emb.shape)} embeddings for {len(models)} models")
    if not emb.is_floating_point():
        raise EmbeddingError(f"{path}: the embeddings are {emb.dtype}, not floating point")
    if len(emb) and not torch.isfinite(emb).all(-1).any():
        raise EmbeddingError(f"{path}: all {len(emb)} rows are non-finite (NaN or Inf): no model to retrieve; "
                             "the encoder diverged or the file is damaged: embed the zoo again")
    encoder = meta["encoder"]
    if os.path.isabs(encoder) or "\x00" in encoder:
        raise EmbeddingError(f"{path}: its metadata 'encoder' {encoder!r} is not a path relative to the file")
    return emb, models, os.path.join(os.path.dirname(os.path.abspath(path)), encoder)
