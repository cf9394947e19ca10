"""How far a learned optimizer moves each tensor, against Adam's direction, over a run of a learned-optimizer problem.

    python -m tasks.diagnostics.optimizer_steps --problems gru-32,lstm-16            # the shipped network
    python -m tasks.diagnostics.optimizer_steps --problems gru-32 --adam-on weight_hh --seeds 0,1,2

Trains each problem of ``tasks.learned_optimizer`` (``IN_DISTRIBUTION`` and ``UNSEEN``, evaluation seeds as the
task's) with :class:`~nngraph.optim.LearnedOptimizer` told the run's length, and prints, per tensor, its
**effective step size** at a few steps: ``mean |step| / mean |a|`` over the tensor's entries, with ``a`` Adam's
direction (the step's base, :class:`~nngraph.optim.StepOutput`), so that Adam at learning rate ``lr`` reads ``lr``.
``--adam-on NAME`` replaces the network's step on every tensor whose name contains ``NAME`` by Adam's direction at
the network's learned rate (``-lr a``) and prints the final training loss beside the unmodified run's: whether the
network's steps on those tensors are what holds the problem back. ``--lr-scales 0.5,2`` multiplies the network's
whole step by each factor (is the learned rate the limit?; ``--scale-steps 0:30`` only on those steps of the run), ``--adam-lrs 0.01,0.03,0.1`` prints Adam's final loss at
each rate on the same problems (Adam's best rate on this problem against the distribution's), and ``--split
validation`` runs the task's validation problems instead of its evaluation problems.
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from nngraph.optim import LearnedOptimizer

from ..learned_optimizer.task import IN_DISTRIBUTION, UNSEEN, digits, evaluation_problem

__all__ = ["run_steps", "main"]


def _start(problem: str, seed: int, split: str):
    """``(run, x, y)``: the task's ``problem`` at ``seed`` of ``split`` (its model, initialisation and batch order)
    and the digits' training images ``x`` ``(N, 1, 8, 8)`` and labels ``y`` ``(N,)``."""
    families = {**IN_DISTRIBUTION, **UNSEEN}
    if problem not in families:
        raise ValueError(f"Could not resolve problem {problem!r} among choices {sorted(families)}")
    x, y, _, _ = digits()
    return evaluation_problem(problem, families[problem], seed, split), x, y


