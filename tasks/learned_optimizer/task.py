"""Meta-training learned optimizers on small digits problems, and evaluating them against tuned Adam.

The problems: scikit-learn's 8 x 8 digits (1,437 training images, 360 test), classified by MLPs of several widths
and depths and by a small CNN (:data:`FAMILIES`), each from a fresh initialisation and data order. Two update
networks of :mod:`nngraph.optim` are meta-trained with the same budget: the graph network of
:class:`~nngraph.optim.LearnedOptimizer` (``graph``) and the per-parameter MLP of
:class:`~nngraph.optim.PerParameterMLPOptimizer` (``mlp``).

Gradient estimator: truncated backpropagation through short unrolls. A trajectory of ``--truncations`` x
``--unroll`` inner steps trains one sampled problem; after each ``--unroll`` steps the meta-loss (the mean training
loss over the truncation's steps) is backpropagated into the update network and the problem's weights and momenta
are detached and carried on. The gradients that enter the features are treated as constants (first order, as in
Andrychowicz et al., 2016): the meta-gradient flows through every weight update but not through the Hessian. Short
unrolls keep the variance of the meta-gradient low and the memory of the unroll small (one problem's weights per
step); their bias (the short-horizon bias towards greedy steps) is what persistent evolution strategies would
remove at the cost of many more unrolls, too many for a CPU run of minutes. Meta-gradients are clipped to norm 1
and a truncation with a non-finite meta-loss is skipped.

Resumable: after every trajectory the networks and meta-optimizers are saved (``nngraph.train.save_checkpoint``,
atomic; safetensors and JSON), and a killed run started again with the same flags continues from the last
trajectory. Problems are drawn from a generator seeded by ``(seed, trajectory)``, so a resumed run trains on the
same problems as an uninterrupted one.

Evaluation on fresh problems (seeds the meta-training never drew), ``--eval-steps`` steps each (a longer horizon
than a trajectory): Adam with its learning rate tuned on problems of the meta-training distribution
(``--adam-lrs``), the two meta-trained optimizers, and the graph optimizer with its graph relabelled at random every
step (``graph_relabel``, its twin: equivariant, so it takes the same steps up to rounding). In-distribution problems
and an unseen family (a wider and deeper MLP than any meta-trained). Reported: final training loss (the whole
training set), test accuracy, and wall-clock per step in the same process.

Usage: ``python -m tasks.learned_optimizer --out runs/learned_optimizer``; writes ``results.json``,
``curves.png`` and the meta-trained networks ``graph.pt`` / ``mlp.pt`` (``LearnedOptimizer(model, "graph.pt")``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
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
#: The meta-training distribution: ``name -> (kind, widths)`` (an MLP's hidden widths, a CNN's channels).
FAMILIES = {
    "mlp-16": ("mlp", (16,)),
    "mlp-32": ("mlp", (32,)),
    "mlp-64": ("mlp", (64,)),
    "mlp-32-32": ("mlp", (32, 32)),
    "mlp-16-16": ("mlp", (16, 16)),
    "cnn-8": ("cnn", (8,)),
}
#: Evaluation problems: the first in distribution, the last of a family no trajectory trained on.
EVAL_FAMILIES = {"mlp-32": ("mlp", (32,)), "cnn-8": ("cnn", (8,)), "unseen mlp-128-64-32": ("mlp", (128, 64, 32))}


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)``: the digits as ``(n, 1, 8, 8)`` in [0, 1], a fixed 80 / 20 split."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (n, 1, 8, 8)
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(y))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def build_model(kind: str, widths: tuple[int, ...]) -> nn.Module:
    """An MLP with hidden ``widths`` (ReLU), or a CNN: two 3 x 3 convolutions of ``widths[0]`` channels, global
    average pooling, a linear head."""
    if kind == "mlp":
        layers, last = [nn.Flatten()], 64
        for w in widths:
            layers += [nn.Linear(last, w), nn.ReLU()]
            last = w
        return nn.Sequential(*layers, nn.Linear(last, 10))
    c = widths[0]
    return nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


@dataclass
class Problem:
    """One training problem: a model with its initial weights and a stream of minibatches."""

    name: str
    model: nn.Module
    generator: torch.Generator  # the data order

    def batch(self, x: torch.Tensor, y: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(y), (size,), generator=self.generator)
        return x[idx], y[idx]


def sample_problem(seed: int, families: dict = FAMILIES, name: str | None = None) -> Problem:
    """A problem of family ``name`` (random among ``families`` if ``None``), initialised from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    if name is None:
        name = sorted(families)[int(torch.randint(len(families), (), generator=generator))]
    torch.manual_seed(seed)
    return Problem(name, build_model(*families[name]), generator)


def make_network(method: str, args) -> nn.Module:
    if method == "graph":
        return GraphUpdateNetwork(hidden_dim=args.hidden_dim, num_layers=args.num_layers, context_dim=args.context_dim,
                                  output_dim=args.output_dim, init_lr=args.init_lr)
    return PerParameterUpdateNetwork(output_dim=args.output_dim, init_lr=args.init_lr)


