"""Meta-training learned optimizers on small digits problems, and evaluating them against tuned Adam and AdamW.

The problems (:data:`FAMILIES`): scikit-learn's 8 x 8 digits (1,437 training images, 360 test), classified by MLPs
of several widths and depths, CNNs, and by an LSTM and a one-layer transformer that read the image as a sequence of
8 rows of 8 pixels (the sequence task), each from a fresh initialisation and data order. Two update networks of
:mod:`nngraph.optim` are meta-trained with the same budget (the same problems, steps and meta-updates): the graph
network of :class:`~nngraph.optim.LearnedOptimizer` (``graph``) and the per-parameter MLP of
:class:`~nngraph.optim.PerParameterMLPOptimizer` (``mlp``). Both start from Adam at the learning rate tuned on the
distribution (``--init-lr``) and learn how far every entry moves along Adam's direction, reading the fraction of
the run done (a learned schedule; ``--rule``, ``--no-schedule``, :class:`~nngraph.optim.StepOutput`); with
``--role-offsets`` the graph network also learns a step size per role of an entry in the graph.

Gradient estimator: truncated backpropagation through short unrolls. A trajectory of ``--truncations`` x
``--unroll`` inner steps (as long as the evaluation horizon) trains one sampled problem; after each ``--unroll``
steps the meta-loss (the mean log training loss over the truncation's steps: log, so a CNN at loss 1.4 and an MLP
at 0.05 weigh alike) is backpropagated into the update network, and the problem's weights and momenta are detached
and carried on. The gradients that enter the features are constants (first order, as in Andrychowicz et al.,
2016): the meta-gradient flows through every weight update but not through the Hessian. Why not persistent
evolution strategies (UNF's estimator): PES is unbiased over the whole trajectory but needs many antithetic
unrolls per meta-update (its variance grows with the number of meta-parameters, here ~30k); a CPU budget of
minutes gives ~1,000 meta-updates by backprop and would give tens by PES. Backprop through 10-step truncations has
low variance and a short-horizon bias towards greedy, small steps (measured on the LSTM and the CNN,
docs/tasks/learned_optimizer.md), which the bounded output (every entry's step within ``e^-c-`` .. ``e^c+`` of
Adam's at the learned rate, plus a small bounded term) keeps from turning into divergence. Meta-gradients are clipped to norm 1
and a truncation with a non-finite meta-loss is skipped. Other truncation lengths: ``--kind-unroll`` (one per kind of
problem, e.g. every 30 steps on the CNNs, LSTM and transformer, whose loss falls slowly), ``--unroll-choices`` (one
drawn per trajectory), ``--unroll-from`` (curriculum stages); ``--sample kind`` draws every kind of model alike
(docs/tasks/learned_optimizer.md measures the first three).

Resumable: after every trajectory the networks and meta-optimizers are saved (``nngraph.train.save_checkpoint``,
atomic; safetensors and JSON), and a killed run started again with the same flags continues from the last
trajectory; every evaluation run is saved as it finishes (``<out>/eval/``, under a fingerprint of the networks
and the tuned baselines) and not run again. Problems are drawn
from a generator seeded by ``(seed, trajectory)``, so a resumed run trains on the same problems as an uninterrupted
one.

Evaluation on fresh problems (seeds the meta-training never drew), ``--eval-seeds`` seeds, ``--long-steps`` steps
each; the tables report the training loss (the whole training set) at ``--eval-steps`` (the trajectories' length)
and at ``--long-steps`` (a longer horizon), and the test accuracy at the end; an optimizer told the run's length
is run once per horizon. Optimizers: Adam, Adam with a cosine decay and AdamW with learning rate (and AdamW's
weight decay) tuned on problems of the meta-training distribution, the per-parameter
MLP, the graph optimizer and its twin, the graph optimizer with its graph relabelled at random every step
(equivariant: the same steps up to rounding; run on ``--twin-seeds`` only). Problems: in distribution
(:data:`IN_DISTRIBUTION`: new initialisations, data orders, and an MLP width no trajectory had) and unseen
(:data:`UNSEEN`: a wider and deeper MLP, a residual MLP and a GRU, families no trajectory trained on).

Validation (:func:`validate`): the same problems at other seeds (``--val-seeds``, offset
``SPLIT_OFFSETS["validation"]``: other initialisations and data orders), tuned Adam and the networks at
``--eval-steps``, summarised as the geometric mean of loss / Adam's over the problems; meta-training runs are
compared on it (``--validation-only`` runs it without the evaluation), never on the evaluation problems.

Usage: ``python -m tasks.learned_optimizer --out runs/learned_optimizer``; writes ``results.json``, ``curves.png``,
``table.md``, ``validation.md`` / ``validation.json`` and the meta-trained networks ``graph.safetensors`` / ``mlp.safetensors``
(``LearnedOptimizer(model, "graph.safetensors")``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from tqdm.auto import tqdm

from nngraph.io import atomic_write
from nngraph.optim import (GraphUpdateNetwork, LearnedOptimizer, PerParameterMLPOptimizer, PerParameterUpdateNetwork,
                           Segments, advance_state, entry_features, init_state, place, save_network)
from nngraph.train import load_checkpoint, save_checkpoint
from nngraph.train.checkpoint import optimizer_from_flat

METHODS = ("graph", "mlp")
#: The meta-training distribution: ``name -> (kind, widths)`` (hidden widths, channels or model width).
FAMILIES = {
    "mlp-16": ("mlp", (16,)),
    "mlp-32": ("mlp", (32,)),
    "mlp-64": ("mlp", (64,)),
    "mlp-16-16": ("mlp", (16, 16)),
    "mlp-32-32": ("mlp", (32, 32)),
    "mlp-128": ("mlp", (128,)),
    "mlp-64-64": ("mlp", (64, 64)),
    "cnn-8": ("cnn", (8,)),
    "cnn-12": ("cnn", (12,)),
    "lstm-16": ("lstm", (16,)),
    "transformer-16": ("transformer", (16,)),
}
#: In-distribution evaluation problems (``mlp-48``: a width between those meta-trained on).
IN_DISTRIBUTION = {
    "mlp-48": ("mlp", (48,)),
    "mlp-32-32": ("mlp", (32, 32)),
    "cnn-8": ("cnn", (8,)),
    "lstm-16": ("lstm", (16,)),
    "transformer-16": ("transformer", (16,)),
}
#: Families no trajectory trained on: wider and deeper than any MLP, residual, a GRU.
UNSEEN = {
    "mlp-128-64-32": ("mlp", (128, 64, 32)),
    "resmlp-64": ("resmlp", (64,)),
    "gru-32": ("gru", (32,)),
}


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)``: the digits as ``(n, 1, 8, 8)`` in [0, 1], a fixed 80 / 20 split."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (n, 1, 8, 8)
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(y))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


class RowSequence(nn.Module):
    """A recurrent network or a transformer layer reading an image ``(B, 1, 8, 8)`` as 8 rows of 8 pixels; a linear
    head on the last state (recurrent) or the mean over rows (transformer) gives the 10 logits."""

    def __init__(self, kind: str, width: int):
        super().__init__()
        self.kind = kind
        if kind == "transformer":
            self.embed = nn.Linear(8, width)
            self.body = nn.TransformerEncoderLayer(width, 2, 2 * width, dropout=0.0, batch_first=True)
        else:
            self.body = (nn.LSTM if kind == "lstm" else nn.GRU)(8, width, batch_first=True)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        rows = x.flatten(1, 2)  # (B, 1, 8, 8) -> (B, 8, 8)
        if self.kind == "transformer":
            return self.head(self.body(self.embed(rows)).mean(1))  # (B, 10)
        return self.head(self.body(rows)[0][:, -1])  # (B, 10)


class ResidualMLP(nn.Module):
    """``x -> h = relu(W_in x); h += relu(W_k h) (k = 1, 2); W_out h``: an MLP with two residual blocks."""

    def __init__(self, width: int):
        super().__init__()
        self.inp = nn.Linear(64, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(2))
        self.out = nn.Linear(width, 10)

    def forward(self, x):
        h = torch.relu(self.inp(x.flatten(1)))  # (B, W)
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.out(h)  # (B, 10)


def build_model(kind: str, widths: tuple[int, ...]) -> nn.Module:
    """An MLP with hidden ``widths`` (ReLU); a CNN (two 3 x 3 convolutions of ``widths[0]`` channels, global average
    pooling, a linear head); a row-sequence LSTM, GRU or transformer of width ``widths[0]``; a residual MLP."""
    if kind == "mlp":
        layers, last = [nn.Flatten()], 64
        for w in widths:
            layers += [nn.Linear(last, w), nn.ReLU()]
            last = w
        return nn.Sequential(*layers, nn.Linear(last, 10))
    if kind == "cnn":
        c = widths[0]
        return nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    if kind in ("lstm", "gru", "transformer"):
        return RowSequence(kind, widths[0])
    if kind == "resmlp":
        return ResidualMLP(widths[0])
    raise ValueError(f"unknown problem kind {kind!r}; Could not resolve it among choices "
                     "['cnn', 'gru', 'lstm', 'mlp', 'resmlp', 'transformer']")


@dataclass
class Problem:
    """One training problem: a model with its initial weights and a stream of minibatches."""

    name: str
    model: nn.Module
    generator: torch.Generator  # the data order

    def batch(self, x: torch.Tensor, y: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(y), (size,), generator=self.generator)
        return x[idx], y[idx]


def sample_problem(seed: int, families: dict = FAMILIES, name: str | None = None, by_kind: bool = False,
                   weights: dict | None = None) -> Problem:
    """A problem of family ``name``, initialised from ``seed``; if ``name`` is ``None``, a family drawn at random
    among ``families`` (``by_kind``: a kind first, then a family of that kind, so that each kind of model, MLP,
    CNN, LSTM, transformer, is drawn as often whatever its number of widths; ``weights``: family -> relative
    weight of its draw, 1 for a family not named)."""
    generator = torch.Generator().manual_seed(seed)
    if name is None:
        pool = sorted(families)
        if weights:
            w = torch.tensor([float(weights.get(n, 1.0)) for n in pool], dtype=torch.float64)  # (F,)
            name = pool[int(torch.multinomial(w, 1, generator=generator))]
        else:
            if by_kind:
                kinds = sorted({families[n][0] for n in pool})
                kind = kinds[int(torch.randint(len(kinds), (), generator=generator))]
                pool = [n for n in pool if families[n][0] == kind]
            name = pool[int(torch.randint(len(pool), (), generator=generator))]
    torch.manual_seed(seed)
    return Problem(name, build_model(*families[name]), generator)


#: Seed offsets of the held-out problems: meta-training draws ``seed * 1_000_003 + k``, tuning ``10_000 + i``; the
#: evaluation problems (reported) and the validation problems (for choosing among meta-training runs) lie apart.
SPLIT_OFFSETS = {"evaluation": 20_000, "validation": 30_000}


def evaluation_problem(name: str, family: tuple, seed: int, split: str = "evaluation") -> Problem:
    """Problem ``name`` (of ``family``, an entry of ``IN_DISTRIBUTION`` / ``UNSEEN``) at seed ``seed`` of ``split``
    (``evaluation`` or ``validation``: the same families, other initialisations and data orders): the same start for
    every optimizer run on it, kept apart from the meta-training and tuning seeds and from the other split."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"Could not resolve split {split!r} among choices {sorted(SPLIT_OFFSETS)}")
    return sample_problem(SPLIT_OFFSETS[split] + seed, {name: family}, name)


