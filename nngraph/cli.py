"""The ``nngraph`` command.

    nngraph convert model.pt2 -o graph.safetensors  # a torch.export program (or weights + --factory) to a graph
    nngraph inspect model.pt2 [--draw graph.png]    # layers, neurons, edges, parameters, fixed neurons
    nngraph verify model.pt2                        # the soundness check (exit 1 if unsound)
    nngraph zoo inr --out zoos/inr --small          # model zoos (as python -m nngraph.zoo)
    nngraph task inr_classification --zoo zoos/inr --epochs 30
    nngraph task accuracy_prediction --zoo zoos/clf
    nngraph task inr_editing --zoo zoos/inr
    nngraph demo [--full]                           # small zoos, every task briefly, one results table
    nngraph embed --zoo zoos/clf -o emb.safetensors # one vector per model (self-supervised encoder)
    nngraph search --zoo zoos/clf --query m.safetensors --embeddings emb.safetensors -k 10  # nearest models

A MODEL is a ``torch.export`` program saved with ``torch.export.save`` (``.pt2``), or a safetensors
state dict with ``--factory package.module:function`` (called without arguments, it returns the
model to load the weights into). Everything after ``zoo``, ``demo``, ``embed``, ``search`` or ``task NAME``
is passed on; ``--help`` works at every level.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from nngraph.commands import DEBUG_ENV, CommandError, add_common_args, debugging, one_line, run_command, set_threads

# the shared command plumbing (nngraph.commands) is re-exported: the task packages use it from here
__all__ = ["main", "load_model", "parse_inputs", "DEBUG_ENV", "CommandError", "add_common_args",
           "debugging", "one_line", "run_command", "set_threads"]

COMMANDS = ("convert", "inspect", "verify", "zoo", "task", "demo", "embed", "search")
#: the commands a registered task package provides (its ``COMMANDS``), not the library
PACKAGE_COMMANDS = ("demo", "embed", "search")
_USAGE = __doc__.split("\n\n")[1].rstrip()
#: ``inspect --draw`` refuses graphs with more nodes than this (a drawing of more is a blot).
MAX_DRAW_NODES = 2000


#: ``--inputs`` refuses example inputs of more elements than this (before allocating them): 2**28 floats are 1 GiB.
MAX_INPUT_ELEMENTS = 1 << 28

def _version() -> str:
    import nngraph

    return nngraph.__version__


def _top_help() -> str:
    return (f"usage: nngraph [-h] [--version] {{{','.join(COMMANDS)}}} ...\n\n"
            "Neural networks as graphs: convert, inspect and verify models; build zoos; run the tasks.\n\n"
            + _USAGE + "\n\n" + __doc__.split("\n\n")[2].strip())


#: the entry-point group task packages register in: each entry names a module with ``TASKS`` (names),
#: ``COMMANDS`` (``"demo"``, ``"embed"``, ``"search"``) and ``load(name) -> main(argv, prog)`` (``tasks/__init__.py``)
TASK_GROUP = "nngraph.tasks"


def task_packages() -> list:
    """The task packages registered in :data:`TASK_GROUP` (``pip install -e .`` registers this checkout's
    ``tasks/`` as ``nngraph_tasks``); nothing else: the library never imports a folder beside it."""
    from importlib.metadata import entry_points

    return [ep.load() for ep in entry_points(group=TASK_GROUP)]


def _registered(kind: str) -> dict:
    """Name -> the package that provides task (``kind="TASKS"``) or command (``"COMMANDS"``) ``name``."""
    out = {}
    for package in task_packages():
        for name in getattr(package, kind, ()):
            out.setdefault(name, package)
    return out


def _task_help(tasks) -> str:
    return ("usage: nngraph task [-h] {" + ",".join(tasks) + "} ...\n\n"
            "Run one of the tasks: train the encoder and its baselines on a zoo and score them on its test split "
            "(nngraph task NAME --help for its flags).\n\n"
            "tasks:\n" + "\n".join(f"  {name}" for name in tasks))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"nngraph {_version()}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "zoo":
        from nngraph.zoo.__main__ import main as zoo_main

        return zoo_main(rest, prog="nngraph zoo")
    if command == "task":
        tasks = _registered("TASKS")
        if not rest or rest[0] in ("-h", "--help"):
            print(_task_help(tasks))
            return 0 if rest else 2
        if rest[0] not in tasks:
            hint = "" if tasks else (f" (no task package is registered in the entry-point group {TASK_GROUP!r}; "
                                     "`pip install -e .` in a checkout registers its tasks)")
            print(f"nngraph task: error: Could not resolve task {rest[0]!r} among choices {list(tasks)}{hint}",
                  file=sys.stderr)
            return 2
        return tasks[rest[0]].load(rest[0])(rest[1:], prog=f"nngraph task {rest[0]}")
    if command in PACKAGE_COMMANDS:
        commands = _registered("COMMANDS")
        if command not in commands:
            print(f"nngraph {command}: error: no task package providing {command!r} is registered in "
                  f"{TASK_GROUP!r} (`pip install -e .` in a checkout registers its tasks)", file=sys.stderr)
            return 2
        return commands[command].load(command)(rest, prog=f"nngraph {command}")
    if command in ("convert", "inspect", "verify"):
        return _model_command(command, rest)
    print(f"nngraph: error: Could not resolve command {command!r} among choices {list(COMMANDS)}", file=sys.stderr)
    return 2


# -- loading models ---------------------------------------------------------------------------------
def parse_inputs(text: str) -> tuple:
    """Example inputs from a shape spec: ``"2,3,32,32"``, several inputs separated by ``;``, each
    optionally with a dtype (``"1,16:long"``). Floating-point inputs are random normal, integer ones zero.

    Raises:
        CommandError: naming the part that is not a shape.
    """
    import torch

    out = []
    for part in text.split(";"):
        shape_text, _, dtype_name = part.strip().partition(":")
        try:
            shape = tuple(int(s) for s in shape_text.split(",") if s.strip())
        except ValueError:
            shape = ()
        if not shape or any(s <= 0 for s in shape):
            raise CommandError(f"--inputs {text!r}: {part!r} is not a shape of positive integers like 2,3,32,32")
        elements = 1
        for s in shape:
            elements *= s
        if elements > MAX_INPUT_ELEMENTS:
            raise CommandError(f"--inputs {text!r}: {part!r} is {elements:,} elements, more than the "
                               f"{MAX_INPUT_ELEMENTS:,} an example input may have (nngraph.cli.MAX_INPUT_ELEMENTS); "
                               "a batch of 2 at the model's input size is enough to trace it")
        dtype = getattr(torch, dtype_name or "float32", None)
        if not isinstance(dtype, torch.dtype):
            raise CommandError(f"--inputs {text!r}: {dtype_name!r} is not a torch dtype (float32, float64, long, ...)")
        generator = torch.Generator().manual_seed(0)
        out.append(torch.randn(shape, generator=generator).to(dtype) if dtype.is_floating_point
                   else torch.zeros(shape, dtype=dtype))
    return tuple(out)


def _factory(spec: str):
    """The function ``--factory`` names (:func:`nngraph.factories.resolve_factory`, as ``nngraph zoo import``
    resolves it: from ``sys.path`` or the current directory)."""
    from nngraph.errors import SpecError
    from nngraph.factories import resolve_factory

    try:
        return resolve_factory(spec, "--factory")
    except SpecError as err:
        raise CommandError(one_line(err)) from None


def load_model(path: str, factory: str | None = None, inputs: str | None = None) -> tuple[Any, tuple | None, str]:
    """``(module, example_inputs, method)`` for a MODEL argument of ``convert``, ``inspect`` and ``verify``.

    ``path`` is a ``.pt2`` file of ``torch.export.save`` (its example inputs are used unless
    ``inputs`` is given), or a safetensors state dict loaded (strictly) into ``factory()``.

    Raises:
        CommandError: naming the file or the argument that is wrong.
    """
    import torch
    from torch import nn

    if not os.path.isfile(path):
        raise CommandError(f"MODEL {path}: no such file")
    example = parse_inputs(inputs) if inputs else None
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if factory is None:
            raise CommandError(f"MODEL {path} is a state dict: give --factory package.module:function that "
                               "builds the model to load it into")
        try:
            state = load_file(path)
        except (SafetensorError, OSError) as err:
            raise CommandError(f"MODEL {path} is not a readable safetensors file ({err})") from None
        model = _factory(factory)()
        if not isinstance(model, nn.Module):
            raise CommandError(f"--factory {factory} returned {type(model).__name__}, not a torch.nn.Module")
        if isinstance(model, torch.jit.ScriptModule):
            raise CommandError(f"--factory {factory} returned a TorchScript module (torch.jit.trace / torch.jit.script), "
                               "whose Python forward is gone; return the nn.Module itself (nngraph traces it)")
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise CommandError(f"MODEL {path} does not fit the model of --factory {factory}: "
                               f"{' '.join(s.strip() for s in first[:3])}") from None
        return model.eval(), example, "auto"
    if factory is not None:
        raise CommandError(f"--factory is for safetensors state dicts; {path} is read as a torch.export program")
    if _is_torchscript(path):
        raise CommandError(f"MODEL {path} is a TorchScript archive (torch.jit.save of a traced or scripted module); "
                           "nngraph reads torch.export programs: torch.export.save(torch.export.export(model, "
                           "inputs), 'model.pt2') with the nn.Module itself, or a state dict with --factory")
    from nngraph.convert.program import program_module, read_program
    from nngraph.errors import ProgramError

    try:  # torch's warnings held back; an unregistered custom operator, a truncated file, a pickle: one line
        program = read_program(path)
    except ProgramError as err:
        raise CommandError(f"MODEL {one_line(err)}") from None
    if example is None:
        args, kwargs = program.example_inputs or ((), {})
        if kwargs:
            raise CommandError(f"MODEL {path} takes keyword inputs; nngraph converts positional tensor inputs only")
        example = tuple(args) if args else None
    return program_module(program), example, "export"


def _is_torchscript(path: str) -> bool:
    """Whether ``path`` is a zip that ``torch.jit.save`` wrote (``<name>/code/`` and ``<name>/constants.pkl``)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names) \
        and not any(n.endswith("serialized_exported_program.json") or "/models/" in n for n in names)