# ------------------------------------------------------------ meta-training
def run_trajectory(network: nn.Module, meta_opt: torch.optim.Optimizer, problem: Problem, data, args) -> list[float]:
    """Train ``problem`` for ``truncations x unroll`` steps with ``network``, one meta-update per truncation.
    Returns the meta-losses."""
    x, y = data[0], data[1]
    model = problem.model
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    graph, placement = place(model, [p for _, p in model.named_parameters()], (x[:2],))
    segments = Segments([math.prod(s) for s in shapes])
    weight = torch.cat([p.detach().reshape(-1) for p in model.parameters()])  # (P,)
    state = init_state(weight.numel(), len(network.betas))

    def loss_at(w: torch.Tensor) -> torch.Tensor:
        params = {n: t.view(s) for n, t, s in zip(names, w.split(segments.sizes), shapes)}
        xb, yb = problem.batch(x, y, args.batch_size)
        return F.cross_entropy(torch.func.functional_call(model, params, (xb,)), yb)

    meta_losses = []
    for _ in range(args.truncations):
        w = weight.detach().requires_grad_(True)
        losses = []
        for t in range(args.unroll):
            loss = loss_at(w)
            grad = torch.autograd.grad(loss, w, retain_graph=t > 0)[0].detach()  # first order: a constant
            if t > 0:
                losses.append(loss)
            state = advance_state(state, grad, network.betas)
            features = entry_features(w.detach(), grad, state, segments, network.betas)  # (P, C)
            w = w + network(features, graph, placement)  # (P,)
        losses.append(loss_at(w))
        meta_loss = torch.stack(losses).mean()
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


def settings(args) -> dict:
    """The flags a resumed run must share with the run it continues."""
    keys = ("seed", "truncations", "unroll", "batch_size", "hidden_dim", "num_layers", "context_dim", "output_dim",
            "init_lr", "meta_lr")
    return {k: getattr(args, k) for k in keys}


def meta_train(method: str, args, data) -> tuple[nn.Module, dict]:
    """Meta-train ``method``'s network for ``args.trajectories`` trajectories, resuming from ``<out>/runs/<method>``."""
    directory = os.path.join(args.out, "runs", method)
    torch.manual_seed(args.seed)
    network = make_network(method, args)
    # the step size is one number that moves every step: it learns 10x faster than the network's weights
    step_size = [network.output.log_lr]
    rest = [p for p in network.parameters() if p is not network.output.log_lr]
    meta_opt = torch.optim.Adam([{"params": rest}, {"params": step_size, "lr": 10 * args.meta_lr}], lr=args.meta_lr)
    info = {"settings": settings(args), "trajectory": 0, "meta_losses": [], "seconds": 0.0}
    found = load_checkpoint(directory, "last")
    if found is not None:
        tensors, stored = found
        if stored.get("settings") != info["settings"]:
            raise SystemExit(f"{directory} holds a run with other settings ({stored.get('settings')}); use another "
                             "--out or remove it")
        network.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
        optimizer_from_flat(meta_opt, tensors, stored["optimizer"])
        info = {k: stored[k] for k in info}
        print(f"{method}: resumed after trajectory {info['trajectory']}", flush=True)
    bar = tqdm(range(info["trajectory"], args.trajectories), desc=f"meta-training {method}", disable=args.no_progress,
               initial=info["trajectory"], total=args.trajectories)
    for k in bar:
        start = time.perf_counter()
        problem = sample_problem(args.seed * 1_000_003 + k)
        losses = run_trajectory(network, meta_opt, problem, data, args)
        info["meta_losses"].append({"trajectory": k, "problem": problem.name, "losses": losses})
        info["trajectory"] = k + 1
        info["seconds"] += time.perf_counter() - start
        save_checkpoint(directory, "last", network, info, optimizer=meta_opt)
        bar.set_postfix(problem=problem.name, meta_loss=f"{losses[-1]:.3f}")
    save_network(network, os.path.join(args.out, f"{method}.pt"))
    return network, info


# ------------------------------------------------------------ evaluation
def train_with(make_opt, problem: Problem, data, steps: int, batch_size: int) -> dict:
    """Train ``problem.model`` with ``make_opt(model)`` in a plain loop; the training-set loss every 10 steps, test
    accuracy, and the optimizer's seconds per step."""
    x, y, xt, yt = data
    model = problem.model
    opt = make_opt(model)
    curve, opt_seconds = [], 0.0
    for step in range(steps + 1):
        if step % 10 == 0 or step == steps:
            with torch.no_grad():
                curve.append((step, float(F.cross_entropy(model(x), y))))
        if step == steps:
            break
        xb, yb = problem.batch(x, y, batch_size)
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        start = time.perf_counter()
        opt.step()
        opt_seconds += time.perf_counter() - start
        if not math.isfinite(curve[-1][1]):
            break
    with torch.no_grad():
        accuracy = float((model(xt).argmax(1) == yt).float().mean())
    return {"curve": curve, "final_loss": curve[-1][1], "test_acc": accuracy, "ms_per_step": 1e3 * opt_seconds / steps}