def make_network(method: str, args) -> nn.Module:
    """The update network of ``method`` (``graph`` or ``mlp``), untrained; both get the same output rule and inputs."""
    step = dict(output_dim=args.output_dim, init_lr=args.init_lr, max_log_scale=args.max_log_scale, rule=args.rule,
                min_log_scale=args.min_log_scale, max_additive=args.max_additive, progress=args.schedule)
    if method == "graph":
        return GraphUpdateNetwork(hidden_dim=args.hidden_dim, num_layers=args.num_layers, context_dim=args.context_dim,
                                  role_offsets=args.role_offsets, **step)
    return PerParameterUpdateNetwork(**step)


# ------------------------------------------------------------ meta-training
def run_trajectory(network: nn.Module, meta_opt: torch.optim.Optimizer, problem: Problem, data, args,
                   unroll: int | None = None) -> list[float]:
    """Train ``problem`` for ``args.truncations x args.unroll`` steps (the horizon) with ``network``, one
    meta-update per truncation of ``unroll`` steps (default ``args.unroll``; it must divide the horizon).
    Returns the meta-losses (mean log training loss of every truncation)."""
    x, y = data[0], data[1]
    model = problem.model
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    graph, placement = place(model, [p for _, p in model.named_parameters()], (x[:2],))
    segments = Segments([math.prod(s) for s in shapes])
    weight = torch.cat([p.detach().reshape(-1) for p in model.parameters()])  # (P,)
    state = init_state(weight.numel(), len(network.betas))
    horizon = args.truncations * args.unroll
    unroll = args.unroll if unroll is None else unroll
    if horizon % unroll:
        raise ValueError(f"an unroll of {unroll} steps does not divide the trajectory's {horizon} steps "
                         f"(--truncations x --unroll)")

    def loss_at(w: torch.Tensor) -> torch.Tensor:
        params = {n: t.view(s) for n, t, s in zip(names, w.split(segments.sizes), shapes)}
        xb, yb = problem.batch(x, y, args.batch_size)
        return F.cross_entropy(torch.func.functional_call(model, params, (xb,)), yb)

    meta_losses = []
    for _ in range(horizon // unroll):
        w = weight.detach().requires_grad_(True)
        losses = []
        for t in range(unroll):
            loss = loss_at(w)
            grad = torch.autograd.grad(loss, w, retain_graph=t > 0)[0].detach()  # first order: a constant
            if t > 0:
                losses.append(loss)
            state = advance_state(state, grad, network.betas)
            features = entry_features(w.detach(), grad, state, segments, network.betas)  # (P, C)
            progress = (state.step - 1) / horizon if args.schedule else None  # (P,): 0 on the first step
            w = w + network(features, segments, graph, placement, progress)  # (P,)
        losses.append(loss_at(w))
        meta_loss = torch.stack(losses).clamp_min(1e-8).log().mean()
        meta_opt.zero_grad()
        if torch.isfinite(meta_loss):
            meta_loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            meta_opt.step()
        meta_losses.append(float(meta_loss.detach()))
        weight = w.detach()
        state = type(state)(*(s.detach() for s in state))
        if not torch.isfinite(weight).all():
            break  # the problem diverged: the next trajectory starts afresh
    return meta_losses


#: Settings a run stored before they were flags, with the value such a run had (it resumes under them).
_ADDED_SETTINGS = {"unroll_choices": [], "sample": "family", "unroll_from": [], "kind_unroll": {}, "family_weights": {},
                   "role_offsets": False, "role_offset_lr_scale": 10.0}


def settings(args) -> dict:
    """The flags a resumed run must share with the run it continues."""
    keys = ("seed", "truncations", "unroll", "batch_size", "hidden_dim", "num_layers", "context_dim", "output_dim",
            "init_lr", "max_log_scale", "meta_lr", "rule", "min_log_scale", "max_additive", "schedule",
            *_ADDED_SETTINGS)
    return {k: getattr(args, k) for k in keys}


def trajectory_unroll(args, k: int, kind: str | None = None) -> int:
    """The truncation length of trajectory ``k`` (a problem of ``kind``): that of the last ``--unroll-from`` stage
    started by ``k`` (a curriculum), else ``--kind-unroll``'s for ``kind``, else one of ``--unroll-choices`` drawn
    from a generator seeded by ``(seed, k)`` (a resumed run draws the same), else ``--unroll``."""
    stages = [unroll for start, unroll in sorted(args.unroll_from) if start <= k]
    if stages:
        return stages[-1]
    if kind in args.kind_unroll:
        return args.kind_unroll[kind]
    if not args.unroll_choices:
        return args.unroll
    generator = torch.Generator().manual_seed(args.seed * 1_000_003 + k + 500_000_000)
    return args.unroll_choices[int(torch.randint(len(args.unroll_choices), (), generator=generator))]


def meta_train(method: str, args, data) -> tuple[nn.Module, dict]:
    """Meta-train ``method``'s network for ``args.trajectories`` trajectories, resuming from ``<out>/runs/<method>``."""
    directory = os.path.join(args.out, "runs", method)
    torch.manual_seed(args.seed)
    network = make_network(method, args)
    # the step size is one number that moves every step: it learns 10x faster than the network's weights; the
    # step-size offsets per role (--role-offsets) learn --role-offset-lr-scale x faster (default 10, the step size's)
    step_size = [network.output.log_lr]
    offsets = [network.output.role_offset] if network.output.role_offsets else []
    rest = [p for p in network.parameters() if all(p is not q for q in step_size + offsets)]
    if args.role_offset_lr_scale == 10:  # one group with the step size, as the stored runs' optimizer states have
        step_size, offsets = step_size + offsets, []
    groups = [{"params": rest}, {"params": step_size, "lr": 10 * args.meta_lr}]
    if offsets:
        groups.append({"params": offsets, "lr": args.role_offset_lr_scale * args.meta_lr})
    meta_opt = torch.optim.Adam(groups, lr=args.meta_lr)
    info = {"settings": settings(args), "trajectory": 0, "meta_losses": [], "seconds": 0.0}
    found = load_checkpoint(directory, "last")
    if found is not None:
        tensors, stored = found
        done = stored.get("trajectory", 0)
        # a curriculum stage that starts after the stored trajectories leaves the run so far the same: it continues
        same_so_far = {**info["settings"], "unroll_from": [s for s in args.unroll_from if s[0] < done]}
        if {**_ADDED_SETTINGS, **stored.get("settings", {})} not in (info["settings"], same_so_far):
            raise SystemExit(f"{directory} holds a run with other settings ({stored.get('settings')}); use another "
                             "--out or remove it")
        network.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
        optimizer_from_flat(meta_opt, tensors, stored["optimizer"])
        info = {**{k: stored[k] for k in info}, "settings": info["settings"]}  # stored from now on: these flags
        print(f"{method}: resumed after trajectory {info['trajectory']}", flush=True)
    bar = tqdm(range(info["trajectory"], args.trajectories), desc=f"meta-training {method}", disable=args.no_progress,
               initial=info["trajectory"], total=args.trajectories)
    for k in bar:
        start = time.perf_counter()
        problem = sample_problem(args.seed * 1_000_003 + k, FAMILIES, by_kind=args.sample == "kind",
                                 weights=args.family_weights)
        unroll = trajectory_unroll(args, k, FAMILIES[problem.name][0])
        losses = run_trajectory(network, meta_opt, problem, data, args, unroll)
        info["meta_losses"].append({"trajectory": k, "problem": problem.name, "unroll": unroll, "losses": losses})
        info["trajectory"] = k + 1
        info["seconds"] += time.perf_counter() - start
        save_checkpoint(directory, "last", network, info, optimizer=meta_opt)
        bar.set_postfix(problem=problem.name, meta_loss=f"{losses[-1]:.3f}")
        if args.no_progress and (k + 1) % 10 == 0:
            print(f"{method}: trajectory {k + 1}, {info['seconds']:.0f} s, last meta-losses "
                  f"{[round(v, 2) for v in losses[-3:]]} ({problem.name}), step size "
                  f"{float(network.output.log_lr.detach().exp()):.4g}", flush=True)
    save_network(network, os.path.join(args.out, f"{method}.safetensors"))
    return network, info


# ------------------------------------------------------------ evaluation
def train_with(make_opt, problem: Problem, data, steps: int, batch_size: int) -> dict:
    """Train ``problem.model`` with ``make_opt(model)`` in a plain loop; the training-set loss every 10 steps, test
    accuracy, and the optimizer's seconds per step."""
    x, y, xt, yt = data
    model = problem.model
    opt = make_opt(model)
    curve, opt_seconds, taken = [], 0.0, 0
    for step in range(steps + 1):
        if step % 10 == 0 or step == steps:
            with torch.no_grad():
                loss = float(F.cross_entropy(model(x), y))
            curve.append((step, loss if math.isfinite(loss) else math.inf))
            if not math.isfinite(loss):
                break
        if step == steps:
            break
        xb, yb = problem.batch(x, y, batch_size)
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        start = time.perf_counter()
        opt.step()
        opt_seconds += time.perf_counter() - start
        taken += 1
    with torch.no_grad():
        accuracy = float((model(xt).argmax(1) == yt).float().mean())
    return {"curve": curve, "test_acc": accuracy, "ms_per_step": 1e3 * opt_seconds / max(taken, 1)}


def loss_at(curve: list, step: int) -> float:
    """The training loss of ``curve`` at ``step`` (``inf`` if the run diverged before it)."""
    for s, v in curve:
        if s == step:
            return v
    return math.inf


class CosineAdam:
    """Adam whose learning rate decays from ``lr`` to 0 over ``total_steps`` on a half cosine (held at 0 after): the
    baseline with a schedule, as the learned optimizers get one. ``zero_grad`` / ``step`` as an optimizer."""

    def __init__(self, params, lr: float, total_steps: int):
        self.opt = torch.optim.Adam(params, lr=lr)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))

    def zero_grad(self):
        self.opt.zero_grad()

    def step(self):
        self.opt.step()
        self.schedule.step()


