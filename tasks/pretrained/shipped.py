"""Checkpoints shipped with the tasks: trained by the full-run commands, evaluated by the demo.

    python -m tasks.pretrained list
    python -m tasks.pretrained evaluate inr_classification.encoder_probe_flip --zoo runs/demo/zoo-inr
    python -m tasks.pretrained export --command "python -m tasks.inr_classification --zoo zoos/inr ..." \\
        --method encoder_probe_flip        # copies the best checkpoint of that run into tasks/pretrained/checkpoints/

Checkpoint ``<task>.<method>`` is two files in ``tasks/pretrained/checkpoints/``: ``.safetensors`` (the model's state
dict) and ``.json``: the task and method, the command of the full run and how long it took, the metrics the
model reached on the full zoo's test split, the run's settings (which rebuild the model), the task's
arguments (which rebuild its inputs: probes, positional features, dilation), the settings of the zoo it was
trained on, and the sha256 of the tensors. :func:`evaluate` refuses a zoo whose test models the checkpoint may
have seen in training (:func:`check_unseen`).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shlex
import sys
import time
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

import nngraph
from nngraph.io import atomic_write
from nngraph.train.checkpoint import load_checkpoint, model_state
from nngraph.zoo import Zoo, build_model
from nngraph.zoo.inr_meta import INRMetadata

from ..common.graph_training import predict_graphs
from ..common.features import add_positional_features
from ..common.scaling import GraphScaler
from ..common.splits import load_split
from ..common.metrics import kendall_tau, r2
from ..common.models import GraphEditor, GraphPredictor
from ..common.robust import RobustGraphScaler, finite_only

__all__ = ["CHECKPOINT_DIR", "available", "read_meta", "build_predictor", "load", "evaluate", "export",
           "check_unseen"]

#: Where the shipped checkpoints live (package data of ``tasks``).
CHECKPOINT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")

#: The metric each task's checkpoints are scored with, and whether larger is better.
METRICS = {"inr_classification": "test_acc", "accuracy_prediction": "kendall_tau[test]", "inr_editing": "test_mse"}


def available(directory: str | None = None) -> list[str]:
    """Names (``<task>.<method>``) of the checkpoints in ``directory``, sorted."""
    directory = directory or CHECKPOINT_DIR
    if not os.path.isdir(directory):
        return []
    return sorted(f[: -len(".json")] for f in os.listdir(directory)
                  if f.endswith(".json") and os.path.exists(os.path.join(directory, f[:-5] + ".safetensors")))


def _paths(name: str, directory: str) -> tuple[str, str]:
    if "/" in name or os.sep in name or name.startswith("."):
        raise ValueError(f"checkpoint name {name!r} must be <task>.<method>, not a path")
    base = os.path.join(directory or CHECKPOINT_DIR, name)
    return base + ".safetensors", base + ".json"


def read_meta(name: str, directory: str | None = None) -> dict[str, Any]:
    """The JSON record of checkpoint ``name``.

    Raises:
        FileNotFoundError: naming the checkpoints there are, if ``name`` is not one of them.
    """
    tensors_path, meta_path = _paths(name, directory)
    if not os.path.exists(meta_path) or not os.path.exists(tensors_path):
        raise FileNotFoundError(f"no checkpoint {name!r} in {directory or CHECKPOINT_DIR}; there are: "
                                f"{available(directory)}")
    with open(meta_path, encoding="utf-8") as f:
        return json.load(f)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_predictor(settings: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    """An untrained model of the architecture ``settings`` describe (the ``settings`` of its run)."""
    kind = settings["model"]
    if kind == "graph_predictor":
        scaler = RobustGraphScaler() if settings.get("scaler") == "robust" else GraphScaler()
        return GraphPredictor(scaler, settings["out_dim"], settings["hidden_dim"], settings["num_layers"],
                              settings["probe_dim"], settings.get("dropout", 0.0), tuple(settings["kernel_box"]))
    if kind == "graph_editor":
        return GraphEditor(GraphScaler(), settings["hidden_dim"], settings["num_layers"], settings["probe_dim"],
                           init_scale=settings["init_scale"], depth_gain=settings.get("depth_gain"),
                           num_outputs=settings.get("num_outputs", 1), head_dim=settings.get("head_dim"))
    if kind == "flat_editor":
        from ..inr_editing.task import FlatEditor

        width = state["mlp.mean"].shape[0]
        hidden = tuple(state[k].shape[0] for k in sorted(state) if k.startswith("mlp.net.") and k.endswith(".bias"))
        return FlatEditor(torch.zeros(2, width), hidden=hidden[:-1])
    raise ValueError(f"Could not resolve model kind {kind!r} among choices ['graph_predictor', 'graph_editor', "
                     "'flat_editor']")


def load(name: str, directory: str | None = None, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The shipped model ``name`` in eval mode, and its JSON record.

    Raises:
        ValueError: if the tensors' sha256 is not the one recorded (a damaged or replaced file).
    """
    meta = read_meta(name, directory)
    tensors_path, _ = _paths(name, directory)
    with open(tensors_path, "rb") as f:
        data = f.read()
    if _sha256(data) != meta["sha256"]:
        raise ValueError(f"{tensors_path}: sha256 {_sha256(data)} is not the recorded {meta['sha256']}; the file "
                         "is damaged or replaced")
    state = load_tensors(data)  # plain tensors: nothing is unpickled
    model = build_predictor(meta["settings"], state)
    model.load_state_dict(state)  # strict; older formats' embedding tables grow (nngraph.gnn.compat)
    return model.to(device).eval(), meta