def tune_adam(args, data) -> float:
    """The learning rate of ``--adam-lrs`` with the lowest mean final training loss on ``--tune-problems`` problems
    of the meta-training distribution (seeds apart from meta-training's and evaluation's)."""
    scores = {}
    for lr in args.adam_lrs:
        losses = [train_with(lambda m: torch.optim.Adam(m.parameters(), lr=lr), sample_problem(10_000 + i), data,
                             args.eval_steps, args.batch_size)["final_loss"] for i in range(args.tune_problems)]
        scores[lr] = sum(losses) / len(losses) if all(math.isfinite(v) for v in losses) else math.inf
        print(f"adam lr {lr:g}: mean final training loss {scores[lr]:.4f}", flush=True)
    return min(scores, key=scores.get)


def evaluate(args, data, networks: dict) -> list[dict]:
    adam_lr = tune_adam(args, data)
    makers = {f"adam (lr {adam_lr:g})": lambda m: torch.optim.Adam(m.parameters(), lr=adam_lr)}
    if "mlp" in networks:
        makers["per-parameter mlp"] = lambda m: PerParameterMLPOptimizer(m, network=networks["mlp"])
    if "graph" in networks:
        makers["graph"] = lambda m: LearnedOptimizer(m, network=networks["graph"], example_inputs=(data[0][:2],))
        makers["graph, relabelled each step"] = lambda m: LearnedOptimizer(
            m, network=networks["graph"], example_inputs=(data[0][:2],), relabel=True,
            generator=torch.Generator().manual_seed(args.seed))
    rows = []
    for name in EVAL_FAMILIES:
        for method, make in makers.items():
            problem = sample_problem(20_000 + args.seed, EVAL_FAMILIES, name)  # the same start for every method
            row = {"problem": name, "method": method, **train_with(make, problem, data, args.eval_steps,
                                                                    args.batch_size)}
            rows.append(row)
            print(f"{name:>22} | {method:>28} | final train loss {row['final_loss']:.4f} | test acc "
                  f"{row['test_acc']:.3f} | {row['ms_per_step']:.2f} ms/step", flush=True)
    return rows


def plot_curves(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(1, len(problems), figsize=(4.5 * len(problems), 3.6), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        for r in rows:
            if r["problem"] == problem:
                steps, losses = zip(*r["curve"])
                ax.plot(steps, losses, label=r["method"])
        ax.set(title=problem, xlabel="step", ylabel="training loss", yscale="log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.learned_optimizer", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/learned_optimizer", help="output folder (runs, networks, results)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"networks to meta-train, of {list(METHODS)}")
    p.add_argument("--trajectories", type=int, default=40, help="meta-training trajectories (problems) per network")
    p.add_argument("--truncations", type=int, default=5, help="meta-updates per trajectory")
    p.add_argument("--unroll", type=int, default=10, help="inner steps per truncation (backpropagated through)")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch of the inner problems")
    p.add_argument("--meta-lr", type=float, default=1e-3, help="learning rate of the meta-optimizer (Adam)")
    p.add_argument("--init-lr", type=float, default=3e-3,
                   help="initial step size of the update networks (their untrained step is Adam's at this rate)")
    p.add_argument("--hidden-dim", type=int, default=32, help="node and edge width of the graph network")
    p.add_argument("--num-layers", type=int, default=2, help="message-passing layers of the graph network")
    p.add_argument("--context-dim", type=int, default=8, help="context per entry from the graph network's heads")
    p.add_argument("--output-dim", type=int, default=32, help="width of the per-entry MLP (both networks)")
    p.add_argument("--eval-steps", type=int, default=150, help="steps of every evaluation run")
    p.add_argument("--adam-lrs", type=lambda s: [float(v) for v in s.split(",") if v], default=[1e-3, 3e-3, 1e-2, 3e-2],
                   help="Adam's learning-rate grid")
    p.add_argument("--tune-problems", type=int, default=3, help="problems Adam's learning rate is tuned on")
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
    os.makedirs(args.out, exist_ok=True)
    data = digits()
    networks, training = {}, {}
    for method in methods:
        networks[method], info = meta_train(method, args, data)
        training[method] = {"trajectories": info["trajectory"], "seconds": info["seconds"]}
        print(f"{method}: {info['trajectory']} trajectories meta-trained in {info['seconds']:.0f} s", flush=True)
    rows = evaluate(args, data, networks)
    plot_curves(rows, os.path.join(args.out, "curves.png"))
    atomic_write(os.path.join(args.out, "results.json"),
                 json.dumps({"settings": vars(args), "meta_training": training, "rows": rows}, indent=1).encode())
    print("\n| problem | optimizer | final train loss | test acc | ms / step |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['problem']} | {r['method']} | {r['final_loss']:.4f} | {r['test_acc']:.3f} | "
              f"{r['ms_per_step']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