def tune_baselines(args, data) -> dict:
    """Adam's learning rate (constant, and decayed on a cosine) and AdamW's learning rate and weight decay: of the
    grids, those with the lowest mean log training loss at ``--eval-steps`` on one problem of every meta-training
    family (seeds apart from meta-training's and evaluation's). Cached in ``<out>/tuning.json``."""
    path = os.path.join(args.out, "tuning.json")
    key = {"adam_lrs": args.adam_lrs, "weight_decays": args.weight_decays, "eval_steps": args.eval_steps,
           "families": sorted(FAMILIES), "cosine": True}
    if os.path.isfile(path):
        with open(path) as f:
            stored = json.load(f)
        if stored.get("key") == key:
            return stored
    grid = ([("adam", lr, 0.0) for lr in args.adam_lrs] + [("adam_cosine", lr, 0.0) for lr in args.adam_lrs] +
            [("adamw", lr, wd) for lr in args.adam_lrs for wd in args.weight_decays])
    scores = {}
    for name, lr, wd in grid:
        make = {"adam": lambda m: torch.optim.Adam(m.parameters(), lr=lr),
                "adam_cosine": lambda m: CosineAdam(m.parameters(), lr, args.eval_steps),
                "adamw": lambda m: torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=wd)}[name]
        logs = []
        for i, family in enumerate(sorted(FAMILIES)):
            run = train_with(make, sample_problem(10_000 + i, FAMILIES, family), data, args.eval_steps, args.batch_size)
            logs.append(math.log(max(loss_at(run["curve"], args.eval_steps), 1e-8)))
        scores[(name, lr, wd)] = sum(logs) / len(logs)
        print(f"{name} lr {lr:g} wd {wd:g}: mean log training loss {scores[(name, lr, wd)]:.3f}", flush=True)
    best = {n: min((k for k in scores if k[0] == n), key=scores.get) for n in ("adam", "adam_cosine", "adamw")}
    out = {"key": key, "adam": {"lr": best["adam"][1]}, "adam_cosine": {"lr": best["adam_cosine"][1]},
           "adamw": {"lr": best["adamw"][1], "weight_decay": best["adamw"][2]},
           "scores": [[*k, v] for k, v in scores.items()]}
    atomic_write(path, json.dumps(out, indent=1).encode())
    return out


