"""The self-supervised model encoder: its module, training (:mod:`tasks.embeddings.contrastive`), checkpoint and embeddings.

An embedding is the invariant readout of :class:`nngraph.NeuralGraphEncoder` on the scaled graph (one vector per
model); a small projection head on top of it is what the contrastive loss sees during training (SimCLR), and
is dropped afterwards. The checkpoint is a :func:`nngraph.train.fit` run directory (``best.safetensors`` +
``best.json``, whose settings rebuild the module).
"""
from __future__ import annotations

import argparse
import os

import torch
from torch import nn

import nngraph
from nngraph.errors import NNGraphError
from nngraph.train import TrainConfig, fit, load_best_model, load_checkpoint, make_loader, seed_everything

from .contrastive import ViewPairs, augment_view, group_ids, nt_xent
from ..common.features import max_kernel_shape
from ..common.models import max_box
from ..common.permutation import SymmetryAugmented
from ..common.robust import RobustGraphScaler, is_finite_graph
from ..common.scaling import GraphScaler
from ..common.splits import Split

__all__ = ["ContrastiveEncoder", "EmbeddingError", "add_ssl_args", "default_pair_field", "train_contrastive",
           "checkpoint_dir", "load_encoder", "embed_graphs"]

SCALERS = {"rms": GraphScaler, "robust": RobustGraphScaler}


class EmbeddingError(NNGraphError, ValueError):
    """A bad encoder checkpoint, embeddings file or query model (printed as one line by the commands)."""


class ContrastiveEncoder(nn.Module):
    """Scaler + :class:`nngraph.NeuralGraphEncoder` (the embedding) + projection head (the contrastive loss's input).

    Args:
        scaler: a fitted :class:`~tasks.common.scaling.GraphScaler` (or robust one).
        embed_dim: width of the embedding; proj_dim: of the projection.
        hidden_dim, num_layers, probe_dim, dropout, kernel_box: of the encoder.

    Shapes:
        - :meth:`embed`: a batch of :math:`B` graphs -> :math:`(B, \\text{embed\\_dim})`
        - ``forward(view_a, view_b)`` -> two :math:`(B, \\text{proj\\_dim})`
    """

    def __init__(self, scaler: GraphScaler, embed_dim: int = 64, hidden_dim: int = 32, num_layers: int = 3,
                 probe_dim: int = 0, proj_dim: int = 64, dropout: float = 0.0, kernel_box=(1, 1, 1)):
        super().__init__()
        self.scaler = scaler
        self.encoder = nngraph.NeuralGraphEncoder(embed_dim, hidden_dim=hidden_dim, num_layers=num_layers,
                                                  probe_dim=probe_dim, dropout=dropout,
                                                  max_kernel_box=max_box(kernel_box))
        self.projector = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, proj_dim))

    def embed(self, batch) -> torch.Tensor:
        return self.encoder(self.scaler(batch))  # (B, embed_dim)

    def forward(self, view_a, view_b) -> tuple[torch.Tensor, torch.Tensor]:
        return self.projector(self.embed(view_a)), self.projector(self.embed(view_b))  # (B, proj_dim) each


def add_ssl_args(p: argparse.ArgumentParser, epochs: int = 20) -> None:
    """The flags of the encoder and of its self-supervised training (shared by ``nngraph embed`` and
    ``python -m tasks.embeddings``)."""
    p.add_argument("--epochs", type=int, default=epochs, help="epochs of contrastive training")
    p.add_argument("--embed-dim", type=int, default=64, help="width of the embedding")
    p.add_argument("--hidden-dim", type=int, default=32, help="width of the encoder's node and edge embeddings")
    p.add_argument("--num-layers", type=int, default=3, help="message-passing layers of the encoder")
    p.add_argument("--batch-size", type=int, default=32, help="models per batch (each in two views)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (AdamW)")
    p.add_argument("--patience", type=int, default=10, help="stop after this many epochs without a lower val loss")
    p.add_argument("--temperature", type=float, default=0.1, help="NT-Xent temperature")
    p.add_argument("--noise", type=float, default=0.05,
                   help="Gaussian weight noise of a view, relative to the RMS weight of its layer")
    p.add_argument("--no-flip", action="store_true", help="no sign-flip views (odd activations only anyway)")
    p.add_argument("--permute", action="store_true",
                   help="relabel the hidden neurons of every view at random (a no-op for the equivariant encoder)")
    p.add_argument("--pair-field", default="auto",
                   help="manifest field whose equal values make positive pairs ('run': other checkpoints of a run); "
                        "'auto': run for classifier zoos, none for INR zoos; 'none': augmentations only")
    p.add_argument("--probes", type=int, default=0,
                   help="probe inputs per model as node features (INR zoos: a k x k grid rendering); 0 for none")
    p.add_argument("--scaler", choices=sorted(SCALERS), default=None,
                   help="input scaling (default: robust for classifier zoos, rms for INR zoos)")


def default_pair_field(args, kind: str, entries) -> str | None:
    """``--pair-field`` resolved: ``auto`` pairs checkpoints of one run where the manifest has ``run``."""
    if args.pair_field == "none":
        return None
    if args.pair_field == "auto":
        return "run" if kind != "inr" and entries and all("run" in e for e in entries) else None
    return args.pair_field


def _view_source(split: Split, permute: bool):
    return SymmetryAugmented.of_split(split.graphs, split) if permute else split.graphs


