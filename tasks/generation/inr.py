"""Class-conditional INR generation: SIRENs of the digits sampled from a generator conditioned on the digit.

    python -m tasks.generation.inr --out runs/gen_inr_s0 --seed 0

Builds its INR zoo here (cached in ``OUT/zoo.pt``, read with ``weights_only=True``): one SIREN
``2 -> hidden -> hidden -> 1`` fitted to each of the first ``--images`` scikit-learn digits at
``--resolution`` pixels (:func:`nngraph.zoo.siren.fit_sirens`, PSNR 40 dB or 500 Adam steps). ``--init shared``
starts every INR from one initialisation (drawn from ``--seed``), ``--init own`` gives each its own (as
:func:`nngraph.zoo.build_inr_zoo` does). Fits :class:`nngraph.generate.LatentFlowGenerator` on the zoo with the
digit as a class condition and samples ``--per-class`` INRs of every digit. Judge: a pixel classifier (an RBF SVM
on the pixels) trained on the digits *not* in the zoo; its accuracy on the zoo's own images and on the renders of
the zoo's INRs is the ceiling. Rows per method: the fraction of samples the classifier reads as their condition,
overall and per digit, and novelty (distance to the nearest zoo INR after weight matching, copies; as
:class:`tasks.generation.task.Novelty`). Methods: ``latent``, ``latent_twin`` (the same generator on the neuron
order the INRs were fitted with, no alignment, no relabelling), ``gaussian`` (per-tensor statistics,
unconditional), and the baseline ``interpolate`` (two zoo INRs of the digit aligned and mixed: retrieval, not
generation). ``--filter-pool K --reject-copies``: the latent generators draw ``K`` times more samples than they
keep and drop those the novelty criterion calls copies (it reads weights only, never the pixel classifier),
keeping per digit the first others in draw order (copies only when a digit has too few others); ``--pool-cap C``
lets a digit short of others draw more, ``--filter-pool`` rounds at a time, up to ``C`` samples per kept one.
``samples.png``: one row per digit, ``--show`` samples of the first method beside ``--show`` renders of
zoo INRs of that digit.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

import nngraph
from nngraph.generate import GaussianGenerator, LatentFlowGenerator
from nngraph.plotting import pyplot, save_figure
from nngraph.zoo import build_model, derive_seed
from nngraph.zoo.images import coordinate_grid, load_images
from nngraph.zoo.siren import fit_sirens, siren_state_dict
from nngraph.zoo.specs import siren_spec

from ..common.harness import add_run_args, check_methods, csv_list, run_dir, run_main, task_parser
from ..common.report import row, save_run
from .filtering import select_nearest
from .task import Novelty, add_pool_args, cached_zoo, mix_aligned, zoo_modules

TASK = "generation_inr"
METHODS = ("latent", "latent_twin", "gaussian", "interpolate")
INITS = ("shared", "own")


def build_parser(prog: str = "python -m tasks.generation.inr") -> argparse.ArgumentParser:
    p = task_parser(prog, __doc__)
    p.add_argument("--out", default="runs/generation_inr", help="directory of the zoo cache, runs, picture, results")
    p.add_argument("--methods", type=csv_list, default=list(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    p.add_argument("--images", type=int, default=300, help="digits in the zoo (the first ones; one INR each)")
    p.add_argument("--resolution", type=int, default=16, help="side of the images the INRs are fitted to")
    p.add_argument("--hidden", type=int, default=32, help="width of the SIREN's two hidden layers")
    p.add_argument("--init", default="shared", choices=INITS,
                   help="shared: every INR fitted from one initialisation; own: one initialisation per INR")
    p.add_argument("--rank", type=int, default=32, help="principal directions of the latent generator's code")
    p.add_argument("--epochs", type=int, default=100, help="training epochs of the latent generator")
    p.add_argument("--repeats", type=int, default=8, help="passes over the zoo per epoch")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (AdamW)")
    p.add_argument("--steps", type=int, default=40, help="Euler steps of sampling")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance weight (1: none)")
    p.add_argument("--code-noise", type=float, default=0.0,
                   help="std of Gaussian noise on the latent generators' codes (code units): fewer copies")
    p.add_argument("--per-class", type=int, default=16, help="samples per digit")
    add_pool_args(p, "latent / latent_twin", 1, "the first of each digit (in draw order)", "INR", "its digit")
    p.add_argument("--pool-cap", type=int, default=None,
                   help="with --reject-copies: a digit with fewer than --per-class non-copies in its pool draws "
                        "--filter-pool rounds more until it has enough or this many samples per kept one "
                        "(default: --filter-pool, no growth)")
    p.add_argument("--show", type=int, default=5, help="samples and zoo INRs per digit in samples.png")
    add_run_args(p)
    return p


def build_zoo(args) -> dict:
    """``{"spec", "states": [state dict], "labels": (M,), "psnr": (M,)}``: one SIREN per digit image, cached in
    ``OUT/zoo.pt`` under the settings that made it."""
    spec = siren_spec(2, [args.hidden, args.hidden], 1, 30.0)
    key = {"spec": spec, "images": args.images, "resolution": args.resolution, "init": args.init, "seed": args.seed}

    def make() -> dict:
        images = load_images("digits", args.resolution)
        x, labels = images.images[:args.images], images.labels[:args.images]  # (M, 1, R, R), (M,)
        targets = x.flatten(2).transpose(1, 2)  # (M, 1, R, R) -> (M, P, 1)
        seeds = [derive_seed(args.seed, "inr-init", 0 if args.init == "shared" else i) for i in range(len(x))]
        fit = fit_sirens(spec, coordinate_grid(args.resolution, args.resolution), targets,
                         [torch.Generator().manual_seed(s) for s in seeds], target_psnr=40.0, max_steps=500)
        return {"spec": spec, "states": [siren_state_dict(fit.params, k) for k in range(len(x))],
                "labels": labels.clone(), "psnr": fit.psnr}

    return cached_zoo(os.path.join(args.out, "zoo.pt"), key, make)


@torch.no_grad()
def render(graphs, template, resolution: int) -> torch.Tensor:
    """``(B, R, R)``: every graph's INR on the pixel grid, clipped to ``[0, 1]``."""
    coords = coordinate_grid(resolution, resolution)  # (P, 2)
    out = [nngraph.from_graph(g, template)(coords).reshape(resolution, resolution) for g in graphs]  # (R, R) each
    return torch.stack(out).clamp(0, 1)


