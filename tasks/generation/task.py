"""Weight generation: classifiers of one architecture sampled without training, conditioned on their test accuracy.

    python -m tasks.generation --out runs/generation --runs 80 --epochs 100

Builds its zoo here (cached in ``OUT/zoo.pt``): ``--runs`` training runs of one MLP on the scikit-learn digits,
each with random hyperparameters (optimizer, learning rate, initial scale, label noise, epochs;
:func:`nngraph.zoo.classifiers.sample_hparams`) and checkpoints at up to four epochs, so test accuracies spread
from chance to about 0.95. Fits the generators of :mod:`nngraph.generate` on every checkpoint, conditioned on its
test accuracy, and samples ``--per-target`` models at each of ``--targets`` target accuracies (evenly spaced from
the zoo's 10th to its 90th percentile). Methods: ``latent`` (flow on low-rank codes of the zoo aligned by weight
matching, :class:`nngraph.generate.LatentFlowGenerator`), ``latent_twin`` (its twin without the frame: the same
generator on the neuron order the zoo's models were trained with, not aligned, samples not relabelled), ``flow``
(flow on the whole graph with the equivariant denoiser), ``twin`` (the same without equivariance),
``latent_filtered`` (the latent generator's samples filtered by a weights-only accuracy predictor fitted on the
zoo: :mod:`.filtering`), ``latent_probed`` (the same pool filtered by a predictor of the samples' outputs on
``--probes`` unlabelled training images: :mod:`.probed`; ``--probe-rule at_least`` reads the target as "at least
this accuracy"), ``gaussian`` (per-tensor statistics), and the baseline
``interpolate`` (two zoo models near the target accuracy, aligned and mixed: retrieval, not generation). Rows, per
method: the median test accuracy of the samples (all of them, and at the highest target), the fraction of samples
above the zoo's median, the mean distance between target and accuracy, Kendall's tau between target and accuracy,
and novelty: the distance of every sample to its nearest zoo model after weight matching, against the zoo's own
(each model to its nearest of another run), and the fraction of samples closer than the zoo's 5th percentile
(copies). The references are the zoo itself and randomly initialised models. ``accuracy.png`` shows the
distributions and the target against the result. Fine-tuning: the samples at the highest target,
``--per-target`` randomly initialised models and the zoo's ``--per-target`` best checkpoints, fine-tuned for up to
``--finetune-epochs`` epochs on the same task and on a new one (labels moved by one class, readout re-initialised).
"""
from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time

import numpy as np
import torch

import nngraph
from nngraph.generate import FlowGenerator, GaussianGenerator, LatentFlowGenerator
from nngraph.io import atomic_write
from nngraph.plotting import pyplot, save_figure
from nngraph.zoo import ClassifierZooConfig, build_model, derive_seed
from nngraph.zoo.classifiers import classifier_data, evaluate, sample_hparams, train_run

from ..common.harness import add_run_args, check_methods, csv_list, run_dir, run_main, task_parser
from ..common.metrics import kendall_tau
from ..common.report import row, save_run
from .filtering import CodeAccuracyPredictor, select_nearest
from .probed import RULES, choose_by_function

TASK = "generation"
METHODS = ("latent", "latent_twin", "latent_filtered", "latent_probed", "flow", "twin", "gaussian", "interpolate")


