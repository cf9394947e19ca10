"""Step overhead of the learned optimizers against Adam, measured in the same process, and where a
:class:`~nngraph.optim.LearnedOptimizer` step spends its time.

For every model (the digits problems of ``tasks.learned_optimizer`` and a wider one) the table gives the median
wall-clock of ``opt.step()`` (the backward pass excluded) of Adam, the per-parameter MLP optimizer and the graph
optimizer (the shipped networks), and the graph optimizer's step over Adam's. A second table profiles the graph
optimizer's hot path with ``torch.profiler`` (the stages are ``record_function`` labels of
:mod:`nngraph.optim`): ``lopt.features`` (flatten the state, momenta, per-tensor normalised features),
``lopt.graph`` (the graph and placement from the layout cache: built on the first step, a lookup after),
``lopt.embed`` (scatter onto the graph, node and kernel embeddings), ``lopt.message_passing``, ``lopt.head``
(per-slot context, gathered back to the entries), ``lopt.output`` (the bounded step), ``lopt.write_back`` (the
step and state written into the parameters).

Usage: ``python -m benchmarks optim [--steps N] [--threads N]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from nngraph.optim import LearnedOptimizer, PerParameterMLPOptimizer

#: The run length the learned optimizers are told (their schedule); the benchmark times a few of its first steps.
RUN_STEPS = 1000
STAGES = ("lopt.features", "lopt.graph", "lopt.embed", "lopt.message_passing", "lopt.head", "lopt.output",
          "lopt.write_back")


class _Rows(nn.Module):
    """An LSTM over the 8 rows of an 8 x 8 image, a linear head on its last state."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.rnn = nn.LSTM(8, width, batch_first=True)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.rnn(x.flatten(1, 2))[0][:, -1])  # (B, 1, 8, 8) -> (B, 8, 8) -> (B, 10)


def _mlp(*widths: int) -> nn.Module:
    layers, last = [nn.Flatten()], 64
    for w in widths:
        layers += [nn.Linear(last, w), nn.ReLU()]
        last = w
    return nn.Sequential(*layers, nn.Linear(last, 10))


MODELS = {
    "mlp-32": lambda: _mlp(32),
    "mlp-128-64-32": lambda: _mlp(128, 64, 32),
    "mlp-256-256": lambda: _mlp(256, 256),
    "cnn-8": lambda: nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)),
    "lstm-16": _Rows,
}


def _stepper(model: nn.Module, opt: torch.optim.Optimizer, x, y):
    """A function doing one forward / backward and returning the seconds of ``opt.step()`` alone."""

    def run() -> float:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        start = time.perf_counter()
        opt.step()
        return time.perf_counter() - start

    return run


def time_steps(name: str, steps: int) -> dict:
    """Median ``opt.step()`` milliseconds of every optimizer on model ``name`` (after 3 warm-up steps)."""
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    makers = {"adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
              "per-parameter mlp": lambda m: PerParameterMLPOptimizer(m, total_steps=RUN_STEPS),
              "graph": lambda m: LearnedOptimizer(m, example_inputs=(x[:2],), total_steps=RUN_STEPS)}
    out = {}
    for method, make in makers.items():
        torch.manual_seed(0)
        model = MODELS[name]()
        run = _stepper(model, make(model), x, y)
        for _ in range(3):
            run()
        out[method] = 1e3 * statistics.median(run() for _ in range(steps))
    out["entries"] = sum(p.numel() for p in model.parameters())
    return out


def profile_stages(name: str, steps: int) -> dict:
    """Milliseconds per step of every stage of :data:`STAGES` of the graph optimizer on model ``name``."""
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = MODELS[name]()
    run = _stepper(model, LearnedOptimizer(model, example_inputs=(x[:2],), total_steps=RUN_STEPS), x, y)
    for _ in range(3):
        run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        total = sum(run() for _ in range(steps))
    times = {e.key: e.cpu_time_total / 1e3 / steps for e in prof.key_averages() if e.key in STAGES}  # us -> ms
    return {"step": 1e3 * total / steps, **{s: times.get(s, 0.0) for s in STAGES}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks optim", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per optimizer and model (default: 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"models, of {list(MODELS)}")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"--models: Could not resolve {unknown} among choices {list(MODELS)}")
    print(f"opt.step() in ms, median of {args.steps} steps, {args.threads} thread(s), the shipped networks\n")
    print("| model | entries | Adam | per-parameter MLP | graph (LearnedOptimizer) | graph / Adam |")
    print("|---|---|---|---|---|---|")
    for name in names:
        t = time_steps(name, args.steps)
        print(f"| {name} | {t['entries']:,} | {t['adam']:.2f} | {t['per-parameter mlp']:.2f} | {t['graph']:.2f} | "
              f"{t['graph'] / t['adam']:.0f}x |", flush=True)
    print("\nLearnedOptimizer.step() profiled (torch.profiler, ms per step, each stage's total CPU time)\n")
    print("| model | step | " + " | ".join(s.removeprefix("lopt.") for s in STAGES) + " |")
    print("|---|---|" + "---|" * len(STAGES))
    for name in names:
        p = profile_stages(name, args.steps)
        print(f"| {name} | {p['step']:.2f} | " + " | ".join(f"{p[s]:.2f}" for s in STAGES) + " |", flush=True)


if __name__ == "__main__":
    main()
