"""INR editing: predict a delta for every weight and bias so that the edited SIREN renders the dilated image.

    python -m tasks.inr_editing --zoo zoos/inr --out runs/inr_editing --epochs 30

The encoder's equivariant node/edge head (``nngraph.NodeEdgeHead``) predicts the deltas; training renders
the edited SIRENs differentiably from the graph features (:class:`~tasks.inr_editing.render.INRRenderer`) and
minimises the MSE to the 3x3 grey dilation of the image. Evaluation applies the deltas with
``nngraph.from_graph`` and renders the real module. Rows (test MSE): the encoder, doing nothing (the
unedited INR), and an MLP on the flattened weights that predicts the flat delta; each with its MSE on the
background and the strokes of the target and the fraction of speckled background pixels (:func:`edit_quality`).

Options: ``--flip`` (sign-flip augmentation), ``--head-scale``, ``--first-layer-gain`` (damp or freeze the
first layer's deltas), ``--render-res`` (training loss on a finer grid), ``--ensemble K`` (output ensembles,
Dayan, Eitan & Maron, ICML 2026: the head predicts ``K`` deltas per parameter and the edited INR is the
pixel-wise mean of the ``K`` edited SIRENs; row ``encoder_kK``; with ``--ensemble-match-params`` the head's
width keeps the encoder's parameter budget, :mod:`tasks.inr_editing.budget`). Measured in ``docs/tasks/inr_editing.md``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

import nngraph
from nngraph.train import TrainConfig, fit, make_loader, seed_everything
from nngraph.zoo import build_model
from nngraph.zoo.inr_meta import INRMetadata

from nngraph.symmetry import sign_flip
from ..common.baselines import flat_weights
from .budget import kernel_boxes, match_head_dim, parameter_counts
from ..common.harness import add_optional_args, add_run_args, add_training_args, run_dir, run_main, start_run, task_parser
from ..common.models import GraphEditor, VectorMLP
from .render import INRRenderer, dilate, render_ensemble, render_module
from ..common.report import plot_edit_grid, row, save_run
from ..common.scaling import GraphScaler
from ..common.splits import load_split

TASK = "inr_editing"
METHODS = ("noop", "encoder", "flat_mlp")



def build_parser(prog: str = "python -m tasks.inr_editing") -> argparse.ArgumentParser:
    p = task_parser(prog, __doc__)
    add_training_args(p, zoo_help="an INR zoo directory", out="runs/inr_editing", methods=METHODS, epochs=30,
                      baseline_epochs=100, batch_size=32, lr=5e-3, weight_decay=0.0, patience=15)  # the reported run's
    p.add_argument("--probes", type=int, default=64, help="probe inputs for the encoder (0: none)")
    p.add_argument("--dilation", type=int, default=3, help="side of the square max filter")
    p.add_argument("--render-res", type=int, default=0,
                   help="side of the grid the training loss renders on (0: the image's); a finer grid "
                        "(2 * side - 1 holds every pixel) compares with the bilinearly upsampled target, so "
                        "oscillation between pixels is penalised. Scoring always uses the image's grid")
    p.add_argument("--head-scale", type=float, default=0.01, help="initial output scale of the delta head")
    p.add_argument("--first-layer-gain", type=float, default=1.0,
                   help="fixed factor on the first layer's (frequency) deltas; 0 freezes that layer")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="sign-flip augmentation of training graphs (encoder)")
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="deltas per parameter: the edited INR is the pixel-wise mean of K edited SIRENs "
                        "(row encoder_kK; 1: a single edited SIREN, row encoder)")
    p.add_argument("--ensemble-match-params", action=argparse.BooleanOptionalAction, default=True,
                   help="with --ensemble K > 1, pick the head's hidden width so that the encoder's parameters "
                        "stay within 5%% of the K = 1 model's at the same --hidden-dim (counting the "
                        "parameters the zoo's kernels reach, see tasks.inr_editing.budget)")
    add_optional_args(p, "max_train", what="INRs")
    add_run_args(p)
    return p


def attach_targets(split, size: int) -> list:
    """Copies of the split's graphs with ``target`` ``(1, C, H, W)``: the dilated image of each INR."""
    out = []
    for i, g in enumerate(split.graphs):
        g = g.clone()
        g.target = dilate(split.dataset.image(i).unsqueeze(0), size)  # (1, C, H, W)
        out.append(g)
    return out