def build_parser(prog: str = "python -m tasks.generation") -> argparse.ArgumentParser:
    p = task_parser(prog, __doc__)
    p.add_argument("--out", default="runs/generation", help="directory of the zoo cache, runs, plots and results.json")
    p.add_argument("--methods", type=csv_list, default=list(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    p.add_argument("--runs", type=int, default=80, help="training runs of the zoo (up to 4 checkpoints each)")
    p.add_argument("--hidden", type=int, default=16, help="width of the zoo's MLP (64 -> hidden -> 10)")
    p.add_argument("--zoo-epochs", type=int, default=20, help="largest number of epochs of a zoo run")
    p.add_argument("--epochs", type=int, default=100, help="training epochs of the flow generators")
    p.add_argument("--batch-size", type=int, default=32, help="models per training batch")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (AdamW)")
    p.add_argument("--hidden-dim", type=int, default=32, help="width of the equivariant denoiser")
    p.add_argument("--num-layers", type=int, default=3, help="message-passing layers of the equivariant denoiser")
    p.add_argument("--twin-dim", type=int, default=512, help="width of the twin's MLP")
    p.add_argument("--steps", type=int, default=40, help="Euler steps of sampling")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance weight (1: none)")
    p.add_argument("--rank", type=int, default=32, help="principal directions of the latent generator's code")
    p.add_argument("--latent-epochs", type=int, default=100, help="training epochs of the latent generator")
    p.add_argument("--latent-repeats", type=int, default=8,
                   help="passes over the zoo per epoch of the latent generator")
    p.add_argument("--latent-guidance", type=float, default=2.0,
                   help="classifier-free guidance weight of the latent generator (1: none)")
    p.add_argument("--code-noise", type=float, default=0.0,
                   help="std of Gaussian noise on the latent generators' codes (code units): fewer copies, lower accuracy")
    add_pool_args(p, "latent_filtered / latent_probed", 4, "the predicted-nearest (latent_probed: by --probe-rule)",
                  "model", "a target")
    p.add_argument("--probes", type=int, default=64,
                   help="latent_probed: unlabelled training images every sample is run on to predict its accuracy")
    p.add_argument("--probe-predictor", choices=("ridge", "gbm"), default="ridge",
                   help="latent_probed: the regression from the outputs on the probes to test accuracy")
    p.add_argument("--probe-rule", choices=RULES, default="nearest",
                   help="latent_probed: what the condition means; nearest: keep the samples predicted nearest the "
                        "target; at_least: those predicted at or above target + --probe-margin, nearest it first "
                        "(the highest below it when too few qualify)")
    p.add_argument("--probe-margin", type=_margin, default=0.0,
                   help="latent_probed with --probe-rule at_least: a number >= 0, or 'heldout' (the predictor's "
                        "median absolute residual on held-out runs of the zoo)")
    p.add_argument("--finetune-epochs", type=int, default=5,
                   help="epochs of fine-tuning the samples at the highest target (0: no fine-tuning rows)")
    p.add_argument("--finetune-lr", type=float, default=1e-2, help="learning rate (Adam) of the fine-tuning")
    p.add_argument("--targets", type=int, default=8, help="target accuracies sampled at")
    p.add_argument("--per-target", type=int, default=16, help="samples per target accuracy")
    add_run_args(p)
    return p


def add_pool_args(p: argparse.ArgumentParser, methods: str, default: int, keeps: str, model: str, group: str):
    """``--filter-pool`` and ``--reject-copies``, shared by the classifier and INR tasks: ``methods`` draw a pool
    and keep ``keeps``; a pool sample that is a copy of a zoo ``model`` is kept only when its ``group`` has too few
    others."""
    p.add_argument("--filter-pool", type=int, default=default,
                   help=f"{methods} draw this many samples per kept one and keep {keeps}")
    p.add_argument("--reject-copies", action="store_true",
                   help=f"{methods} keep a pool sample that is a copy of a zoo {model} (the novelty criterion, on "
                        f"weights only) only when {group} has too few others")


def _margin(text: str) -> float | str:
    """``--probe-margin``: ``"heldout"`` or a number."""
    return text if text == "heldout" else float(text)


def zoo_spec(hidden: int, in_shape: list[int], num_classes: int) -> dict:
    """The one architecture of the zoo: ``Flatten, Linear(64, hidden), ReLU, Linear(hidden, 10)``."""
    return {"family": "mlp", "in_shape": in_shape, "num_classes": num_classes, "act": "relu", "hidden": [hidden],
            "norm": "none", "dropout": 0.0}


def cached_zoo(path: str, key: dict, make) -> dict:
    """The zoo dict stored at ``path`` if it was made under ``key``; otherwise ``make()`` (a dict without the
    key), stored with ``key`` atomically. Read with ``weights_only=True``."""
    if os.path.exists(path):
        cached = torch.load(path, weights_only=True)
        if cached.get("key") == key:
            return cached
    zoo = {"key": key, **make()}
    buffer = io.BytesIO()
    torch.save(zoo, buffer)
    atomic_write(path, buffer.getvalue())
    return zoo


def zoo_modules(zoo: dict) -> list:
    """The zoo's models (``build_model(zoo["spec"])`` with every state dict), in eval mode."""
    models = []
    for state in zoo["states"]:
        m = build_model(zoo["spec"])
        m.load_state_dict(state)
        models.append(m.eval())
    return models


def mix_aligned(graphs, a: int, b: int, lam: float, layout, space) -> list:
    """``[graph]``: ``lam`` of graph ``a`` and ``1 - lam`` of graph ``b`` aligned to it by weight matching."""
    from nngraph.symmetry import align_graph

    aligned = align_graph(graphs[b], graphs[a], layout)[0]
    mixed = lam * space.flatten([graphs[a]]).double() + (1 - lam) * space.flatten([aligned]).double()  # (1, D)
    return space.graphs(mixed)


def build_zoo(args, config: ClassifierZooConfig, data) -> dict:
    """The zoo's checkpoints: ``{"spec", "states": [state dict], "test_acc": (M,), "run": (M,)}``, cached in
    ``OUT/zoo.pt`` (read with ``weights_only=True``) under the settings that made it."""
    x_tr, y_tr, x_te, y_te, num_classes = data
    spec = zoo_spec(args.hidden, list(x_tr.shape[1:]), num_classes)
    key = {"spec": spec, "runs": args.runs, "zoo_epochs": args.zoo_epochs, "seed": args.seed}

    def make() -> dict:
        states, accs, runs = [], [], []
        for r in range(args.runs):
            rng = random.Random(derive_seed(args.seed, "generation-zoo", r))
            hparams = sample_hparams(rng, config, derive_seed(args.seed, "generation-train", r))
            for metrics, state in train_run({"spec": spec, "hparams": hparams}, x_tr, y_tr, x_te, y_te, num_classes):
                states.append(state)
                accs.append(metrics["test_acc"])
                runs.append(r)
        return {"spec": spec, "states": states, "test_acc": torch.tensor(accs), "run": torch.tensor(runs)}

    return cached_zoo(os.path.join(args.out, "zoo.pt"), key, make)


def accuracies(graphs, template, x_te, y_te) -> np.ndarray:
    """Test accuracy of the module of every graph (no training)."""
    return np.array([evaluate(nngraph.from_graph(g, template), x_te, y_te)[0] for g in graphs])


def _invariants(graphs, num_nodes: int) -> torch.Tensor:
    """``(B, F)``: features of every model that relabelling its hidden neurons leaves unchanged (the Gram
    matrices of the weights over the fixed input and output neurons, and their biases), to shortlist the
    nearest models before aligning them. For graphs of one entry per edge (the task's MLPs)."""
    out = []
    for g in graphs:
        w = torch.zeros(num_nodes, num_nodes, dtype=torch.float64).index_put_(
            (g.edge_index[0], g.edge_index[1]), g.edge_attr.view(-1).double(), accumulate=True)  # (N, N)
        fixed = g.node_type != nngraph.schema.NodeType.HIDDEN  # (N,)
        gram = w.t() @ w + w @ w.t()  # (N, N): sums over the hidden neurons between fixed ones
        out.append(torch.cat([gram[fixed][:, fixed].reshape(-1), g.x.double()[fixed].reshape(-1)]))
    return torch.stack(out)


class Novelty:
    """Distance of a sample to its nearest zoo model after aligning the model to it (weight matching,
    :func:`nngraph.symmetry.align_graph`), against the distance of every zoo model to its nearest model of another
    run (checkpoints of one run are near-copies of each other). Only the ``shortlist`` nearest models by
    invariant features (:func:`_invariants`) are aligned."""

    def __init__(self, graphs, runs: np.ndarray, template, example_inputs, shortlist: int = 8):
        from nngraph.generate import WeightSpace

        self.graphs, self.shortlist = graphs, shortlist
        self.layout = nngraph.build_layout(template, (example_inputs,))
        self.space = WeightSpace.of(template, example_inputs)
        self.invariants = _invariants(graphs, self.space.num_nodes)  # (M, F)
        self.zoo = np.array([self.nearest(g, torch.as_tensor(runs == runs[i])) for i, g in enumerate(graphs)])

    def nearest(self, graph, exclude: torch.Tensor | None = None) -> float:
        from nngraph.symmetry import align_graph

        d = torch.cdist(_invariants([graph], self.space.num_nodes), self.invariants)[0]  # (M,)
        if exclude is not None:
            d[exclude] = float("inf")
        own = self.space.flatten([graph]).double()[0]  # (D,)
        best = float("inf")
        for j in torch.argsort(d)[:self.shortlist].tolist():
            if not torch.isfinite(d[j]):
                break
            aligned = align_graph(self.graphs[j], graph, self.layout)[0]
            best = min(best, float((self.space.flatten([aligned]).double()[0] - own).norm()))
        return best

    def __call__(self, samples) -> dict:
        """The samples' median distance, its ratio to the zoo's, and the fraction of samples closer to a zoo model
        than the zoo's 5th percentile (copies)."""
        d = np.array([self.nearest(g) for g in samples])
        return {"median": float(np.median(d)), "ratio": float(np.median(d) / np.median(self.zoo)),
                "frac_copies": float(self.is_copy(d).mean())}

    def copies(self, graphs) -> np.ndarray:
        """``(B,)`` bool: which ``graphs`` are copies of a zoo model (:meth:`is_copy` of :meth:`nearest`); reads
        weights only."""
        return self.is_copy([self.nearest(g) for g in graphs])

    def is_copy(self, distances: np.ndarray) -> np.ndarray:
        """``(B,)`` bool: distances to the nearest aligned zoo model below the zoo's 5th percentile (copies)."""
        return np.asarray(distances) < np.percentile(self.zoo, 5)


def interpolate_baseline(graphs, zoo_acc: np.ndarray, runs: np.ndarray, target: np.ndarray, layout, space,
                         seed: int) -> list:
    """The retrieval baseline (not a generator): for every target, a zoo model drawn from the 8 nearest to it in
    accuracy and a second one of another run among them (of any other run if none), the second aligned to the
    first by weight matching, the two mixed at a random :math:`\\lambda \\in [0.3, 0.7]`."""
    rng = np.random.default_rng(seed)
    out = []
    for t in target:
        near = np.argsort(np.abs(zoo_acc - t))[:8]
        a = int(rng.choice(near))
        others = [j for j in near if runs[j] != runs[a]] or [j for j in range(len(runs)) if runs[j] != runs[a]]
        b = int(rng.choice(others))
        out += mix_aligned(graphs, a, b, rng.uniform(0.3, 0.7), layout, space)
    return out


def finetune_curve(model, x, y, x_te, y_te, epochs: int, lr: float, seed: int, new_task: bool) -> list[float]:
    """Test accuracy after 0..``epochs`` epochs of fine-tuning a copy of ``model`` (Adam, batches of 64). The new
    task: every label moved to the next class, ``(y + 1) % 10``, and the last linear layer re-initialised (its
    old readout is the old task's), so what can carry over is the hidden layers."""
    import copy

    model = copy.deepcopy(model)
    if new_task:
        y, y_te = (y + 1) % 10, (y_te + 1) % 10
        torch.manual_seed(seed)
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].reset_parameters()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    curve = [evaluate(model, x_te, y_te)[0]]
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=generator).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        curve.append(evaluate(model, x_te, y_te)[0])
    return curve