def _task_args(command: str) -> tuple[str, argparse.Namespace]:
    """The task module and parsed arguments of ``python -m tasks.<task> ...``."""
    words = shlex.split(command)
    if "-m" not in words:
        raise ValueError(f"the command {command!r} is not 'python -m tasks.<task> ...'")
    module = words[words.index("-m") + 1]
    task = module.rsplit(".", 1)[-1]
    if task not in METRICS:
        raise ValueError(f"Could not resolve task {task!r} among choices {sorted(METRICS)}")
    root = __package__.rpartition(".")[0]  # the tasks package: ``tasks`` in a checkout, ``nngraph_tasks`` installed
    parser = importlib.import_module(f"{root}.{task}").build_parser()
    return task, parser.parse_args(words[words.index("-m") + 2:])


def export(command: str, method: str, run: str | None = None, seconds: float | None = None,
           directory: str | None = None, zoo: str | None = None) -> str:
    """Copy the best checkpoint of ``method`` from the finished run of ``command`` into ``directory``.

    Args:
        command: the full run's command line (``python -m tasks.<task> --zoo ... --out ...``).
        method: one of the task's trained methods.
        run: the run's ``--out`` directory, if it moved since (default: the command's).
        seconds: wall time of the whole command (default: the method's training seconds in ``results.json``).
        zoo: the zoo the run trained on, if it is not where the command says (the command is recorded as
            given, e.g. with the portable ``--zoo zoos/inr``).

    Returns:
        The checkpoint's name, ``<task>.<method>``.
    """
    task, args = _task_args(command)
    run = run or args.out
    found = load_checkpoint(os.path.join(run, "runs", method), "best")
    if found is None:
        raise FileNotFoundError(f"{run}/runs/{method} holds no best checkpoint; run the command first")
    tensors, info = found
    with open(os.path.join(run, "results.json"), encoding="utf-8") as f:
        rows = [r for r in json.load(f) if r["method"] == method]
    if not rows:
        raise ValueError(f"{run}/results.json has no rows of {method!r}")
    state = {k: v.contiguous() for k, v in model_state(tensors).items()}
    data = save_tensors(state)
    meta = {
        "name": f"{task}.{method}", "task": task, "method": method, "command": command,
        "seconds": seconds if seconds is not None else next((r["seconds"] for r in rows if r.get("seconds")), None),
        "metrics": {r["metric"]: r["value"] for r in rows}, "best_epoch": info.get("epoch"),
        "settings": info["settings"], "args": {k: v for k, v in vars(args).items()},
        "trained_on": Zoo(zoo or args.zoo).config,
        "format": {"num_node_kinds": nngraph.schema.NUM_NODE_KINDS, "num_edge_types": nngraph.schema.NUM_EDGE_TYPES,
                   "num_activations": nngraph.schema.NUM_ACTIVATIONS},
        "nngraph": nngraph.__version__, "sha256": _sha256(data),
    }
    os.makedirs(directory or CHECKPOINT_DIR, exist_ok=True)
    tensors_path, meta_path = _paths(meta["name"], directory)
    atomic_write(tensors_path, data)
    atomic_write(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return meta["name"]


#: zoo.json settings that must agree for an INR zoo's images (and so its splits) to be those of another.
_IMAGE_KEYS = ("kind", "source", "resolution", "split", "seed", "data_fingerprint")


def check_unseen(trained_on: dict[str, Any], zoo_config: dict[str, Any]) -> str:
    """Why the test split of a zoo with ``zoo_config`` holds nothing a model trained on ``trained_on`` saw;
    raises ``ValueError`` if that cannot be shown.

    INR zoos: the test images must be test images of the training zoo (same source, resolution, split
    fractions and seed, and either all images or ``split_scope="source"``). Classifier zoos: another seed
    (no run in common), or the very same settings (the splits are by run)."""
    if trained_on.get("kind") != zoo_config.get("kind"):
        raise ValueError(f"the checkpoint was trained on a {trained_on.get('kind')} zoo, this is a "
                         f"{zoo_config.get('kind')} zoo")
    if zoo_config == trained_on:
        return "the test split of the checkpoint's own zoo"
    if zoo_config["kind"] == "inr":
        same = {k: zoo_config.get(k) == trained_on.get(k) for k in _IMAGE_KEYS if k != "data_fingerprint"}

        def source_splits(config):  # the zoo's splits are those of the zoo of every image
            return config.get("max_images") is None or config.get("split_scope") == "source"

        if not all(same.values()) or not source_splits(trained_on) or not source_splits(zoo_config):
            differ = sorted(k for k, v in same.items() if not v)
            raise ValueError("this zoo's test images may be training images of the checkpoint (differing: "
                             f"{differ or 'none'}; splits drawn over every image: training zoo "
                             f"{source_splits(trained_on)}, this zoo {source_splits(zoo_config)}); build it with "
                             "the training zoo's source, resolution, split and seed, and split_scope='source' "
                             "if max_images is set")
        return "test images of the checkpoint's own test split (split by image, drawn over every image)"
    if zoo_config.get("seed") != trained_on.get("seed"):
        return f"classifier runs of seed {zoo_config.get('seed')}; the checkpoint was trained on seed {trained_on.get('seed')}"
    raise ValueError("this classifier zoo has the training zoo's seed but other settings: its runs overlap the "
                     "checkpoint's training runs in other splits; build it with another --seed")


def evaluate(name: str, zoo: str, split: str = "test", directory: str | None = None) -> dict[str, Any]:
    """Score checkpoint ``name`` on ``split`` of ``zoo`` as its task scores the method.

    Returns:
        ``{"metric", "value", "n", "seconds", "unseen", "meta", ...}`` plus per-task extras: ``pred`` and
        ``true`` (classification, accuracy prediction), ``families``, ``images``, ``targets`` and ``originals``
        ``(M, C, H, W)`` (editing: the edited renders, the dilated digits, the unedited renders), and the
        editing quality measures.
    """
    start = time.perf_counter()
    model, meta = load(name, directory)
    zoo_config = Zoo(zoo).config
    unseen = check_unseen(meta["trained_on"], zoo_config)
    args = argparse.Namespace(**meta["args"])
    task, method = meta["task"], meta["method"]
    out: dict[str, Any] = {"metric": METRICS[task], "unseen": unseen, "meta": meta}
    if task == "inr_classification":
        data = load_split(zoo, split, args.probes if method != "encoder" else 0, probe_placement=args.probe_placement)
        graphs = data.graphs
        if method == "encoder_broken":
            graphs = add_positional_features(graphs, args.positional_dim, args.seed)
        pred = predict_graphs(model, graphs, "classification").argmax(-1)
        true = torch.tensor([e["label"] for e in data.entries])
        out.update(value=float((pred == true).float().mean()), pred=pred.numpy(), true=true.numpy())
    elif task == "accuracy_prediction":
        data, _ = finite_only(load_split(zoo, split))
        settings = meta["settings"]
        pred = predict_graphs(model, data.graphs, "regression").numpy() * settings["target_std"] + settings["target_mean"]
        true = np.array([e["test_acc"] for e in data.entries], dtype=float)
        out.update(value=kendall_tau(true, pred), r2=r2(true, pred), pred=pred, true=true,
                   families=[e["family"] for e in data.entries])
    else:
        out.update(_evaluate_editing(model, meta, args, zoo, split))
    out.update(n=len(out["true"]) if "true" in out else len(out["images"]), seconds=time.perf_counter() - start)
    return out


def _evaluate_editing(model: nn.Module, meta: dict, args, zoo: str, split: str) -> dict[str, Any]:
    from ..inr_editing.task import attach_targets, edit_quality, render_edits
    from ..inr_editing.render import render_module

    graph_editor = meta["settings"]["model"] == "graph_editor"  # the encoder, with k >= 1 deltas per parameter
    probes = args.probes if graph_editor else 0
    data = load_split(zoo, split, probes)
    graphs = attach_targets(data, args.dilation)
    targets = torch.cat([g.target for g in graphs])  # (M, C, H, W)
    resolution = targets.shape[-1]
    template = build_model(data.entries[0]["spec"])
    inr = INRMetadata.of_zoo(data.dataset.zoo.config)  # where the zoo's INRs read their pixels
    if graph_editor:
        images, _ = render_edits(model, graphs, template, resolution, inr)  # (M, C, H, W): mean over each ensemble
    else:  # the flat-delta MLP: parameters in named_parameters order, as it was trained
        flat = torch.stack([nn.utils.parameters_to_vector(m.parameters()).detach() for m in data.models])  # (M, P)
        with torch.no_grad():
            edited = flat + model(flat)  # (M, P)
        modules = []
        for row in edited:
            m = build_model(data.entries[0]["spec"])
            nn.utils.vector_to_parameters(row, m.parameters())
            modules.append(m)
        images = torch.stack([render_module(m, resolution, inr) for m in modules])  # (M, C, H, W)
    originals = torch.stack([render_module(m, resolution, inr) for m in data.models])  # (M, C, H, W), unedited
    return {"value": float(nn.functional.mse_loss(images, targets)), "images": images, "targets": targets,
            "originals": originals, **edit_quality(images, targets)}


def build_parser(prog: str = "python -m tasks.pretrained") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped checkpoints with the metrics of their full runs")
    q = sub.add_parser("evaluate", help="score a checkpoint on a zoo's split")
    q.add_argument("name", help="<task>.<method> (see list)")
    q.add_argument("--zoo", required=True)
    q.add_argument("--split", default="test")
    q = sub.add_parser("export", help="copy the best checkpoint of a finished full run into tasks/pretrained/checkpoints")
    q.add_argument("--command", required=True, dest="run_command", help="the full run's command line")
    q.add_argument("--method", required=True)
    q.add_argument("--run", default=None, help="the run's --out directory if it moved")
    q.add_argument("--seconds", type=float, default=None, help="wall time of the whole command")
    q.add_argument("--zoo", default=None, help="the zoo the run trained on, if not the command's --zoo")
    q.add_argument("--dir", default=None, help="where checkpoints go (default: tasks/pretrained/checkpoints)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for name in available():
            meta = read_meta(name)
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in meta["metrics"].items() if k == METRICS[meta["task"]])
            print(f"{name}: {metrics} (full run: {meta['command']}; {meta['seconds'] or 0:.0f} s)")
    elif args.command == "evaluate":
        result = evaluate(args.name, args.zoo, args.split)
        print(f"{args.name}: {result['metric']} {result['value']:.4f} on {result['n']} {args.split} models of "
              f"{args.zoo} ({result['unseen']}); full run: {result['meta']['metrics'].get(result['metric'])}")
    else:
        print(export(args.run_command, args.method, args.run, args.seconds, args.dir, args.zoo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