def _train(run, opt, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """``steps`` steps of ``opt`` on ``run``'s model in its batch order (64 a batch); the training loss on all of
    ``x`` after them."""
    for _ in range(steps):
        xb, yb = run.batch(x, y, 64)
        opt.zero_grad()
        F.cross_entropy(run.model(xb), yb).backward()
        opt.step()
    with torch.no_grad():
        return float(F.cross_entropy(run.model(x), y))


def run_steps(problem: str, seed: int = 0, steps: int = 150, checkpoint: str | None = None,
              adam_on: str | None = None, lr_scale: float = 1.0, split: str = "evaluation",
              scale_steps: tuple[int, int] | None = None) -> dict:
    """Train ``problem`` (evaluation seed ``seed``) for ``steps`` steps with the network of ``checkpoint`` (the
    shipped one if ``None``); ``{"names", "effective": (steps, T) tensor, "loss"}``: every tensor's effective step
    size at every step and the final training loss on the whole training set. With ``adam_on``, the tensors whose
    name contains it take Adam's step at the learned rate instead of the network's; every step (of the steps
    ``scale_steps = (first, stop)`` of the run if given) is then multiplied by ``lr_scale``. ``split``: the
    task's ``evaluation`` or ``validation`` problems."""
    run, x, y = _start(problem, seed, split)
    model = run.model
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    replace = torch.tensor([adam_on is not None and adam_on in n for n in names])  # (T,)
    opt = LearnedOptimizer(model, checkpoint, example_inputs=(x[:2],), total_steps=steps)
    output = opt.network.output
    effective = []

    def hook(module, inputs, step):  # step (P,) of StepOutput.forward(features, segments, ...)
        features, segments = inputs[0], inputs[1]
        adam = features[:, output.base]  # (P,): Adam's direction
        ids = segments.ids.to(adam.device)
        if replace.any():
            step = torch.where(replace[ids], -output.log_lr.exp() * adam, step)  # (P,)
        t = len(effective)  # the step of the run being taken
        if scale_steps is None or scale_steps[0] <= t < scale_steps[1]:
            step = lr_scale * step  # (P,)
        sums = torch.zeros(2, len(segments.sizes), dtype=adam.dtype)  # (2, T)
        sums[0].index_add_(0, ids, step.detach().abs())
        sums[1].index_add_(0, ids, adam.abs())
        effective.append(sums[0] / sums[1].clamp_min(1e-30))  # (T,): of the step taken
        return step

    handle = output.register_forward_hook(hook)
    try:
        loss = _train(run, opt, x, y, steps)
    finally:
        handle.remove()
    return {"names": names, "effective": torch.stack(effective), "loss": loss}  # effective: (steps, T)


def adam_loss(problem: str, lr: float, seed: int = 0, steps: int = 150, split: str = "evaluation") -> float:
    """The training loss on the whole training set after ``steps`` steps of Adam at ``lr`` on ``problem`` (the same
    start and batches as :func:`run_steps`)."""
    run, x, y = _start(problem, seed, split)
    return _train(run, torch.optim.Adam(run.model.parameters(), lr=lr), x, y, steps)


def _losses(label: str, losses: list[float]) -> str:
    return f"{label}: {statistics.fmean(losses):.4f} {[round(v, 4) for v in losses]}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tasks.diagnostics.optimizer_steps", description=__doc__.split("\n")[0])
    p.add_argument("--problems", default="gru-32,lstm-16,transformer-16", help="problems of tasks.learned_optimizer")
    p.add_argument("--checkpoint", default=None, help="a network file (default: the shipped graph network)")
    p.add_argument("--steps", type=int, default=150, help="the run's length (the network is told it)")
    p.add_argument("--at", default="0,50,149", help="steps whose effective step sizes are printed")
    p.add_argument("--seeds", default="0", help="evaluation seeds (the effective steps are printed for the first)")
    p.add_argument("--adam-on", default=None, help="tensors (name contains this) that take Adam's step instead")
    p.add_argument("--lr-scales", default="", help="factors on the network's whole step (e.g. 0.5,2)")
    p.add_argument("--scale-steps", default="", help="FIRST:STOP, the steps --lr-scales applies to (default: all)")
    p.add_argument("--adam-lrs", default="", help="Adam's learning rates to run on the same problems (e.g. 0.01,0.1)")
    p.add_argument("--split", default="evaluation", choices=["evaluation", "validation"],
                   help="the task's evaluation problems or its validation problems (other seeds)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    at = [int(v) for v in args.at.split(",") if v]
    seeds = [int(v) for v in args.seeds.split(",") if v]
    window = tuple(int(v) for v in args.scale_steps.split(":")) if args.scale_steps else None
    for problem in [v for v in args.problems.split(",") if v]:
        runs = [run_steps(problem, s, args.steps, args.checkpoint, split=args.split) for s in seeds]
        first = runs[0]
        print(f"{problem}: effective step size at steps {at} (seed {seeds[0]}; mean over tensors "
              + " / ".join(f"{float(first['effective'][t].mean()):.4f}" for t in at) + ")")
        for j, name in enumerate(first["names"]):
            print(f"  {name:<36} " + " / ".join(f"{float(first['effective'][t, j]):.4f}" for t in at))
        line = f"  training loss at {args.steps}: " + _losses("network", [r["loss"] for r in runs])
        if args.adam_on:
            swapped = [run_steps(problem, s, args.steps, args.checkpoint, args.adam_on, split=args.split)["loss"]
                       for s in seeds]
            line += "; " + _losses(f"with Adam's step on '{args.adam_on}'", swapped)
        for scale in [float(v) for v in args.lr_scales.split(",") if v]:
            scaled = [run_steps(problem, s, args.steps, args.checkpoint, lr_scale=scale, split=args.split,
                                scale_steps=window)["loss"] for s in seeds]
            line += "; " + _losses(f"step x {scale:g}" + (f" on steps {args.scale_steps}" if window else ""), scaled)
        for lr in [float(v) for v in args.adam_lrs.split(",") if v]:
            line += "; " + _losses(f"Adam lr {lr:g}", [adam_loss(problem, lr, s, args.steps, args.split) for s in seeds])
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