def pixel_classifier(args):
    """An RBF SVM on the pixels of the digits not in the zoo (``images[--images:]``) and its accuracy on the
    zoo's own images."""
    from sklearn.svm import SVC

    images = load_images("digits", args.resolution)
    x, y = images.images.flatten(1).numpy(), images.labels.numpy()  # (N, R*R), (N,)
    clf = SVC(gamma="scale").fit(x[args.images:], y[args.images:])
    return clf, float(clf.score(x[:args.images], y[:args.images]))


def recognition_rows(method: str, clf, images: torch.Tensor, classes: np.ndarray, seconds=None, note="") -> list:
    """The fraction of ``images`` ``(B, R, R)`` the classifier reads as ``classes`` ``(B,)``: overall and per digit."""
    hit = clf.predict(images.flatten(1).numpy()) == classes  # (B,)
    rows = [row(TASK, method, "recognised", float(hit.mean()), seconds, note=note)]
    for c in np.unique(classes):
        rows.append(row(TASK, method, f"recognised_digit{c}", float(hit[classes == c].mean()),
                        note=f"{int((classes == c).sum())} samples"))
    return rows


def interpolate_baseline(graphs, labels: np.ndarray, classes: np.ndarray, layout, space, seed: int) -> list:
    """The retrieval baseline (not a generator): per sample, two zoo INRs of its digit, the second aligned to the
    first by weight matching (:func:`nngraph.symmetry.align_graph`), mixed at a random
    :math:`\\lambda \\in [0.3, 0.7]`."""
    rng = np.random.default_rng(seed)
    out = []
    for c in classes:
        a, b = rng.choice(np.flatnonzero(labels == c), 2, replace=False)
        out += mix_aligned(graphs, int(a), int(b), rng.uniform(0.3, 0.7), layout, space)
    return out


