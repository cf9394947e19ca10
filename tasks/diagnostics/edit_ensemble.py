"""What an output ensemble of edited INRs buys beyond its own mean delta.

    python -m tasks.diagnostics.edit_ensemble runs/edit_k/k8_seed0 --zoo zoos/inr

For a finished ``--ensemble K`` run of ``tasks.inr_editing``, on the zoo's test INRs: the test MSE of the
ensemble (the pixel-wise mean of the ``K`` edited SIRENs, as the task scores it), of **one** SIREN edited by the
members' mean delta, and of each member alone; and how far the deltas reach (RMS of the mean delta and of the
members' spread around it, relative to the RMS of the weights).

Why it matters: near the unedited weights a SIREN is close to linear in its weights, so the mean of ``K``
renders equals the render of the mean delta up to second-order terms. The ensemble can draw what one SIREN
cannot only where its members move apart far enough for the curvature to count; if the mean-delta SIREN is
almost as good as the ensemble, the ensemble works as an averaging regulariser, not as a more expressive INR.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

import nngraph
from nngraph.train.checkpoint import load_checkpoint, model_state
from nngraph.zoo import build_model
from nngraph.zoo.inr_meta import INRMetadata

from ..inr_editing.task import attach_targets, edit_ensembles
from ..inr_editing.render import render_ensemble, render_module
from ..common.splits import load_split

__all__ = ["ensemble_diagnostics"]


def _load_editor(run: str) -> tuple[nn.Module, dict, str]:
    from ..pretrained import build_predictor

    runs = os.path.join(run, "runs")
    names = sorted(d for d in os.listdir(runs) if d.startswith("encoder_k"))
    if not names:
        raise ValueError(f"{run}: no encoder_kK run in {runs} (an --ensemble K > 1 run of tasks.inr_editing)")
    found = load_checkpoint(os.path.join(runs, names[0]), "best")  # checksummed; plain tensors, nothing unpickled
    if found is None:
        raise FileNotFoundError(f"{os.path.join(runs, names[0])}: no best checkpoint (the run has not finished)")
    tensors, info = found
    settings, state = info["settings"], model_state(tensors)
    model = build_predictor(settings, state)
    model.load_state_dict(state)
    return model.eval(), settings, names[0]


@torch.no_grad()
def ensemble_diagnostics(run: str, zoo: str, dilation: int = 3, max_items: int | None = None) -> dict:
    """The diagnostics of the module docstring for the run directory ``run`` on ``zoo``'s test split."""
    model, settings, name = _load_editor(run)
    split = load_split(zoo, "test", settings["probe_dim"], max_items=max_items)
    graphs = attach_targets(split, dilation)
    target = torch.cat([g.target for g in graphs])  # (M, C, H, W)
    inr = INRMetadata.of_zoo(split.dataset.zoo.config)
    template = build_model(split.entries[0]["spec"])
    resolution = target.shape[-1]
    members = edit_ensembles(model, graphs)  # M lists of k edited graphs
    k = len(members[0])
    ensemble, mean_delta, single = [], [], []
    delta_rms, spread_rms, weight_rms = [], [], []
    for graph, edited in zip(graphs, members):
        modules = [nngraph.from_graph(g, template) for g in edited]
        ensemble.append(render_ensemble(modules, resolution, inr))
        edges = torch.stack([g.edge_attr for g in edited])  # (k, W, 1)
        nodes = torch.stack([g.x for g in edited])  # (k, N, 5)
        averaged = graph.clone()
        averaged.edge_attr, averaged.x = edges.mean(0), nodes.mean(0)
        mean_delta.append(render_module(nngraph.from_graph(averaged, template), resolution, inr))
        single.append(torch.stack([render_module(m, resolution, inr) for m in modules]))  # (k, C, H, W)
        delta = edges - graph.edge_attr  # (k, W, 1)
        delta_rms.append(delta.mean(0).square().mean().sqrt())
        spread_rms.append((delta - delta.mean(0)).square().mean().sqrt())
        weight_rms.append(graph.edge_attr.square().mean().sqrt())
    ensemble, mean_delta, single = torch.stack(ensemble), torch.stack(mean_delta), torch.stack(single)
    mse = lambda images: float(nn.functional.mse_loss(images, target))  # noqa: E731
    member_mse = [mse(single[:, j]) for j in range(k)]
    w = torch.stack(weight_rms)
    return {"run": run, "method": name, "k": k, "test_models": len(graphs),
            "mse_ensemble": mse(ensemble), "mse_mean_delta": mse(mean_delta),
            "mse_member_mean": sum(member_mse) / k, "mse_member_best": min(member_mse),
            "relative_delta_rms": float((torch.stack(delta_rms) / w).mean()),
            "relative_spread_rms": float((torch.stack(spread_rms) / w).mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tasks.diagnostics.edit_ensemble", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="output directories of tasks.inr_editing --ensemble K runs")
    p.add_argument("--zoo", required=True, help="the INR zoo the runs were trained on")
    p.add_argument("--dilation", type=int, default=3)
    p.add_argument("--max-items", type=int, default=None, help="the first N test INRs only")
    args = p.parse_args(argv)
    print("| run | k | ensemble MSE | one SIREN, mean delta | member (mean / best) | delta / weights (RMS) | "
          "members' spread / weights |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        d = ensemble_diagnostics(run, args.zoo, args.dilation, args.max_items)
        print(f"| {run} | {d['k']} | {d['mse_ensemble']:.5f} | {d['mse_mean_delta']:.5f} | "
              f"{d['mse_member_mean']:.5f} / {d['mse_member_best']:.5f} | {d['relative_delta_rms']:.3f} | "
              f"{d['relative_spread_rms']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