def finetune_rows(method: str, modules, data, args) -> list[dict]:
    """Median test accuracy of ``modules`` after 0..``--finetune-epochs`` epochs, on the same task and on the new
    one (:func:`finetune_curve`), one row per task and budget."""
    x_tr, y_tr, x_te, y_te = data[:4]
    rows = []
    for task, new in (("same", False), ("new", True)):
        curves = np.array([finetune_curve(m, x_tr, y_tr, x_te, y_te, args.finetune_epochs, args.finetune_lr,
                                          derive_seed(args.seed, "finetune", i), new) for i, m in enumerate(modules)])
        for epoch, value in enumerate(np.median(curves, 0)):
            rows.append(row(TASK, method, f"finetune_{task}_acc_epoch{epoch}", float(value),
                            note=f"median of {len(modules)} models, Adam lr {args.finetune_lr}"))
    return rows


def score(method: str, target: np.ndarray | None, acc: np.ndarray, zoo_acc: np.ndarray, seconds, note="") -> list[dict]:
    """The rows of one method: median accuracy (all, at the highest target), above the zoo's median,
    distance to the target and Kendall's tau."""
    rows = [row(TASK, method, "median_acc", float(np.median(acc)), seconds, note=note),
            row(TASK, method, "frac_above_zoo_median", float((acc >= np.median(zoo_acc)).mean()), note=note)]
    if target is not None:
        top = target == target.max()
        rows += [row(TASK, method, "median_acc_at_top_target", float(np.median(acc[top])),
                     note=f"target {target.max():.3f}"),
                 row(TASK, method, "mean_abs_target_error", float(np.abs(acc - target).mean())),
                 row(TASK, method, "kendall_tau_target", kendall_tau(target, acc),
                     note=f"{len(acc)} samples at {len(np.unique(target))} targets")]
    return rows