def plot_grid(samples: torch.Tensor, real: torch.Tensor, title: str, path: str) -> str:
    """One row per digit: ``samples`` ``(10, k, R, R)``, a gap, ``real`` ``(10, k, R, R)``."""
    plt = pyplot()
    classes, k = samples.shape[:2]
    fig, axes = plt.subplots(classes, 2 * k + 1, figsize=(0.62 * (2 * k + 1), 0.62 * classes))
    for c in range(classes):
        for j in range(2 * k + 1):
            ax = axes[c, j]
            ax.axis("off")
            if j != k:
                ax.imshow((samples[c, j] if j < k else real[c, j - k - 1]).numpy(), cmap="gray", vmin=0, vmax=1)
    axes[0, k // 2].set_title(title, fontsize=8)
    axes[0, k + 1 + k // 2].set_title("zoo INRs", fontsize=8)
    return save_figure(fig, path)


def draw_pool(gen, template, classes: np.ndarray, args, novel: Novelty) -> tuple[list, str]:
    """``--filter-pool`` samples per kept one of every digit of ``classes`` ``(S,)`` (digits in increasing order,
    as ``np.repeat``), the first ``--per-class`` of each digit kept in draw order; with ``--reject-copies`` the
    samples :meth:`Novelty.copies` flags (weights only) go last, and while a digit has fewer than ``--per-class``
    others its pool grows by another ``--filter-pool`` rounds' worth of draws (a new seed per round, only for the
    short digits) up to ``--pool-cap`` samples per kept one. Returns the kept samples (their digits are
    ``classes``) and a note. A pool of 1 without rejection is the plain draw."""
    digits = np.unique(classes)
    step = args.per_class * args.filter_pool  # draws per digit per round
    cap = args.per_class * max(args.pool_cap or args.filter_pool, args.filter_pool)  # most draws per digit

    def draw(counts: np.ndarray, round_: int) -> tuple[list, np.ndarray]:
        cond = np.repeat(digits, counts)  # (sum(counts),) digits in increasing order
        seed = args.seed if round_ == 0 else derive_seed(args.seed, "inr-pool", round_)
        return gen.sample(template, len(cond), condition=torch.as_tensor(cond), steps=args.steps,
                          guidance=args.guidance, seed=seed, code_noise=args.code_noise), cond

    pool, pool_classes = draw(np.full(len(digits), step), 0)  # (S * pool,)
    if args.filter_pool == 1 and not args.reject_copies:
        return pool, ""
    copies = novel.copies(pool) if args.reject_copies else None  # (S * pool,)
    rounds = 1
    while copies is not None:
        drawn = np.array([(pool_classes == c).sum() for c in digits])  # (10,)
        others = np.array([((pool_classes == c) & ~copies).sum() for c in digits])  # (10,)
        more = np.where(others < args.per_class, np.minimum(step, cap - drawn), 0)  # (10,) draws this round
        if not more.any():
            break
        extra, extra_classes = draw(more, rounds)
        pool, pool_classes = pool + extra, np.concatenate([pool_classes, extra_classes])
        copies = np.concatenate([copies, novel.copies(extra)])
        rounds += 1
    # every sample ranks equal (prediction 0 at distance |c| from its digit c), so each digit keeps its first
    # samples in draw order, copies last
    keep = select_nearest(np.zeros(len(pool)), pool_classes, args.per_class, copies)
    note = f"; kept {args.per_class} of {args.per_class * args.filter_pool} per digit in draw order"
    if copies is not None:
        note += f", copies dropped ({int(copies.sum())} of {len(pool)} in the pool; weights only)"
        if rounds > 1:
            grown = ", ".join(f"{c}: {(pool_classes == c).sum()}" for c in digits if (pool_classes == c).sum() > step)
            note += f"; pool grown in {rounds - 1} more rounds (cap {cap} per digit; drawn {grown})"
    return [pool[i] for i in keep], note


def check_pool(args) -> None:
    """One-line errors for ``--filter-pool`` / ``--pool-cap`` that cannot be honoured."""
    if args.filter_pool < 1:
        raise ValueError(f"--filter-pool must be >= 1, got {args.filter_pool}")
    if args.pool_cap is not None and args.pool_cap < args.filter_pool:
        raise ValueError(f"--pool-cap ({args.pool_cap}) must be at least --filter-pool ({args.filter_pool})")
    if args.pool_cap is not None and args.pool_cap > args.filter_pool and not args.reject_copies:
        raise ValueError("--pool-cap grows the pool only to replace copies: add --reject-copies")


def _overall(rows: list[dict], method: str) -> float:
    return next(r["value"] for r in rows if r["method"] == method and r["metric"] == "recognised")


def run(args: argparse.Namespace) -> list[dict]:
    check_methods(args.methods, METHODS)
    check_pool(args)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    zoo = build_zoo(args)
    template = build_model(zoo["spec"]).eval()
    coords = coordinate_grid(args.resolution, args.resolution)  # (P, 2)
    graphs = [nngraph.to_graph(m, coords[:2]) for m in zoo_modules(zoo)]
    labels = zoo["labels"].numpy()
    zoo_seconds = time.perf_counter() - start
    clf, image_acc = pixel_classifier(args)
    real = render(graphs, template, args.resolution)  # (M, R, R)
    note = f"{len(graphs)} INRs, init {args.init}, median PSNR {float(zoo['psnr'].median()):.1f} dB"
    print(f"zoo: {note}; pixel classifier on the zoo's images {image_acc:.3f}", flush=True)
    rows = [row(TASK, "images", "recognised", image_acc, note="the zoo's digit images (the classifier's accuracy)")]
    rows += recognition_rows("zoo", clf, real, labels, zoo_seconds, note)
    classes = np.repeat(np.arange(10), args.per_class)  # (S,)
    novel = Novelty(graphs, np.arange(len(graphs)), template, coords[:2])
    rows.append(row(TASK, "zoo", "nearest_aligned_distance", float(np.median(novel.zoo)),
                    note="median over zoo INRs, to the nearest other INR"))
    shown = None
    for method in args.methods:
        start = time.perf_counter()
        if method == "gaussian":
            gen = GaussianGenerator().fit(graphs, torch.as_tensor(labels), template=template, example_inputs=coords[:2])
            samples = gen.sample(template, len(classes), condition=torch.as_tensor(classes), seed=args.seed)
            fitted = "per-tensor statistics, unconditional"
        elif method == "interpolate":
            samples = interpolate_baseline(graphs, labels, classes, novel.layout, novel.space,
                                           derive_seed(args.seed, "interpolate"))
            fitted = "baseline: two zoo INRs of the digit, aligned and mixed"
        else:
            twin = method == "latent_twin"
            gen = LatentFlowGenerator(rank=args.rank, align=not twin, relabel=not twin)
            result = gen.fit(graphs, torch.as_tensor(labels), template=template, example_inputs=coords[:2],
                             out_dir=run_dir(args.out, method), epochs=args.epochs, batch_size=128,
                             repeats=args.repeats, lr=args.lr, seed=args.seed, progress=not args.no_progress,
                             device=args.device)
            fitted = (f"rank {gen.latent_dim}, guidance {args.guidance}, code noise {args.code_noise}, best epoch "
                      f"{result.best_epoch}, val loss {result.best_value:.4f}")
            samples, chosen = draw_pool(gen, template, classes, args, novel)
            fitted += chosen
        images = render(samples, template, args.resolution)  # (S, R, R)
        seconds = time.perf_counter() - start
        rows += recognition_rows(method, clf, images, classes, seconds, fitted)
        near = novel(samples)
        rows += [row(TASK, method, "nearest_aligned_distance", near["median"], note=f"{near['ratio']:.2f}x the zoo's"),
                 row(TASK, method, "frac_copies", near["frac_copies"], note="closer than the zoo's 5th percentile")]
        print(f"{method}: recognised {_overall(rows, method):.3f}, nearest aligned "
              f"zoo INR {near['ratio']:.2f}x the zoo's, copies {near['frac_copies']:.2f} ({seconds:.0f} s)", flush=True)
        if shown is None:
            shown = (method, images)
    if shown is not None:
        k = min(args.show, args.per_class, *np.bincount(labels, minlength=10))
        method, images = shown
        grid = images.reshape(10, args.per_class, *images.shape[1:])[:, :k]  # (10, k, R, R)
        zoo_grid = torch.stack([real[np.flatnonzero(labels == c)[:k]] for c in range(10)])  # (10, k, R, R)
        plot_grid(grid, zoo_grid, f"{method} samples", os.path.join(args.out, "samples.png"))
    save_run(rows, {}, [], args.out, "class-conditional INR generation", seed=args.seed)  # every row records the seed
    return rows


def main(argv=None, prog: str | None = None) -> int:
    return run_main(run, build_parser, argv, prog)


if __name__ == "__main__":
    sys.exit(main())