# -- convert / inspect / verify ---------------------------------------------------------------------
def _model_parser(command: str) -> argparse.ArgumentParser:
    descriptions = {
        "convert": "Convert a model to its neural graph and save it as plain tensors.",
        "inspect": "Print a model's neural graph: layers, neurons by kind, edges, parameters, fixed neurons.",
        "verify": "Check that the model's neural graph is sound (nngraph.verify); exit 1 if it is not.",
    }
    p = argparse.ArgumentParser(prog=f"nngraph {command}", description=descriptions[command],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", metavar="MODEL",
                   help="a torch.export program (.pt2, torch.export.save) or a .safetensors state dict with --factory")
    p.add_argument("--factory", default=None, metavar="MODULE:FUNCTION",
                   help="for a state dict: a function (importable from the current directory) returning the model")
    p.add_argument("--inputs", default=None, metavar="SHAPE",
                   help="example input shapes, e.g. 2,3,32,32 (several separated by ';', a dtype as 1,16:long); "
                        "default: a .pt2 program's own example inputs, else made up from the first layer")
    if command == "convert":
        p.add_argument("-o", "--output", required=True, metavar="GRAPH",
                       help="where to write the graph: .pt (torch.load(weights_only=True)) or .safetensors")
        p.add_argument("--verify", action="store_true", help="also run the soundness check and refuse if unsound")
    if command == "inspect":
        p.add_argument("--draw", default=None, metavar="PNG",
                       help=f"draw the graph to this PNG (networkx + matplotlib; at most {MAX_DRAW_NODES} nodes)")
    if command == "verify":
        p.add_argument("--permutations", type=int, default=8, help="random hidden-neuron permutations to draw")
        p.add_argument("--tolerance", type=float, default=1e-9, help="largest output error, relative to max |f(x)|")
        p.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    add_common_args(p)
    return p


