"""``nngraph.symmetry.align`` against the ``rebasin`` package (weight matching, Git Re-Basin), in one process.

Per model of ``tasks.merging`` (a 512-wide MLP, a 32-channel ResNet and a 64-wide ViT on the digits; a 64-wide
Hugging Face GPT-2 on digit reversal), two models trained apart from seeds 0 and 1: the time of each tool's
alignment, how many of the model's parameter tensors it changed, whether the aligned model computes what it did
(largest output difference, float32), and the test-loss barrier on the path to the reference (BatchNorm
statistics recomputed on training batches at every point, for both tools). ``rebasin`` is optional: without it the
benchmark says so and measures nngraph alone (``pip install rebasin torchview graphviz``).

Usage: ``python -m benchmarks rebasin [--epochs 5] [--models mlp,resnet,transformer,gpt2]``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nngraph import symmetry  # noqa: E402

WIDTHS = {"mlp": 512, "resnet": 32, "transformer": 64, "gpt2": 64}


def _pair(name: str, epochs: int):
    """``(a, b, example inputs, loss_fn, norm batches)`` for two models of ``name`` trained from seeds 0 and 1."""
    from tasks.merging import sequences
    from tasks.merging.task import build, digits, evaluate, train

    models = []
    if name == "gpt2":
        data, test = sequences.reversal(8000, seed=100), sequences.reversal(1000, seed=200)  # (n, 13)
        for seed in (0, 1):
            torch.manual_seed(seed)
            models.append(sequences.train(sequences.tiny_gpt2(WIDTHS[name]), data, seed, epochs))
        return (*models, data[:64, :-1], lambda m: sequences.evaluate(m, test)[0], None)
    x, y, xt, yt = digits()
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(train(build(name, WIDTHS[name]), x, y, seed, epochs))
    norms = [x[i:i + 256] for i in range(0, len(x), 256)] if name == "resnet" else None
    return (*models, x[:64], lambda m: evaluate(m, xt, yt)[0], norms)


def _outputs(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model.eval()(inputs)
    return out.logits if hasattr(out, "logits") else out


def _rebasin(a, b, inputs):
    """``b`` aligned to ``a`` by rebasin's ``PermutationCoordinateDescent``, or the error it raised."""
    from rebasin import PermutationCoordinateDescent

    b = copy.deepcopy(b)
    PermutationCoordinateDescent(a, b, inputs).rebasin()
    return b


def measure(name: str, epochs: int, have_rebasin: bool) -> list[dict]:
    a, b, inputs, loss, norms = _pair(name, epochs)
    tools = {"nngraph": lambda: symmetry.align(a, b, (inputs[:2],))}
    if have_rebasin:
        tools["rebasin"] = lambda: _rebasin(a, b, inputs)
    naive = symmetry.interpolation_barrier(a, b, loss, 11, norms)["barrier"]
    rows = []
    for tool, run in tools.items():
        start = time.perf_counter()
        try:
            aligned = run()
        except Exception as err:  # rebasin's tracing refuses some models: say how
            rows.append({"model": name, "tool": tool, "error": f"refused: {type(err).__name__}: {str(err)[:80]}"})
            continue
        seconds = time.perf_counter() - start
        before, after = b.state_dict(), aligned.state_dict()
        changed = sum(before[k].shape != after[k].shape or not torch.equal(before[k], after[k]) for k in before)
        try:
            error = float((_outputs(aligned, inputs) - _outputs(b, inputs)).abs().max())
        except RuntimeError as err:  # an aligned model that no longer runs (rebasin reshaped a weight)
            rows.append({"model": name, "tool": tool, "error": f"its model fails: {str(err)[:80]}"})
            continue
        rows.append({"model": name, "tool": tool, "seconds": seconds, "changed": f"{changed}/{len(before)}",
                     "output_error": error, "naive": naive,
                     "aligned": symmetry.interpolation_barrier(a, aligned, loss, 11, norms)["barrier"]})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks rebasin", description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=5, help="training epochs per model (default: 5)")
    p.add_argument("--models", default=",".join(WIDTHS), help=f"comma-separated, of {list(WIDTHS)} (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        import rebasin  # noqa: F401

        have_rebasin = True
    except ImportError:
        have_rebasin = False
        print("rebasin is not installed (pip install rebasin torchview graphviz): nngraph alone\n")
    print("| model | tool | align (s) | tensors changed | output change | barrier naive | barrier aligned |\n"
          "|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for r in measure(name, args.epochs, have_rebasin):
            if "error" in r:
                print(f"| {name} | {r['tool']} | {r['error']} | | | | |", flush=True)
            else:
                print(f"| {name} | {r['tool']} | {r['seconds']:.2f} | {r['changed']} | {r['output_error']:.1e} | "
                      f"{r['naive']:.3f} | {r['aligned']:.3f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