def optimizers(args, data, networks: dict, tuning: dict) -> dict:
    """``method -> (make(model, seed, total_steps), knows_horizon)`` of every optimizer evaluated; an optimizer that
    knows the horizon (a schedule over ``total_steps``) is run once per horizon."""
    adam, cosine, adamw = tuning["adam"], tuning["adam_cosine"], tuning["adamw"]
    makers = {
        f"adam (lr {adam['lr']:g})": (lambda m, s, t: torch.optim.Adam(m.parameters(), lr=adam["lr"]), False),
        f"adamw (lr {adamw['lr']:g}, wd {adamw['weight_decay']:g})": (lambda m, s, t: torch.optim.AdamW(
            m.parameters(), lr=adamw["lr"], weight_decay=adamw["weight_decay"]), False),
        f"adam, cosine decay (lr {cosine['lr']:g})": (lambda m, s, t: CosineAdam(m.parameters(), cosine["lr"], t), True),
    }
    if "mlp" in networks:
        mlp = networks["mlp"]
        makers["per-parameter mlp"] = (lambda m, s, t: PerParameterMLPOptimizer(m, network=mlp, total_steps=t),
                                       mlp.output.progress)
    if "graph" in networks:
        graph, example = networks["graph"], (data[0][:2],)
        makers["graph"] = (lambda m, s, t: LearnedOptimizer(m, network=graph, example_inputs=example, total_steps=t),
                           graph.output.progress)
        makers["graph, relabelled each step"] = (lambda m, s, t: LearnedOptimizer(
            m, network=graph, example_inputs=example, total_steps=t, relabel=True,
            generator=torch.Generator().manual_seed(s)), graph.output.progress)
    return makers