def _model_command(command: str, argv: list[str]) -> int:
    from nngraph.errors import NNGraphError

    parser = _model_parser(command)
    args = parser.parse_args(argv)
    try:
        set_threads(args.threads)
        if command == "convert" and not args.output.endswith((".pt", ".safetensors")):
            raise CommandError(f"-o {args.output}: the graph file must end in .pt or .safetensors")
        if command == "inspect" and args.draw is not None and not args.draw.lower().endswith(".png"):
            raise CommandError(f"--draw {args.draw}: the drawing must be a .png file")
        model, example, method = load_model(args.model, args.factory, args.inputs)
        return {"convert": _convert, "inspect": _inspect, "verify": _verify}[command](args, model, example, method)
    except CommandError as err:
        if debugging(args):
            raise
        print(f"nngraph {command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except NNGraphError as err:
        if debugging(args):
            raise
        print(f"nngraph {command}: error: {args.model}: {type(err).__name__}: {one_line(err)}", file=sys.stderr)
        return 1


def _convert(args, model, example, method) -> int:
    import nngraph
    from nngraph.blocks import is_blocked
    from nngraph.graph_io import save_graph

    graph = nngraph.to_graph(model, example, method=method, verify=args.verify)
    save_graph(graph, args.output)
    edges = graph.edge_blocks.num_edges if is_blocked(graph) else graph.num_edges
    print(f"{args.model} -> {args.output}: {int(graph.num_nodes)} nodes, {edges} edges, "
          f"{graph.edge_attr.size(0)} kernel entries")
    return 0


def _inspect(args, model, example, method) -> int:
    import nngraph

    layout = nngraph.build_layout(model, example, cache=False, method=method)
    graph = layout.to_graph(model)
    print(describe(graph, layout, model))
    if args.draw is not None:
        draw(graph, args.draw)
        print(f"drawing: {args.draw}")
    return 0


def _verify(args, model, example, method) -> int:
    import nngraph

    report = nngraph.verify(model, example, num_permutations=args.permutations, tolerance=args.tolerance,
                            seed=args.seed, method=method)
    print(f"{args.model}: {report}")
    return 0 if report.ok else 1


def _permutable(layout):
    import torch

    moved = torch.zeros(layout.num_nodes, dtype=torch.bool)
    for group in layout.symmetries:
        moved[group.rows.reshape(-1)] = True
    return moved


def describe(graph, layout, model) -> str:
    """The text of ``nngraph inspect``: totals, then one row per layer (activation space)."""
    import torch

    from nngraph import schema

    node_type, kind, layer = graph.node_type, graph.node_kind, graph.layer
    hidden = (node_type == int(schema.NodeType.HIDDEN)) & (kind != int(schema.NodeKind.PARAMETER))  # neurons
    permutable = _permutable(layout) & hidden
    sizes = graph.kernel_shape.prod(-1)  # (E,) kernel entries of every edge
    weight = graph.edge_type == int(schema.EdgeType.WEIGHT)
    params = sum(p.numel() for p in model.parameters())

    def kinds(mask) -> str:
        counts = torch.bincount(kind[mask], minlength=len(schema.NodeKind))
        return ", ".join(f"{schema.NodeKind(k).name.lower()} {int(c)}" for k, c in enumerate(counts) if c)

    edge_counts = torch.bincount(graph.edge_type, minlength=len(schema.EdgeType))
    lines = [
        f"{type(model).__name__}: {int(layer.max()) + 1 if layer.numel() else 0} layers of neurons, "
        f"{int(graph.num_nodes)} neurons, {graph.num_edges} edges, {params} parameters",
        f"neurons: {int((node_type == 0).sum())} input, {int(hidden.sum())} hidden "
        f"({int(permutable.sum())} permutable, {int((hidden & ~permutable).sum())} fixed), "
        f"{int((node_type == 2).sum())} output",
        f"neurons by kind: {kinds(torch.ones_like(hidden))}",
        "edges by type: " + ", ".join(f"{schema.EdgeType(t).name.lower()} {int(c)}"
                                      for t, c in enumerate(edge_counts) if c),
        f"kernel entries: {graph.edge_attr.size(0)} ({int(sizes[weight].sum())} on weight edges)",
        f"symmetry recall: {int(permutable.sum())} of {int(hidden.sum())} hidden neurons permutable "
        f"({100 * int(permutable.sum()) / max(int(hidden.sum()), 1):.0f}%)",
        *(["operations no converter names (nngraph.convert.fallback):"] + [f"  {line}" for line in layout.fallbacks]
          if layout.fallbacks else []),
        "",
        "| layer | neurons | input | hidden | permutable | output | kinds | edges in | weights in | activation |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    target_layer = layer[graph.edge_index[1]]  # (E,)
    for d in range(int(layer.max()) + 1 if layer.numel() else 0):
        at = layer == d
        into = target_layer == d
        acts = sorted({schema.Activation(int(a)).name.lower() for a in graph.act[at].unique()})
        lines.append(f"| {d} | {int(at.sum())} | {int((at & (node_type == 0)).sum())} | {int((at & hidden).sum())} "
                     f"| {int((at & permutable).sum())} | {int((at & (node_type == 2)).sum())} | {kinds(at)} "
                     f"| {int(into.sum())} | {int(sizes[into & weight].sum())} | {', '.join(acts)} |")
    return "\n".join(lines)


def draw(graph, path: str, max_nodes: int | None = None) -> None:
    """Draw ``graph`` with networkx + matplotlib, neurons placed in columns by ``layer``.

    Raises:
        CommandError: if the graph has more than ``max_nodes`` nodes (default: :data:`MAX_DRAW_NODES`).
    """
    max_nodes = MAX_DRAW_NODES if max_nodes is None else max_nodes
    n = int(graph.num_nodes)
    if n > max_nodes:
        raise CommandError(f"--draw: the graph has {n} nodes, more than the {max_nodes} a drawing can show; "
                           "inspect a smaller model (the table above describes this one)")
    from nngraph.plotting import pyplot

    plt = pyplot()
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(graph.edge_index.t().tolist())
    layers = graph.layer.tolist()
    rows: dict[int, int] = {}
    pos = {}
    for i, d in enumerate(layers):
        pos[i] = (d, -rows.get(d, 0))
        rows[d] = rows.get(d, 0) + 1
    colors = ["#4477aa", "#bbbbbb", "#ee6677"]
    fig, ax = plt.subplots(figsize=(min(3 + 1.2 * (max(layers) + 1), 30), min(3 + 0.12 * max(rows.values()), 30)))
    nx.draw_networkx(g, pos, ax=ax, node_size=40, with_labels=False, arrows=False, width=0.3,
                     node_color=[colors[int(t)] for t in graph.node_type.tolist()], edge_color="#999999")
    ax.set_axis_off()
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