def train_contrastive(train: Split, val: Split, out_dir: str, args, kind: str,
                      progress: bool = True) -> tuple[ContrastiveEncoder, object]:
    """Train a :class:`ContrastiveEncoder` on the finite models of ``train`` (NT-Xent, :mod:`tasks.embeddings.contrastive`),
    validated on ``val``'s; ``args`` are the flags of :func:`add_ssl_args` plus ``seed`` / ``device``.
    Resumes (and is not retrained) in ``out_dir`` like every :func:`nngraph.train.fit` run."""
    train, val = (s.select(i for i, g in enumerate(s.graphs) if is_finite_graph(g)) for s in (train, val))
    if len(train) < 2 or len(val) < 1:
        raise EmbeddingError(f"contrastive training needs at least 2 training and 1 validation model with finite "
                             f"weights; the zoo has {len(train)} and {len(val)}")
    seed_everything(args.seed)
    scaler_kind = args.scaler or ("rms" if kind == "inr" else "robust")
    scaler = SCALERS[scaler_kind]().fit(train.graphs)
    box = max_kernel_shape(train.graphs + val.graphs)
    settings = {"model": "contrastive_encoder", "embed_dim": args.embed_dim, "hidden_dim": args.hidden_dim,
                "num_layers": args.num_layers, "probe_dim": args.probes, "proj_dim": args.embed_dim,
                "kernel_box": list(box), "scaler": scaler_kind, "temperature": args.temperature,
                "noise": args.noise, "flip": not args.no_flip, "permute": args.permute,
                "pair_field": default_pair_field(args, kind, train.entries), "n_train": len(train)}
    model = ContrastiveEncoder(scaler, args.embed_dim, args.hidden_dim, args.num_layers, args.probes,
                               settings["proj_dim"], kernel_box=box)
    pairs = [ViewPairs(_view_source(s, args.permute), group_ids(s.entries, settings["pair_field"]), fixed=fixed)
             for s, fixed in ((train, False), (val, True))]
    flip = settings["flip"]

    def loss_fn(m, batch, generator=None):
        a, b = batch
        scaler = getattr(m, "module", m).scaler  # m may be the DDP wrapper
        za, zb = m(augment_view(a, scaler, args.noise, flip, generator), augment_view(b, scaler, args.noise, flip, generator))
        return nt_xent(za, zb, args.temperature, a.pair_group)

    def eval_fn(m, loader):
        generator = torch.Generator().manual_seed(args.seed)  # the same views every epoch
        total, n = 0.0, 0
        for batch in loader:
            batch = [v.to(args.device) for v in batch]
            total += float(loss_fn(m, batch, generator)) * batch[0].num_graphs
            n += batch[0].num_graphs
        return {"val_loss": total / n}

    config = TrainConfig(out_dir=out_dir, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, monitor="val_loss", mode="min", patience=args.patience,
                         seed=args.seed, device=args.device, progress=progress, keep_freed_memory=True)
    result = fit(model, pairs[0], pairs[1], loss_fn, eval_fn, config, settings)
    return model.eval(), result


def checkpoint_dir(path: str) -> str:
    """The run directory of ``--checkpoint path`` (the directory itself, or the one holding the file given)."""
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def load_encoder(path: str) -> tuple[ContrastiveEncoder, dict]:
    """The encoder of checkpoint ``path`` (a run directory of :func:`train_contrastive`, or its ``best.json`` /
    ``best.safetensors``) and its settings.

    Raises:
        EmbeddingError: if ``path`` holds no such checkpoint (:class:`~nngraph.CheckpointError` if it is corrupt).
    """
    directory = checkpoint_dir(path)
    found = load_checkpoint(directory, "best")
    settings = (found[1].get("settings") or {}) if found is not None else {}
    if settings.get("model") != "contrastive_encoder":
        what = "no checkpoint 'best'" if found is None else f"a checkpoint of {settings.get('model')!r}"
        raise EmbeddingError(f"--checkpoint {path}: {directory} holds {what}, not an encoder of nngraph embed "
                             "(train one: nngraph embed --zoo DIR -o embeddings.safetensors)")
    scaler = SCALERS[settings["scaler"]]()
    model = ContrastiveEncoder(scaler, settings["embed_dim"], settings["hidden_dim"], settings["num_layers"],
                               settings["probe_dim"], settings["proj_dim"], kernel_box=settings["kernel_box"])
    load_best_model(directory, model)
    return model.eval(), settings


@torch.no_grad()
def embed_graphs(model: ContrastiveEncoder, graphs, batch_size: int = 64, device: str = "cpu") -> torch.Tensor:
    """``(M, embed_dim)`` embeddings of ``graphs``; NaN rows for graphs with non-finite weights (diverged models).

    The graphs must have the encoder's dtype (``model.double()`` takes float64 graphs)."""
    model.eval().to(device)
    finite = [i for i, g in enumerate(graphs) if is_finite_graph(g)]
    dtype = model.encoder.param_dtype()
    out = torch.full((len(graphs), model.encoder.out_dim), float("nan"), dtype=dtype)
    rows = [model.embed(b.to(device)).cpu() for b in make_loader([graphs[i] for i in finite], batch_size)]
    if finite:
        out[torch.tensor(finite)] = torch.cat(rows)  # (M_finite, D)
    return out