def plot(results: dict, zoo_acc: np.ndarray, path: str) -> str:
    """Histograms of test accuracy (zoo, random init, each method) and sampled accuracy against the target."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    bins = np.linspace(0, 1, 26)
    ax1.hist(zoo_acc, bins=bins, alpha=0.4, density=True, label="zoo")
    for i, (name, (target, acc)) in enumerate(results.items()):
        color = f"C{i + 1}"  # one colour per method in both panels (C0 is the zoo's)
        ax1.hist(acc, bins=bins, histtype="step", lw=1.5, density=True, label=name, color=color)
        if target is not None:
            jitter = (np.random.default_rng(0).random(len(target)) - 0.5) * 0.01
            ax2.scatter(target + jitter, acc, s=8, alpha=0.6, label=name, color=color)
    ax1.set_xlabel("test accuracy without training")
    ax1.legend(fontsize=7)
    lo, hi = 0.0, 1.0
    ax2.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax2.set_xlabel("target accuracy (condition)")
    ax2.set_ylabel("sampled model's test accuracy")
    ax2.legend(fontsize=7)
    return save_figure(fig, path)


def run(args: argparse.Namespace) -> list[dict]:
    check_methods(args.methods, METHODS)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    config = ClassifierZooConfig(checkpoints=4, max_epochs=args.zoo_epochs, seed=args.seed)
    images, train_mask = classifier_data(config)
    data = (images.images[train_mask], images.labels[train_mask], images.images[~train_mask],
            images.labels[~train_mask], images.num_classes)
    x_te, y_te = data[2], data[3]
    start = time.perf_counter()
    zoo = build_zoo(args, config, data)
    zoo_seconds = time.perf_counter() - start
    template = build_model(zoo["spec"]).eval()
    models = zoo_modules(zoo)
    graphs = [nngraph.to_graph(m, x_te[:2]) for m in models]
    zoo_acc = zoo["test_acc"].numpy()
    print(f"zoo: {len(graphs)} checkpoints of {args.runs} runs in {zoo_seconds:.0f} s; test accuracy median "
          f"{np.median(zoo_acc):.3f} (min {zoo_acc.min():.3f}, max {zoo_acc.max():.3f})", flush=True)
    conditions = torch.tensor(zoo_acc, dtype=torch.float32)
    levels = np.quantile(zoo_acc, np.linspace(0.1, 0.9, args.targets))
    target = np.repeat(levels, args.per_target)  # (S,)
    n = len(target)

    torch.manual_seed(derive_seed(args.seed, "random-init"))
    random_acc = np.array([evaluate(build_model(zoo["spec"]).eval(), x_te, y_te)[0] for _ in range(n)])
    note = f"{len(graphs)} zoo models, one MLP 64-{args.hidden}-10"
    novel = Novelty(graphs, zoo["run"].numpy(), template, x_te[:2])
    rows = score("zoo", None, zoo_acc, zoo_acc, zoo_seconds, note)
    rows.append(row(TASK, "zoo", "nearest_aligned_distance", float(np.median(novel.zoo)),
                    note="median over zoo models, to the nearest model of another run"))
    rows += score("random_init", None, random_acc, zoo_acc, None)
    pick = np.random.default_rng(derive_seed(args.seed, "zoo-subset")).choice(len(zoo_acc), n, replace=n > len(zoo_acc))
    rows += score("zoo_subset", None, zoo_acc[pick], zoo_acc, None, note=f"{n} zoo models drawn at random")
    if args.finetune_epochs > 0:
        torch.manual_seed(derive_seed(args.seed, "finetune-init"))
        rows += finetune_rows("random_init", [build_model(zoo["spec"]) for _ in range(args.per_target)], data, args)
        top_zoo = np.argsort(-zoo_acc)[:args.per_target]  # the zoo's best checkpoints
        rows += finetune_rows("zoo_best", [models[i] for i in top_zoo], data, args)
    results = {"random_init": (None, random_acc)}
    for method in args.methods:
        start = time.perf_counter()
        if method == "gaussian":
            gen = GaussianGenerator().fit(graphs, conditions, template=template, example_inputs=x_te[:2])
            samples = gen.sample(template, n, condition=torch.tensor(target), seed=args.seed)
            fitted = ""
        elif method == "interpolate":
            samples = interpolate_baseline(graphs, zoo_acc, zoo["run"].numpy(), target, novel.layout, novel.space,
                                           derive_seed(args.seed, "interpolate"))
            fitted = "baseline: two zoo models near the target, aligned and mixed"
        elif method in ("latent", "latent_twin", "latent_filtered", "latent_probed"):
            twin = method == "latent_twin"
            name = "latent_twin" if twin else "latent"  # the filters filter the latent generator's samples
            gen = LatentFlowGenerator(rank=args.rank, align=not twin, relabel=not twin)
            result = gen.fit(graphs, conditions, template=template, example_inputs=x_te[:2],
                             out_dir=run_dir(args.out, name), epochs=args.latent_epochs, batch_size=128,
                             repeats=args.latent_repeats, lr=args.lr, seed=args.seed, progress=progress,
                             device=args.device)
            fitted = (f"rank {gen.latent_dim}, {'fixed neuron order' if twin else 'aligned, relabelled'}, "
                      f"guidance {args.latent_guidance}, code noise {args.code_noise}, best epoch "
                      f"{result.best_epoch}, val loss {result.best_value:.4f}")
            draw = dict(steps=args.steps, guidance=args.latent_guidance, code_noise=args.code_noise)
            if method in ("latent_filtered", "latent_probed"):
                pool_target = np.repeat(levels, args.per_target * args.filter_pool)  # (S * pool,)
                pool = gen.sample(template, len(pool_target), condition=torch.tensor(pool_target),
                                  seed=derive_seed(args.seed, "filter-pool"), **draw)  # one pool for both filters
                copies = novel.copies(pool) if args.reject_copies else None  # (S * pool,)
                if method == "latent_filtered":
                    predictor = CodeAccuracyPredictor(gen, template).fit(graphs, zoo_acc, zoo["run"].numpy())
                    keep = select_nearest(predictor.predict(pool), pool_target, args.per_target, copies)
                    reads = "a ridge on the codes"
                else:
                    keep, predictor, margin = choose_by_function(
                        [nngraph.from_graph(g, template) for g in pool], pool_target, models, zoo_acc,
                        zoo["run"].numpy(), data, args.per_target, args.probes, args.probe_predictor,
                        derive_seed(args.seed, "probes"), copies, args.probe_rule, args.probe_margin)
                    reads = f"a {args.probe_predictor} on the outputs on {args.probes} unlabelled training images"
                    if args.probe_rule == "at_least":
                        reads += f", at least the target + {margin:.3f} ({args.probe_margin} margin)"
                        rows.append(row(TASK, method, "probe_margin", margin,
                                        note=f"--probe-margin {args.probe_margin}; held-out median absolute "
                                             f"residual {predictor.heldout_residual:.3f}"))
                if args.reject_copies:
                    reads += f", copies kept last ({int(copies.sum())} of {len(pool)} in the pool)"
                samples = [pool[i] for i in keep]  # pool_target[keep] is `target`
                fitted += (f"; kept {args.per_target} of {args.per_target * args.filter_pool} per target by {reads} "
                           f"(held-out-run tau on the zoo {predictor.heldout_tau:.3f})")
                rows.append(row(TASK, method, "predictor_heldout_tau", predictor.heldout_tau,
                                note=f"{reads}, fitted on the zoo, 5 folds of runs"))
            else:
                samples = gen.sample(template, n, condition=torch.tensor(target), seed=args.seed, **draw)
        else:
            denoiser, width, layers = ("graph", args.hidden_dim, args.num_layers) if method == "flow" else \
                ("flat", args.twin_dim, 3)
            gen = FlowGenerator(denoiser, hidden_dim=width, num_layers=layers)
            result = gen.fit(graphs, conditions, template=template, example_inputs=x_te[:2],
                             out_dir=run_dir(args.out, method), epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, seed=args.seed, progress=progress, device=args.device)
            fitted = f"best epoch {result.best_epoch}, val loss {result.best_value:.4f}"
            samples = gen.sample(template, n, condition=torch.tensor(target), steps=args.steps,
                                 guidance=args.guidance, seed=args.seed)
        acc = accuracies(samples, template, x_te, y_te)
        seconds = time.perf_counter() - start
        results[method] = (target, acc)
        rows += score(method, target, acc, zoo_acc, seconds, fitted)
        if args.finetune_epochs > 0:  # the samples at the highest target
            top = np.flatnonzero(target == target.max())
            rows += finetune_rows(method, [nngraph.from_graph(samples[i], template) for i in top], data, args)
        near = novel(samples)
        rows += [row(TASK, method, "nearest_aligned_distance", near["median"],
                     note=f"{near['ratio']:.2f}x the zoo's"),
                 row(TASK, method, "frac_copies", near["frac_copies"], note="closer than the zoo's 5th percentile")]
        print(f"{method}: median accuracy {np.median(acc):.3f}, kendall tau {kendall_tau(target, acc):.3f}, "
              f"nearest aligned zoo model {near['ratio']:.2f}x the zoo's, copies {near['frac_copies']:.2f} "
              f"({seconds:.0f} s)", flush=True)
    plot(results, zoo_acc, os.path.join(args.out, "accuracy.png"))
    save_run(rows, {}, [], args.out, "weight generation", seed=args.seed)  # every row records the seed
    return rows


def main(argv=None, prog: str | None = None) -> int:
    return run_main(run, build_parser, argv, prog)


if __name__ == "__main__":
    sys.exit(main())
