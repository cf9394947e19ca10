"""Merging models trained apart: the loss barrier on the path between two, naive against aligned.

Two models of one architecture are trained on scikit-learn's digits from different seeds (initialisation and data
order): a wide MLP, a small ResNet and a small vision transformer; and two tiny Hugging Face GPT-2 models on a
synthetic sequence task (reversal of 6 digits, :mod:`.sequences`). Along the straight path between their weights the test loss rises (the barrier); aligning one to the
other first with :func:`nngraph.symmetry.align` (weight matching over the symmetries the converter derives, for
any architecture) should remove most of that rise (Git Re-Basin). Per pair: the barrier naive and aligned, the
accuracy of the midpoint (the merged model), and the time of the alignment. BatchNorm statistics are recomputed
on training batches at every point of the path (REPAIR's reset) for both paths alike.

Usage: ``python -m tasks.merging --out runs/merging [--seeds 0,1,2] [--models mlp,resnet,transformer,gpt2]``; writes
``results.json`` (after every pair: a rerun skips the pairs it holds) and ``barrier_<model>.png`` (the first pair's
curves: naive, and aligned by every ``--match`` run into ``--out``) into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from sklearn.datasets import load_digits
from torch import nn

from nngraph import symmetry
from nngraph.io import atomic_path, atomic_write

from . import sequences

MODELS = ("mlp", "resnet", "transformer", "gpt2")


def digits(seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: the 1,797 digits as ``(n, 1, 8, 8)`` in [0, 1], 80 / 20 split."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (n, 1, 8, 8)
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(y))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def wide_mlp(width: int = 512) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 10))


class _Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.c2, self.n2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.n2(self.c2(torch.relu(self.n1(self.c1(x))))))


class SmallResNet(nn.Module):
    """A stem, two residual blocks with BatchNorm, global average pooling and a linear head."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        self.blocks = nn.Sequential(_Block(channels), _Block(channels))
        self.head = nn.Linear(channels, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class SmallTransformer(nn.Module):
    """A ViT on the 8 x 8 digits: 2 x 2 patches (16 tokens), a learned position embedding, two pre-norm encoder
    layers of 4 heads, mean pooling and a linear head."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.patch = nn.Linear(4, width)
        self.position = nn.Parameter(torch.randn(1, 16, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, 4, dim_feedforward=2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x):  # (B, 1, 8, 8)
        patches = x.reshape(x.shape[0], 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(x.shape[0], 16, 4)  # (B, 16, 4)
        return self.head(self.encoder(self.patch(patches) + self.position).mean(1))


def build(name: str, width: int) -> nn.Module:
    return {"mlp": wide_mlp, "resnet": SmallResNet, "transformer": SmallTransformer}[name](width)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, batch: int = 64) -> nn.Module:
    """Adam (lr 1e-3) for ``epochs`` over ``(x, y)`` in a seed-dependent order."""
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=generator).split(batch):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(cross-entropy, accuracy)`` on ``(x, y)``."""
    with torch.no_grad():
        logits = model.eval()(x)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def trained(name: str, width: int, seed: int, epochs: int, fit, cache: str | None = None) -> nn.Module:
    """A model of ``name`` initialised from ``seed`` and trained by ``fit(model)``, or read from ``cache`` where an
    earlier run left it (safetensors, written atomically)."""
    torch.manual_seed(seed)
    model = sequences.tiny_gpt2(width) if name == "gpt2" else build(name, width)
    path = os.path.join(cache, f"{name}_w{width}_e{epochs}_s{seed}.safetensors") if cache else None
    if path and os.path.exists(path):
        load_model(model, path)
        return model.eval()
    fit(model)
    if path:
        with atomic_path(path) as tmp:
            save_model(model, tmp)  # tied weights (GPT-2's embedding and head) stored once
    return model.eval()


def run_pair(name: str, seed: int, epochs: int, width: int, steps: int, match: str = "activations",
             cache: str | None = None) -> dict:
    """Train two models (seeds ``2 seed``, ``2 seed + 1``; read from ``cache`` if there), measure both barriers and
    the merged models."""
    if name == "gpt2":  # reversal sequences: train and test sets fixed, the seeds change init and batch order
        x, test = sequences.reversal(8000, seed=100), sequences.reversal(1000, seed=200)  # (n, 13)
        fits = [lambda m, s=s: sequences.train(m, x, s, epochs) for s in (2 * seed, 2 * seed + 1)]
        measure = lambda m: sequences.evaluate(m, test)  # noqa: E731
    else:
        x, y, xt, yt = digits()
        fits = [lambda m, s=s: train(m, x, y, s, epochs) for s in (2 * seed, 2 * seed + 1)]
        measure = lambda m: evaluate(m, xt, yt)  # noqa: E731
    a, b = (trained(name, width, s, epochs, fit, cache) for s, fit in zip((2 * seed, 2 * seed + 1), fits))
    if name == "gpt2":
        x = x[:, :-1]  # (n, 12): what the model reads
    start = time.perf_counter()
    b_aligned = symmetry.align(a, b, (x[:2],), data=(x[:256],) if match == "activations" else None)
    if match == "activations":  # attention heads: reordered and rotated by their activations (a no-op elsewhere)
        b_aligned = symmetry.rotate_heads(a, b_aligned, x[:256])
    align_seconds = time.perf_counter() - start
    norm_batches = [x[i:i + 256] for i in range(0, len(x), 256)] if name == "resnet" else None
    loss = lambda m: measure(m)[0]  # noqa: E731
    naive = symmetry.interpolation_barrier(a, b, loss, steps, norm_batches)
    aligned = symmetry.interpolation_barrier(a, b_aligned, loss, steps, norm_batches)
    merged = {}
    for label, other in (("naive", b), ("aligned", b_aligned)):
        mid = symmetry.interpolate(a, other, 0.5)
        if norm_batches is not None:
            symmetry.reset_norms(mid, norm_batches)
        merged[label] = measure(mid)[1]
    return {"model": name, "seed": seed, "match": match, "width": width, "epochs": epochs,
            "acc_a": measure(a)[1], "acc_b": measure(b)[1],
            "barrier_naive": naive["barrier"], "barrier_aligned": aligned["barrier"],
            "ratio": aligned["barrier"] / naive["barrier"] if naive["barrier"] > 0 else float("nan"),
            "merged_acc_naive": merged["naive"], "merged_acc_aligned": merged["aligned"],
            "align_seconds": align_seconds, "curves": {"naive": naive, "aligned": aligned}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.merging", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/merging", help="output folder (default: runs/merging)")
    p.add_argument("--seeds", default="0,1,2", help="pair seeds, comma-separated (default: 0,1,2)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {list(MODELS)} (default: all)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs per model (default: 20)")
    p.add_argument("--mlp-width", type=int, default=512, help="hidden width of the MLP (default: 512)")
    p.add_argument("--resnet-width", type=int, default=128, help="channels of the ResNet (default: 128)")
    p.add_argument("--transformer-width", type=int, default=64, help="width of the transformer (default: 64)")
    p.add_argument("--gpt2-width", type=int, default=64, help="n_embd of the GPT-2 models (default: 64)")
    p.add_argument("--gpt2-epochs", type=int, default=10,
                   help="epochs over the 8,000 training sequences per GPT-2 model (default: 10)")
    p.add_argument("--steps", type=int, default=11, help="points on each path (default: 11)")
    p.add_argument("--match", choices=("weights", "activations"), default="activations",
                   help="align by weights, or by the neurons' values on 256 training inputs, attention heads then "
                        "rotated by theirs (default: activations)")
    p.add_argument("--cache", default=None,
                   help="folder of the trained models, read back by a rerun (default: <out>/models)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        build_parser().error(f"--models: unknown {unknown}; choices: {list(MODELS)}")
    os.makedirs(args.out, exist_ok=True)
    results = os.path.join(args.out, "results.json")
    done = json.load(open(results)) if os.path.exists(results) else []  # resume: pairs measured before a kill
    rows = []
    for name in names:
        width = {"mlp": args.mlp_width, "resnet": args.resnet_width, "transformer": args.transformer_width,
                 "gpt2": args.gpt2_width}[name]
        epochs = args.gpt2_epochs if name == "gpt2" else args.epochs
        for seed in (int(s) for s in args.seeds.split(",")):
            key = {"model": name, "seed": seed, "match": args.match, "width": width, "epochs": epochs}
            row = next((r for r in done if all(r.get(k) == v for k, v in key.items())), None)
            if row is None:
                row = run_pair(name, seed, epochs, width, args.steps, args.match,
                               args.cache or os.path.join(args.out, "models"))
                done.append(row)
                atomic_write(results, json.dumps(done, indent=1).encode())
            rows.append(row)
            print(f"{name} seed {seed}: barrier naive {row['barrier_naive']:.3f}, aligned {row['barrier_aligned']:.3f} "
                  f"({100 * row['ratio']:.0f} %); merged accuracy naive {row['merged_acc_naive']:.3f}, aligned "
                  f"{row['merged_acc_aligned']:.3f} (ends {row['acc_a']:.3f} / {row['acc_b']:.3f}); "
                  f"align {row['align_seconds']:.2f} s", flush=True)
        first = next(r for r in rows if r["model"] == name)
        curves = {"naive": first["curves"]["naive"]}  # and the aligned path of every matching run on this pair
        curves.update({f"aligned ({r['match']})": r["curves"]["aligned"] for r in done if
                       all(r.get(k) == first[k] for k in ("model", "seed", "width", "epochs"))})
        data = "reversal" if name == "gpt2" else "digits"
        symmetry.plot_barrier(curves, os.path.join(args.out, f"barrier_{name}.png"),
                              title=f"{name}: test loss between two {data} models (pair {first['seed']})")
    print("\n| model | pairs | barrier naive | barrier aligned | aligned / naive | merged acc naive | merged acc aligned "
          "| align (s) |\n|---|---|---|---|---|---|---|---|")
    for name in names:
        mine = [r for r in rows if r["model"] == name]

        def ms(key):
            values = [r[key] for r in mine]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.3f} ± {sd:.3f}"

        print(f"| {name} | {len(mine)} | {ms('barrier_naive')} | {ms('barrier_aligned')} | {ms('ratio')} | "
              f"{ms('merged_acc_naive')} | {ms('merged_acc_aligned')} | {ms('align_seconds')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