def fingerprint(args, networks: dict, tuning: dict) -> str:
    """A name for what an evaluation run depends on: the networks' weights, the tuned baselines, the horizons and the
    batch size (a run saved under another fingerprint is not read back)."""
    digest = hashlib.sha256(json.dumps([args.long_steps, args.eval_steps, args.batch_size, tuning["adam"],
                                        tuning["adamw"], tuning["adam_cosine"]]).encode())
    for method in sorted(networks):
        for name, value in networks[method].state_dict().items():
            digest.update(f"{method}/{name}".encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _problems() -> list[tuple[str, object, str]]:
    """Every problem of the evaluation (and of the validation, at other seeds) as ``(name, family, split)``."""
    return [(n, f, "in distribution") for n, f in IN_DISTRIBUTION.items()] + \
           [(n, f, "unseen") for n, f in UNSEEN.items()]


def _run_path(directory: str, problem: str, method: str, seed: int) -> str:
    """The file one optimizer's run on one problem and seed is stored in (the method's name up to its bracket)."""
    return os.path.join(directory, f"{problem}__{method.split(' (')[0].replace(', ', '_').replace(' ', '_')}"
                                   f"__{seed}.json")


def _pending(directory: str, seeds, makers: dict, rows: list, skip=lambda method, seed: False):
    """Every (seed, problem, optimizer) run still to do, as ``(seed, name, family, split, method, maker, path)``
    with ``path`` from :func:`_run_path`; runs stored in ``directory`` before a kill are appended to ``rows``
    instead, and those ``skip(method, seed)`` names are left out."""
    for seed in seeds:
        for name, family, split in _problems():
            for method, maker in makers.items():
                if skip(method, seed):
                    continue
                path = _run_path(directory, name, method, seed)
                if os.path.isfile(path):
                    with open(path) as f:
                        rows.append(json.load(f))
                    continue
                yield seed, name, family, split, method, maker, path


def evaluate(args, data, networks: dict) -> tuple[list[dict], dict]:
    """Every optimizer on every evaluation problem and seed, ``--long-steps`` steps (and, for an optimizer that knows
    the horizon, a second run of ``--eval-steps`` steps told so: the loss at ``--eval-steps`` comes from it); each
    run saved to ``<out>/eval/<fingerprint>/`` as it finishes and read from there on a resumed run."""
    tuning = tune_baselines(args, data)
    makers = optimizers(args, data, networks, tuning)
    directory = os.path.join(args.out, "eval", fingerprint(args, networks, tuning))
    os.makedirs(directory, exist_ok=True)
    rows = []
    skip = lambda method, seed: "relabelled" in method and seed not in args.twin_seeds  # noqa: E731
    pending = _pending(directory, args.eval_seeds, makers, rows, skip)
    for seed, name, family, split, method, (make, knows_horizon), path in pending:
        problem = evaluation_problem(name, family, seed)
        run = train_with(lambda m: make(m, seed, args.long_steps), problem, data, args.long_steps,
                         args.batch_size)
        loss = loss_at(run["curve"], args.eval_steps)
        if knows_horizon:  # told the shorter horizon, from the same start
            problem = evaluation_problem(name, family, seed)
            short = train_with(lambda m: make(m, seed, args.eval_steps), problem, data, args.eval_steps,
                               args.batch_size)
            loss = loss_at(short["curve"], args.eval_steps)
        row = {"problem": name, "split": split, "method": method, "seed": seed, **run,
               "loss": loss, "loss_long": loss_at(run["curve"], args.long_steps)}
        atomic_write(path, json.dumps(row).encode())
        rows.append(row)
        print(f"seed {seed} | {name:>15} | {method:>28} | loss@{args.eval_steps} {row['loss']:.4f} | "
              f"loss@{args.long_steps} {row['loss_long']:.4f} | test acc {row['test_acc']:.3f} | "
              f"{row['ms_per_step']:.2f} ms/step", flush=True)
    return rows, tuning


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


#: The optimizers run on the validation problems: the tuned constant-rate Adam (the goal's reference) and the networks.
_VALIDATED = ("adam (", "per-parameter mlp", "graph")


def validate(args, data, networks: dict) -> dict:
    """Tuned Adam and the meta-trained networks on the validation problems: the evaluation's problems
    (``IN_DISTRIBUTION`` and ``UNSEEN``) at ``--val-seeds`` of the ``validation`` split (other initialisations and
    data orders than the evaluation's), ``--eval-steps`` steps each, an optimizer with a schedule told so. Runs of
    meta-training are compared on these, never on the evaluation problems. Each run saved to
    ``<out>/validation/<fingerprint>/`` and read back on a resumed run.

    Returns ``{"seeds", "rows", "table", "score", "met"}``: ``table`` the mean ± std over seeds per (problem,
    method); ``score[method]`` the geometric mean over the problems of the method's mean loss over the seeds divided
    by Adam's (lower is better; Adam reads 1); ``met[method]`` on how many problems that ratio is at most the goal's
    (0.8 in distribution, 1 unseen)."""
    tuning = tune_baselines(args, data)
    makers = {m: v for m, v in optimizers(args, data, networks, tuning).items()
              if m.startswith(_VALIDATED[0]) or m in _VALIDATED[1:]}
    directory = os.path.join(args.out, "validation", fingerprint(args, networks, tuning))
    os.makedirs(directory, exist_ok=True)
    rows = []
    for seed, name, family, split, method, (make, _), path in _pending(directory, args.val_seeds, makers, rows):
        problem = evaluation_problem(name, family, seed, split="validation")
        run = train_with(lambda m: make(m, seed, args.eval_steps), problem, data, args.eval_steps,
                         args.batch_size)
        row = {"problem": name, "split": split, "method": method, "seed": seed,
               "loss": loss_at(run["curve"], args.eval_steps)}
        atomic_write(path, json.dumps(row).encode())
        rows.append(row)
        print(f"validation seed {seed} | {name:>15} | {method:>17} | loss@{args.eval_steps} "
              f"{row['loss']:.4f}", flush=True)
    return {"seeds": list(args.val_seeds), "rows": rows, **validation_summary(rows)}


def validation_summary(rows: list[dict]) -> dict:
    """``{"table", "score", "met"}`` of :func:`validate` from its rows."""
    keys = list(dict.fromkeys((r["problem"], r["split"], r["method"]) for r in rows))
    table = [{"problem": p, "split": s, "method": m,
              "loss": _mean_std([r["loss"] for r in rows if (r["problem"], r["method"]) == (p, m)])}
             for p, s, m in keys]
    by = {(e["problem"], e["method"]): e["loss"][0] for e in table}
    adam = next((m for _, _, m in keys if m.startswith("adam (")), None)
    score, met = {}, {}
    for method in dict.fromkeys(m for _, _, m in keys):
        ratios = [(by[(p, method)] / by[(p, adam)], 0.8 if s == "in distribution" else 1.0)
                  for p, s in dict.fromkeys((p, s) for p, s, _ in keys) if adam is not None]
        score[method] = math.exp(statistics.fmean(math.log(r) for r, _ in ratios)) if ratios else math.nan
        met[method] = sum(r <= target for r, target in ratios)
    return {"table": table, "score": score, "met": met}


def validation_markdown(validation: dict, eval_steps: int) -> str:
    """The validation table: mean ± std per problem and method, then every method's score and goal count."""
    seeds = ",".join(map(str, validation["seeds"]))
    lines = [f"| problem | split | optimizer | train loss @ {eval_steps} (validation seeds {seeds}) |",
             "|---|---|---|---|"]
    lines += [f"| {e['problem']} | {e['split']} | {e['method']} | {e['loss'][0]:.4f} ± {e['loss'][1]:.4f} |"
              for e in validation["table"]]
    n = len({e["problem"] for e in validation["table"]})
    lines += ["", *(f"- {m}: geometric mean of loss / adam {validation['score'][m]:.3f}; the goal's ratio to Adam met "
                    f"on {validation['met'][m]} of {n} problems" for m in validation["score"])]
    return "\n".join(lines)


def paired_difference(rows: list[dict], problem: str, a: str, b: str, field: str) -> tuple[list[float], float, float]:
    """Per evaluation seed, ``a``'s ``field`` minus ``b``'s on ``problem`` (the same initialisation and data order
    for both), and the differences' mean and std over the seeds."""
    value = {(r["method"], r["seed"]): r[field] for r in rows if r["problem"] == problem}
    diffs = [value[(a, s)] - value[(b, s)] for s in sorted({s for m, s in value if m == a}) if (b, s) in value]
    return (diffs, *_mean_std(diffs)) if diffs else ([], math.nan, math.nan)


def summarise(rows: list[dict], args) -> tuple[list[dict], list[str]]:
    """Per (problem, method): mean ± std over seeds of the losses at both horizons, test accuracy and ms per step;
    and the goal checks of issue 29 (graph vs Adam and vs the per-parameter MLP, per problem)."""
    table = []
    keys = list(dict.fromkeys((r["problem"], r["split"], r["method"]) for r in rows))
    for problem, split, method in keys:
        runs = [r for r in rows if (r["problem"], r["method"]) == (problem, method)]
        entry = {"problem": problem, "split": split, "method": method, "seeds": len(runs)}
        for field in ("loss", "loss_long", "test_acc", "ms_per_step"):
            entry[field] = _mean_std([r[field] for r in runs])
        table.append(entry)
    checks = []
    by = {(e["problem"], e["method"]): e for e in table}
    adam = next(m for _, _, m in keys if m.startswith("adam ("))
    for problem, split in dict.fromkeys((p, s) for p, s, _ in keys):
        g, a, p = by.get((problem, "graph")), by.get((problem, adam)), by.get((problem, "per-parameter mlp"))
        if g is None or a is None or p is None:
            continue
        target = 0.8 if split == "in distribution" else 1.0
        for field, horizon in (("loss", args.eval_steps), ("loss_long", args.long_steps)):
            gm, gs = g[field]
            vs_adam = gm <= target * a[field][0]
            spread = max(gs, p[field][1])
            vs_mlp = gm < p[field][0] - spread
            diffs, mean, std = paired_difference(rows, problem, "graph", "per-parameter mlp", field)
            checks.append(f"{problem} ({split}) @ {horizon}: graph {gm:.4f} vs {target:g} x adam "
                          f"{target * a[field][0]:.4f}: {'met' if vs_adam else 'NOT met'}; vs per-parameter mlp "
                          f"{p[field][0]:.4f} - spread {spread:.4f}: {'met' if vs_mlp else 'NOT met'}; paired by "
                          f"seed, graph - mlp {mean:+.4f} ± {std:.4f} ({', '.join(f'{d:+.4f}' for d in diffs)}): "
                          f"{'below by more than the paired spread' if mean + std < 0 else 'not below by the paired spread'}")
    return table, checks


def markdown_table(table: list[dict], args) -> str:
    lines = [f"| problem | split | optimizer | seeds | train loss @ {args.eval_steps} | train loss @ {args.long_steps} | "
             "test acc | ms / step |", "|---|---|---|---|---|---|---|---|"]
    for e in table:
        fmt = lambda v, d=4: f"{v[0]:.{d}f} ± {v[1]:.{d}f}"  # noqa: E731
        lines.append(f"| {e['problem']} | {e['split']} | {e['method']} | {e['seeds']} | {fmt(e['loss'])} | "
                     f"{fmt(e['loss_long'])} | "
                     f"{fmt(e['test_acc'], 3)} | {e['ms_per_step'][0]:.2f} |")
    return "\n".join(lines)


def plot_curves(rows: list[dict], path: str) -> None:
    """The training loss against steps, mean over seeds (shaded: min to max), one panel per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(r["problem"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cols = 4
    n_rows = math.ceil(len(problems) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.3 * n_rows), squeeze=False)
    for ax, problem in zip(axes.flat, problems):
        split = next(r["split"] for r in rows if r["problem"] == problem)
        for i, method in enumerate(methods):
            runs = [r for r in rows if (r["problem"], r["method"]) == (problem, method)]
            steps = [s for s, _ in runs[0]["curve"]]
            curves = [[loss_at(r["curve"], s) for s in steps] for r in runs]
            values = torch.tensor(curves).clamp_max(1e3)  # (seeds, T): a diverged run drawn at the top
            ax.plot(steps, values.mean(0), label=method, color=f"C{i}",
                    linestyle="--" if "relabelled" in method else "-")
            ax.fill_between(steps, values.min(0).values, values.max(0).values, color=f"C{i}", alpha=0.15)
        ax.set(title=f"{problem} ({split})", xlabel="step", ylabel="training loss", yscale="log")
    for ax in list(axes.flat)[len(problems):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.learned_optimizer", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    floats = lambda s: [float(v) for v in s.split(",") if v]  # noqa: E731
    p.add_argument("--out", default="runs/learned_optimizer", help="output folder (runs, networks, results)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"networks to meta-train, of {list(METHODS)}")
    p.add_argument("--trajectories", type=int, default=60, help="meta-training trajectories (problems) per network")
    p.add_argument("--truncations", type=int, default=15, help="meta-updates per trajectory")
    p.add_argument("--unroll", type=int, default=10, help="inner steps per truncation (backpropagated through)")
    p.add_argument("--unroll-choices", type=ints, default=[],
                   help="truncation lengths to mix: each trajectory draws one (e.g. 10,30; each must divide "
                        "--truncations x --unroll, the trajectory's length); empty: every truncation is --unroll")
    stage = lambda s: [[int(v) for v in pair.split(":")] for pair in s.split(",") if pair]  # noqa: E731
    p.add_argument("--unroll-from", type=stage, default=[],
                   help="a curriculum: TRAJECTORY:UNROLL stages (e.g. 60:30: trajectories 60 on truncate every 30 "
                        "steps); a run stored before a stage starts continues into it")
    kinds = lambda s: {kind: int(v) for kind, v in (pair.split(":") for pair in s.split(",") if pair)}  # noqa: E731
    p.add_argument("--kind-unroll", type=kinds, default={},
                   help="truncation lengths per kind of problem, KIND:UNROLL (e.g. cnn:30,lstm:30,transformer:30: "
                        "problems whose loss falls slowly are truncated less often); other kinds: --unroll")
    weights = lambda s: {name: float(v) for name, v in (pair.split(":") for pair in s.split(",") if pair)}  # noqa: E731
    p.add_argument("--family-weights", type=weights, default={},
                   help="FAMILY:WEIGHT, relative weights of the families' draws (e.g. transformer-16:3; others 1)")
    p.add_argument("--sample", default="family", choices=["family", "kind"],
                   help="how a trajectory's problem is drawn: a family uniformly, or a kind of model (mlp, cnn, lstm, "
                        "transformer) uniformly and then one of its families")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch of the inner problems")
    p.add_argument("--meta-lr", type=float, default=1e-3, help="learning rate of the meta-optimizer (Adam)")
    p.add_argument("--init-lr", type=float, default=3e-2,
                   help="initial step size of the update networks (their untrained step is Adam's at this rate)")
    p.add_argument("--rule", default="cone", choices=["cone", "rescaled"],
                   help="output rule (nngraph.optim.StepOutput): a factor on Adam's direction plus a small bounded term "
                        "(cone), or Adam's direction plus a free correction rescaled to Adam's norm (rescaled)")
    p.add_argument("--max-log-scale", type=float, default=1.0, help="bound c+ of the log per-entry step factor, above")
    p.add_argument("--min-log-scale", type=float, default=3.0, help="bound c- of the log per-entry step factor, below")
    p.add_argument("--max-additive", type=float, default=0.5, help="bound of the cone rule's additive term (x rms Adam)")
    p.add_argument("--no-schedule", dest="schedule", action="store_false",
                   help="the networks do not read the fraction of the run done (no learned schedule)")
    p.add_argument("--role-offsets", action="store_true",
                   help="the graph network learns a step size per role of an entry in the graph (edge type or node "
                        "column, kinds of the neurons it joins; nngraph.optim.roles), started at the common one")
    p.add_argument("--role-offset-lr-scale", type=float, default=10.0,
                   help="the role offsets' meta-learning rate, x --meta-lr (default 10: the common step size's)")
    p.add_argument("--hidden-dim", type=int, default=32, help="node and edge width of the graph network")
    p.add_argument("--num-layers", type=int, default=2, help="message-passing layers of the graph network")
    p.add_argument("--context-dim", type=int, default=8, help="context per entry from the graph network's heads")
    p.add_argument("--output-dim", type=int, default=32, help="width of the per-entry MLP (both networks)")
    p.add_argument("--eval-steps", type=int, default=150, help="evaluation horizon (the trajectories' length)")
    p.add_argument("--long-steps", type=int, default=300, help="the longer evaluation horizon")
    p.add_argument("--eval-seeds", type=ints, default=[0, 1, 2], help="seeds of the evaluation problems")
    p.add_argument("--val-seeds", type=ints, default=[0, 1, 2],
                   help="seeds of the validation problems (the evaluation's problems from other initialisations and "
                        "data orders: seed offset SPLIT_OFFSETS['validation']); what to compare meta-training runs by")
    p.add_argument("--validation-only", action="store_true",
                   help="meta-train (or resume), then run the validation problems only, not the evaluation")
    p.add_argument("--twin-seeds", type=ints, default=[0],
                   help="seeds the relabelled twin runs on (it takes the graph optimizer's steps up to rounding)")
    p.add_argument("--adam-lrs", type=floats, default=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1], help="Adam's learning-rate grid")
    p.add_argument("--weight-decays", type=floats, default=[1e-2, 1e-1], help="AdamW's weight-decay grid")
    p.add_argument("--skip-eval", action="store_true", help="meta-train only")
    p.add_argument("--seed", type=int, default=0, help="seed of the meta-training problems and the networks")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: Could not resolve {unknown} among choices {list(METHODS)}")
    if any(len(stage) != 2 for stage in args.unroll_from):
        parser.error(f"--unroll-from takes TRAJECTORY:UNROLL pairs, got {args.unroll_from}")
    unknown = sorted(set(args.kind_unroll) - {kind for kind, _ in FAMILIES.values()})
    if unknown:
        parser.error(f"--kind-unroll: Could not resolve {unknown} among choices "
                     f"{sorted({kind for kind, _ in FAMILIES.values()})}")
    unknown = sorted(set(args.family_weights) - set(FAMILIES))
    if unknown or any(w <= 0 for w in args.family_weights.values()) or (args.family_weights and args.sample == "kind"):
        parser.error(f"--family-weights: positive weights of families among {sorted(FAMILIES)} (got "
                     f"{args.family_weights}), not with --sample kind")
    bad = [u for u in [*args.unroll_choices, *(u for _, u in args.unroll_from), *args.kind_unroll.values()]
           if u < 1 or (args.truncations * args.unroll) % u]
    if bad:
        parser.error(f"--unroll-choices {bad} do not divide the trajectory's {args.truncations * args.unroll} steps")
    os.makedirs(args.out, exist_ok=True)
    data = digits()
    networks, training = {}, {}
    for method in methods:
        networks[method], info = meta_train(method, args, data)
        training[method] = {"trajectories": info["trajectory"], "seconds": info["seconds"]}
        print(f"{method}: {info['trajectory']} trajectories meta-trained in {info['seconds']:.0f} s", flush=True)
    if args.skip_eval:
        return 0
    validation = validate(args, data, networks) if args.val_seeds else None
    if validation is not None:
        text = validation_markdown(validation, args.eval_steps)
        atomic_write(os.path.join(args.out, "validation.md"), (text + "\n").encode())
        atomic_write(os.path.join(args.out, "validation.json"), json.dumps(validation, indent=1).encode())
        print("\n" + text + "\n", flush=True)
    if args.validation_only:
        return 0
    rows, tuning = evaluate(args, data, networks)
    table, checks = summarise(rows, args)
    plot_curves(rows, os.path.join(args.out, "curves.png"))
    text = markdown_table(table, args)
    atomic_write(os.path.join(args.out, "table.md"), (text + "\n\n" + "\n".join(f"- {c}" for c in checks) + "\n").encode())
    atomic_write(os.path.join(args.out, "results.json"),
                 json.dumps({"settings": vars(args), "meta_training": training, "tuning": tuning, "table": table,
                             "checks": checks, "rows": rows, "validation": validation}, indent=1).encode())
    print("\n" + text + "\n")
    for c in checks:
        print(c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