def upsample_target(target: torch.Tensor, resolution: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, R, R)``: bilinear with aligned corners, the grid of ``coordinate_grid(R, R)``.

    With ``R = 2 * H - 1`` every original pixel is a grid point and keeps its value exactly.
    """
    if resolution == target.shape[-1]:
        return target
    return nn.functional.interpolate(target, size=(resolution, resolution), mode="bilinear", align_corners=True)


def rendering_loss(renderer: INRRenderer, fine: INRRenderer | None = None):
    """``loss(x, edge_attr, num_graphs, target, reduction)``: MSE of the rendered SIRENs to ``target``, on
    ``fine``'s grid (against the upsampled target) when given, else on ``renderer``'s. Features ``(k, N, F)``,
    ``(k, W, 1)`` (:func:`tasks.common.models.apply_deltas`) render as the mean of the ``k`` INRs."""
    r = fine if fine is not None else renderer

    def loss(x, edge_attr, num_graphs, target, reduction="mean"):
        # (N, F), (W, 1): one INR per graph; (k, N, F), (k, W, 1): the mean of k (an ensemble edit)
        image = r.ensemble(x, edge_attr, num_graphs) if x.dim() == 3 else r(x, edge_attr, num_graphs)  # (B, C, R, R)
        return nn.functional.mse_loss(image, upsample_target(target, r.resolution), reduction=reduction)

    return loss


def edit_quality(images: torch.Tensor, target: torch.Tensor, dark: float = 0.05, bright: float = 0.15) -> dict:
    """Where the error of edited renders lies; ``images``, ``target``: ``(M, C, H, W)``.

    ``mse_background`` / ``mse_stroke``: MSE on pixels whose dilated target is ``<= dark`` / above it;
    ``speckle``: the fraction of background pixels rendered brighter than ``bright`` (isolated bright
    dots on black, the artefact the render grids show).
    """
    bg = target <= dark  # (M, C, H, W)
    err = (images - target).pow(2)
    return {"mse_background": float(err[bg].mean()), "mse_stroke": float(err[~bg].mean()),
            "speckle": float((images[bg] > bright).float().mean())}


def train_editor(train_graphs, val_graphs, renderer: INRRenderer, scaler: GraphScaler, out_dir: str,
                 hidden_dim=32, num_layers=3, probe_dim=0, epochs=30, batch_size=32, lr=2e-3, weight_decay=0.0,
                 patience=15, seed=0, device="cpu", progress=True, train_renderer: INRRenderer | None = None,
                 init_scale=0.01, depth_gain=None, augment=None, num_outputs=1, head_dim=None):
    """Train a :class:`~tasks.common.models.GraphEditor` on the rendering loss; returns ``(model, FitResult)``.

    ``train_renderer``: renders the training loss (a finer grid); validation (the monitored ``val_loss``)
    always renders with ``renderer``, the grid the task scores on. ``augment``: batch -> batch on
    training batches (e.g. sign flips; the target image does not change). ``num_outputs`` > 1: an
    ensemble editor, scored on the mean render of its members; ``head_dim``: the width of its head.
    """
    seed_everything(seed)
    model = GraphEditor(scaler, hidden_dim, num_layers, probe_dim, init_scale=init_scale, depth_gain=depth_gain,
                        num_outputs=num_outputs, head_dim=head_dim)
    train_loss, val_loss = rendering_loss(renderer, train_renderer), rendering_loss(renderer)

    def batch_mse(m, batch, reduction="mean"):
        if augment is not None:
            batch = augment(batch)
        xs, edge_attrs = m.edit(batch)  # (k, N, 5), (k, W, 1)
        return train_loss(xs, edge_attrs, batch.num_graphs, batch.target, reduction)

    def eval_fn(m, loader):
        total, n = 0.0, 0
        for batch in loader:
            batch = batch.to(device)
            xs, edge_attrs = m.edit(batch)  # (k, N, 5), (k, W, 1)
            total += float(val_loss(xs, edge_attrs, batch.num_graphs, batch.target, "sum"))
            n += batch.target.numel()
        return {"val_loss": total / n}

    config = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         monitor="val_loss", mode="min", patience=patience, seed=seed, device=device,
                         progress=progress,
                         keep_freed_memory=True)  # glibc keeps freed edge tensors for reuse
    settings = {"model": "graph_editor", "hidden_dim": hidden_dim, "num_layers": num_layers, "probe_dim": probe_dim,
                "n_train": len(train_graphs), "init_scale": init_scale,
                "depth_gain": None if depth_gain is None else list(depth_gain),
                "train_resolution": (train_renderer or renderer).resolution,
                "augment": getattr(augment, "__name__", None), "num_outputs": num_outputs,
                "head_dim": model.head.head_dim}
    result = fit(model, train_graphs, val_graphs, batch_mse, eval_fn, config, settings)
    return model, result


@torch.no_grad()
def edit_ensembles(model: GraphEditor, graphs: list, batch_size: int = 64) -> list[list]:
    """The ``k`` edited graphs (``x + dx_j``, ``edge_attr + de_j``) of every input graph: ``[[Data] * k, ...]``."""
    model.eval()
    out = []
    for batch in make_loader(graphs, batch_size):
        xs, edge_attrs = model.edit(batch)  # (k, N, 5), (k, W, 1)
        members = []
        for x, edge_attr in zip(xs, edge_attrs):
            edited = batch.clone()
            edited.x, edited.edge_attr = x, edge_attr
            members.append(edited.to_data_list())
        out += [list(graph_members) for graph_members in zip(*members)]  # k lists of B -> B lists of k
    return out


def edit_graphs(model: GraphEditor, graphs: list, batch_size: int = 64) -> list:
    """The edited graphs (``x + dx``, ``edge_attr + de``), one ``Data`` per input graph (a single-output editor)."""
    if model.num_outputs != 1:
        raise ValueError(f"the editor predicts {model.num_outputs} deltas per parameter: use edit_ensembles")
    return [members[0] for members in edit_ensembles(model, graphs, batch_size)]


def render_edits(model: GraphEditor, graphs: list, template: nn.Module, resolution: int,
                 inr: INRMetadata | None = None) -> tuple[torch.Tensor, list[list[nn.Module]]]:
    """Evaluation: the deltas applied with ``nngraph.from_graph`` to real modules, each ensemble's renders averaged
    (on the grid of the zoo's coordinates ``inr``; default ``[-1, 1]^2`` in ``(x, y)``).

    Returns:
        ``(M, C, H, W)`` images and, per graph, its ``k`` edited modules.
    """
    modules = [[nngraph.from_graph(g, template) for g in members] for members in edit_ensembles(model, graphs)]
    images = torch.stack([render_ensemble(ms, resolution, inr) for ms in modules])  # (M, C, H, W)
    return images, modules


def method_name(k: int) -> str:
    """The results row (and run directory) of the encoder with ``k`` deltas per parameter."""
    return "encoder" if k == 1 else f"encoder_k{k}"


class FlatEditor(nn.Module):
    """Baseline: an MLP on the flattened weights predicting the flattened delta.

    The delta is ``scale * rms * mlp(w)`` with a learnable ``scale`` (initially 0.01) and the per-entry
    RMS of the training weights, mirroring the graph editor's output scaling.
    """

    def __init__(self, flat_train: torch.Tensor, hidden=(256, 256)):
        super().__init__()
        mean, std = flat_train.mean(0), flat_train.std(0) + 1e-6
        self.mlp = VectorMLP(flat_train.shape[1], flat_train.shape[1], hidden, 0.0, mean, std)
        self.register_buffer("rms", flat_train.pow(2).mean(0).sqrt() + 1e-6)
        self.scale = nn.Parameter(torch.tensor(0.01))

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return self.scale * self.rms * self.mlp(flat)  # (B, P)


def train_flat_editor(flat, targets, renderer: INRRenderer, out_dir: str, epochs=100, batch_size=32, lr=1e-3,
                      patience=15, seed=0, progress=False, train_renderer: INRRenderer | None = None):
    """Train :class:`FlatEditor` on the rendering loss. ``flat``/``targets``: dicts of train / val tensors.
    ``train_renderer`` as in :func:`train_editor`."""
    seed_everything(seed)
    model = FlatEditor(flat["train"])
    unflat = renderer.unflat

    def mse(r, m, batch, reduction):
        w, target = batch
        image = r.render_params(unflat(w + m(w)))  # (B, C, R, R)
        return nn.functional.mse_loss(image, upsample_target(target, r.resolution), reduction=reduction)

    def batch_mse(m, batch, reduction="mean"):
        return mse(train_renderer or renderer, m, batch, reduction)

    def eval_fn(m, loader):
        total, n = 0.0, 0
        for w, target in loader:
            total += float(mse(renderer, m, (w, target), "sum"))
            n += target.numel()
        return {"val_loss": total / n}

    pairs = {k: [(flat[k][i], targets[k][i]) for i in range(len(flat[k]))] for k in ("train", "val")}
    config = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, monitor="val_loss", mode="min",
                         patience=patience, seed=seed, progress=progress, weight_decay=0.0,
                         keep_freed_memory=True)  # glibc keeps freed edge tensors for reuse
    result = fit(model, pairs["train"], pairs["val"], batch_mse, eval_fn, config,
                 {"model": "flat_editor", "n_train": len(pairs["train"])})
    return model, result


def editor_budget(args: argparse.Namespace, scaler: GraphScaler, boxes: list) -> dict:
    """The head width of the editor of ``args`` and the parameter counts of it and of the ``k = 1`` editor.

    ``--ensemble K`` with ``--ensemble-match-params``: the width at which the ``K``-output editor's parameters
    (those the zoo's kernel shapes ``boxes`` reach) are closest to the single-output editor's
    (:func:`tasks.inr_editing.budget.match_head_dim`); otherwise the encoder's ``--hidden-dim``.
    """
    with torch.device("meta"):  # counting only: no memory, no random numbers drawn
        reference = GraphEditor(scaler, args.hidden_dim, args.num_layers, args.probes)
        ref = own = parameter_counts(reference, boxes)
        head_dim = args.hidden_dim
        if args.ensemble > 1 and args.ensemble_match_params:
            head_dim, own = match_head_dim(reference, reference.head, args.ensemble, boxes)
        elif args.ensemble > 1:
            own = parameter_counts(GraphEditor(scaler, args.hidden_dim, args.num_layers, args.probes,
                                               num_outputs=args.ensemble), boxes)
    return {"head_dim": head_dim, "params_used": own["used"], "params_total": own["total"],
            "params_used_k1": ref["used"], "params_total_k1": ref["total"]}


def run(args: argparse.Namespace) -> list[dict]:
    """Train and score every method; returns the results rows (and writes results.json, curves, render grid)."""
    if args.ensemble < 1:
        raise ValueError(f"--ensemble must be at least 1, got {args.ensemble}")
    progress = start_run(args, METHODS, "inr", "INR editing")
    splits = {"train": load_split(args.zoo, "train", args.probes, max_items=args.max_train),
              "val": load_split(args.zoo, "val", args.probes), "test": load_split(args.zoo, "test", args.probes)}
    empty = [k for k, s in splits.items() if len(s) == 0]
    if empty:
        raise ValueError(f"INR editing needs INRs in every split; the zoo {args.zoo!r} has none in {empty} "
                         "(an imported zoo: give those splits in its table, or --val-fraction)")
    graphs = {k: attach_targets(s, args.dilation) for k, s in splits.items()}
    targets = {k: torch.cat([g.target for g in gs]) for k, gs in graphs.items()}  # (M, C, H, W)
    spec = splits["train"].entries[0]["spec"]
    template = build_model(spec)
    resolution = targets["train"].shape[-1]
    inr = INRMetadata.of_zoo(splits["train"].dataset.zoo.config)  # where the zoo's INRs read their pixels
    renderer = INRRenderer(template, resolution, inr)
    fine = INRRenderer(template, args.render_res, inr) if args.render_res and args.render_res != resolution else None
    test_models = splits["test"].models
    original = torch.stack([render_module(m, resolution, inr) for m in test_models])  # (M, C, H, W)
    note = f"{len(graphs['train'])} train / {len(test_models)} test INRs; {args.dilation}x{args.dilation} dilation"
    rows, histories = [], {}
    # the rows of the render grids: 6 test INRs spread over the split (consecutive INRs share an image)
    shown = torch.arange(0, len(test_models), max(1, len(test_models) // 6))[:6]
    grid = {"original": original[shown, 0].numpy(), "target (dilated)": targets["test"][shown, 0].numpy()}
    zoom = 4 * resolution  # the fine grid: what the INRs do between the pixels they were fitted on
    fine_grid = {"original": torch.stack([render_module(test_models[i], zoom, inr) for i in shown])[:, 0].numpy(),
                 "target (dilated)": upsample_target(targets["test"][shown], zoom)[:, 0].numpy()}

    if "noop" in args.methods:
        mse = float(nn.functional.mse_loss(original, targets["test"]))
        rows.append(row(TASK, "noop", "test_mse", mse, 0.0, note="the unedited INR; " + note,
                        **edit_quality(original, targets["test"])))

    if "encoder" in args.methods:
        start = time.perf_counter()
        k, name = args.ensemble, method_name(args.ensemble)
        scaler = GraphScaler().fit(graphs["train"])
        gain = None if args.first_layer_gain == 1.0 else [args.first_layer_gain]
        budget = editor_budget(args, scaler, kernel_boxes(graphs["train"]))
        print(f"{name}: head width {budget['head_dim']}; {budget['params_used']} parameters used by the zoo's "
              f"kernels ({budget['params_total']} in all), k = 1: {budget['params_used_k1']} "
              f"({budget['params_total_k1']})", flush=True)
        model, result = train_editor(graphs["train"], graphs["val"], renderer, scaler, run_dir(args.out, name),
                                     args.hidden_dim, args.num_layers, args.probes, args.epochs, args.batch_size,
                                     args.lr, args.weight_decay, args.patience, args.seed, args.device, progress,
                                     train_renderer=fine, init_scale=args.head_scale, depth_gain=gain,
                                     augment=sign_flip if args.flip else None, num_outputs=k,
                                     head_dim=budget["head_dim"])
        images, modules = render_edits(model, graphs["test"], template, resolution, inr)  # the real edited SIRENs
        mse = float(nn.functional.mse_loss(images, targets["test"]))
        histories[name] = result.history
        label = "encoder edit" if k == 1 else f"encoder edit (mean of {k})"
        grid[label] = images[shown, 0].numpy()
        fine_grid[label] = torch.stack([render_ensemble(modules[i], zoom, inr) for i in shown])[:, 0].numpy()
        if k > 1:  # one member on its own: what the mean adds
            grid[f"member 1 of {k}"] = torch.stack([render_module(modules[i][0], resolution, inr)
                                                    for i in shown])[:, 0].numpy()
        what = "NodeEdgeHead deltas" if k == 1 else f"mean render of {k} NodeEdgeHead edits"
        rows.append(row(TASK, name, "test_mse", mse, time.perf_counter() - start,
                        note=f"{what}, applied with from_graph; " + note, k=k, **budget,
                        **edit_quality(images, targets["test"])))
        print(f"{name}: test MSE {mse:.5f}", flush=True)

    if "flat_mlp" in args.methods:
        start = time.perf_counter()
        flat = {k: flat_weights(s.models) for k, s in splits.items()}  # (M, num_params), named_parameters order
        model, result = train_flat_editor(flat, targets, renderer, run_dir(args.out, "flat_mlp"), args.baseline_epochs,
                                          args.batch_size, 1e-3, args.patience, args.seed, progress=False,
                                          train_renderer=fine)
        with torch.no_grad():
            edited_flat = flat["test"] + model.eval()(flat["test"])  # (M, P)
            images = renderer.render_params(renderer.unflat(edited_flat))
            fine_grid["flat-MLP edit"] = INRRenderer(template, zoom, inr).render_params(
                renderer.unflat(edited_flat[shown]))[:, 0].numpy()
        mse = float(nn.functional.mse_loss(images, targets["test"]))
        histories["flat_mlp"] = result.history
        grid["flat-MLP edit"] = images[shown, 0].numpy()
        rows.append(row(TASK, "flat_mlp", "test_mse", mse, time.perf_counter() - start,
                        note="MLP on the weight vector predicting the flat delta; " + note,
                        **edit_quality(images, targets["test"])))

    for r in rows:
        print(f"{r['method']}: test MSE {r['value']:.5f} (background {r['mse_background']:.5f}, stroke "
              f"{r['mse_stroke']:.5f}; speckle {r['speckle']:.4f})", flush=True)
    plot_edit_grid(grid, os.path.join(args.out, "edits.png"))
    plot_edit_grid(fine_grid, os.path.join(args.out, "edits_fine.png"))  # the same INRs on a 4x finer grid
    save_run(rows, histories, ["train_loss", "val_loss"], args.out, "INR editing", seed=args.seed)
    return rows


def main(argv=None, prog: str | None = None) -> int:
    return run_main(run, build_parser, argv, prog)


if __name__ == "__main__":
    sys.exit(main())
