"""Model embeddings: linear probes, retrieval and a 2-D map from frozen self-supervised embeddings.

    python -m tasks.embeddings --zoo zoos/clf --out runs/embeddings --epochs 20

Methods (each gives one vector per model): ``ssl``, the contrastively trained equivariant encoder
(:mod:`tasks.embeddings.contrastive`, as ``nngraph embed`` trains it; ``--checkpoint`` reuses one); ``random_encoder``,
the same encoder untrained (what the architecture gives without learning); ``stats``, weight statistics
(:mod:`tasks.common.weightstats`, ``asinh``-ed).

Rows, all on the test split (the encoder and the probes are fitted on the training split):

- linear probes: digit accuracy on an INR zoo; Kendall's tau and R² of the test accuracy (ridge) and family
  accuracy (logistic regression) on a classifier zoo;
- retrieval precision@k (cosine, leave-one-out among the test models): same digit on an INR zoo; same run
  and same family on a classifier zoo, next to random retrieval's expectation (method ``chance``) and, for
  runs, the best any ranking reaches (``ceiling``: a run has few checkpoints);
- ``map.png``: t-SNE of the test models' vectors, one panel per method, coloured by digit / family.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from nngraph.zoo import Zoo

from .embed import train_on_splits
from .embedder import SCALERS, ContrastiveEncoder, EmbeddingError, add_ssl_args, embed_graphs, load_encoder
from ..common.features import max_kernel_shape
from ..common.harness import add_run_args, check_methods, csv_list, run_dir, run_main, task_parser
from .linear_probe import probe_classes, probe_values
from ..common.metrics import kendall_tau, r2
from ..common.report import plot_maps, row, save_run
from .retrieval import precision_at_k, save_embeddings
from ..common.robust import is_finite_graph, signed_log
from ..common.splits import Split, load_split
from ..common.weightstats import weight_stat_features

TASK = "embeddings"
METHODS = ("ssl", "random_encoder", "stats")

__all__ = ["build_parser", "retrieval_baselines", "tsne_2d", "run", "main"]


def build_parser(prog: str = "python -m tasks.embeddings") -> argparse.ArgumentParser:
    p = task_parser(prog, __doc__)
    p.add_argument("--zoo", required=True, help="an INR or classifier zoo (python -m nngraph.zoo ...)")
    p.add_argument("--out", default="runs/embeddings", help="directory of the runs, plots and results.json")
    p.add_argument("--methods", type=csv_list, default=list(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    p.add_argument("--checkpoint", default=None, metavar="ENCODER",
                   help="the ssl encoder of an earlier nngraph embed (default: train one in <out>/runs/ssl)")
    p.add_argument("-k", type=int, default=10, help="neighbours of retrieval precision@k")
    p.add_argument("--map-max", type=int, default=1500, help="at most this many test models in the t-SNE map")
    add_ssl_args(p)
    add_run_args(p)
    return p


def retrieval_baselines(labels, k: int) -> tuple[float, float]:
    """``(chance, ceiling)`` of precision@k for ``labels``: its expectation under a random ranking (mean over
    queries of ``(n_same - 1) / (n - 1)``) and the best any ranking reaches (``min(k, n_same - 1) / k``)."""
    labels = list(labels)
    n = len(labels)
    if n < 2:
        raise ValueError(f"retrieval needs at least 2 models, got {n}")
    counts: dict = {}
    for v in labels:
        counts[v] = counts.get(v, 0) + 1
    same = np.array([counts[v] - 1 for v in labels], dtype=float)  # (n,) other members of each label
    k = min(k, n - 1)
    return float((same / (n - 1)).mean()), float((np.minimum(k, same) / k).mean())


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(M, 2)`` t-SNE of ``(M, D)`` standardised features (scikit-learn; perplexity at most ``(M - 1) / 3``)."""
    from sklearn.manifold import TSNE

    from .linear_probe import standardise

    (z,) = standardise(x)
    perplexity = float(max(1.0, min(30.0, (len(z) - 1) / 3)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)


def _untrained_encoder(args, train: Split, kind: str) -> ContrastiveEncoder:
    torch.manual_seed(args.seed)
    scaler = SCALERS[args.scaler or ("rms" if kind == "inr" else "robust")]().fit(train.graphs)
    return ContrastiveEncoder(scaler, args.embed_dim, args.hidden_dim, args.num_layers, args.probes,
                              kernel_box=max_kernel_shape(train.graphs))


def _features(args, name: str, everything: Split, kind: str, progress: bool):
    """``(M, D)`` vectors of every model of ``everything`` for method ``name``, and the ssl run's history."""
    if name == "stats":
        return signed_log(torch.stack([weight_stat_features(m) for m in everything.models])).numpy(), None
    train = everything.where(lambda e: e["split"] == "train")
    history = None
    if name == "random_encoder":
        model = _untrained_encoder(args, train, kind)
    elif args.checkpoint:
        model, _ = load_encoder(args.checkpoint)
    else:
        model, result = train_on_splits(args, everything, kind, run_dir(args.out, "ssl"), progress)
        history = result.history
    emb = embed_graphs(model, everything.graphs, device=args.device)  # (M, D)
    if name == "ssl" and not args.checkpoint:  # nngraph search reads it
        save_embeddings(os.path.join(args.out, "embeddings.safetensors"), emb, everything.entries,
                        run_dir(args.out, "ssl"), args.zoo)
    return emb.numpy(), history


def _targets(kind: str) -> dict:
    """The labels a zoo's models are probed and retrieved by: ``{name: (entry -> value, probe kind)}``."""
    if kind == "inr":
        return {"digit": (lambda e: e["label"], "classes")}
    return {"test_acc": (lambda e: float(e["test_acc"]), "values"), "family": (lambda e: e["family"], "classes"),
            "run": (lambda e: e.get("run", e["id"]), None)}


def _method_rows(args, name, feats, train_idx, test_idx, train, test, kind, seconds, note) -> list[dict]:
    rows = []
    xtr, xte = feats[train_idx], feats[test_idx]
    for target, (get, how) in _targets(kind).items():
        ytr, yte = [get(e) for e in train.entries], [get(e) for e in test.entries]
        if how == "classes":
            acc = float((probe_classes(xtr, ytr, xte, args.seed) == np.asarray(yte)).mean())
            rows.append(row(TASK, name, f"probe_acc[{target}]", acc, seconds, note=note))
            seconds = None
        elif how == "values":
            pred = probe_values(xtr, ytr, xte)
            rows.append(row(TASK, name, f"probe_kendall_tau[{target}]", kendall_tau(yte, pred), seconds, note=note))
            rows.append(row(TASK, name, f"probe_r2[{target}]", r2(yte, pred), None, note=note))
            seconds = None
        if target != "test_acc":
            rows.append(row(TASK, name, f"precision@{args.k}[{target}]",
                            precision_at_k(torch.as_tensor(xte), yte, args.k), None, note=note))
    return rows


def _baseline_rows(args, test: Split, kind: str) -> list[dict]:
    rows = []
    for target, (get, _) in _targets(kind).items():
        if target == "test_acc":
            continue
        chance, ceiling = retrieval_baselines([get(e) for e in test.entries], args.k)
        rows.append(row(TASK, "chance", f"precision@{args.k}[{target}]", chance, None, note="random ranking"))
        if target == "run":
            rows.append(row(TASK, "ceiling", f"precision@{args.k}[{target}]", ceiling, None,
                            note="best possible: a run's other checkpoints first"))
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    """Embed the zoo with every method; returns the results rows (and writes results.json, map.png, curves)."""
    check_methods(args.methods, METHODS)
    kind = Zoo(args.zoo).config["kind"]
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    if args.checkpoint and "ssl" in args.methods:  # every method reads the graphs the checkpoint was trained on
        args = argparse.Namespace(**{**vars(args), "probes": load_encoder(args.checkpoint)[1]["probe_dim"]})
    everything = load_split(args.zoo, "all", args.probes)
    keep = [i for i, g in enumerate(everything.graphs) if is_finite_graph(g)]  # diverged models have no embedding
    train_idx = [i for i in keep if everything.entries[i]["split"] == "train"]
    test_idx = [i for i in keep if everything.entries[i]["split"] == "test"]
    train, test = everything.select(train_idx), everything.select(test_idx)
    if len(train) < 2 or len(test) < 2:
        raise EmbeddingError(f"{args.zoo}: {len(train)} training and {len(test)} test models with finite weights; "
                         "the evaluation needs at least 2 of each")
    dropped = len(everything) - len(keep)
    note = f"{len(train)} train / {len(test)} test models" + (f" ({dropped} non-finite dropped)" if dropped else "")
    rows, histories, maps = [], {}, {}
    label_of = _targets(kind)["digit" if kind == "inr" else "family"][0]
    shown = np.random.default_rng(args.seed).permutation(len(test_idx))[: args.map_max]
    for name in args.methods:
        start = time.perf_counter()
        feats, history = _features(args, name, everything, kind, progress)
        if history:
            histories[name] = history
        rows += _method_rows(args, name, feats, train_idx, test_idx, train, test, kind,
                             time.perf_counter() - start, note)
        maps[name] = tsne_2d(feats[np.asarray(test_idx)[shown]], args.seed)
        print(f"{name}: " + ", ".join(f"{r['metric']} {r['value']:.4f}" for r in rows if r["method"] == name), flush=True)
    rows += _baseline_rows(args, test, kind)
    plot_maps(maps, [label_of(test.entries[i]) for i in shown], os.path.join(args.out, "map.png"),
              f"t-SNE of {len(shown)} test models of {os.path.basename(os.path.normpath(args.zoo))}")
    save_run(rows, histories, ["train_loss", "val_loss"], args.out, "model embeddings: contrastive training",
             seed=args.seed)
    return rows


def main(argv=None, prog: str | None = None) -> int:
    return run_main(run, build_parser, argv, prog)


if __name__ == "__main__":
    sys.exit(main())
