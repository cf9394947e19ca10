"""The ``nngraph`` command: help and version at every level, convert / inspect / verify on tiny models."""
import argparse
import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import nngraph
from nngraph.schema import NodeKind
from benchmarks.__main__ import benchmark_names, parse
from nngraph.cli import MAX_DRAW_NODES, main
from nngraph.graph_io import load_graph
from tests.test_program import CUSTOM_OP, save_program_with_a_custom_op

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


@pytest.fixture
def program(tmp_path) -> tuple[str, nn.Module]:
    model = tiny_cnn().eval()
    path = str(tmp_path / "cnn.pt2")
    torch.export.save(torch.export.export(model, (torch.randn(2, 3, 6, 6),)), path)
    return path, model


@pytest.fixture
def state_dict(tmp_path, monkeypatch) -> tuple[str, nn.Module]:
    """A safetensors state dict and a factory module ``tinyfactory:mlp`` in the working directory."""
    (tmp_path / "tinyfactory.py").write_text(textwrap.dedent("""
        from torch import nn

        def mlp():
            return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2))
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2))
    path = str(tmp_path / "mlp.safetensors")
    save_file(model.state_dict(), path)
    return path, model


def run_cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "nngraph.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


# -- help, version, usage ----------------------------------------------------------------------
def test_help_and_version_exit_zero(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nngraph") and "convert" in out and "inspect" in out and "verify" in out
    assert main([]) == 2
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip().endswith(nngraph.__version__)
    assert main(["task", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nngraph task") and all(t in out for t in ("inr_classification", "inr_editing"))
    assert main(["task", "trian"]) == 2
    assert "Could not resolve task 'trian'" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


@pytest.mark.parametrize("command", [["task", "inr_classification"], ["task", "accuracy_prediction"],
                                     ["task", "inr_editing"], ["demo"], ["zoo"], ["convert"], ["inspect"],
                                     ["verify"]])
def test_help_of_every_command_names_nngraph_and_shows_defaults(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*command, "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: nngraph {' '.join(command)}"), out[:200]
    assert "python -m" not in out.split("\n\n")[0]
    if command[0] in ("task", "convert", "verify"):
        assert "(default:" in out


@pytest.mark.parametrize("name", ["inr_classification", "accuracy_prediction", "inr_editing", "demo",
                                  "embeddings.embed", "embeddings.search", "embeddings"])
def test_every_task_flag_has_help_and_the_defaults_formatter(name):
    parser = importlib.import_module(f"tasks.{name}").build_parser()
    assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter
    assert parser.prog == f"python -m tasks.{name}"  # run directly, the usage names the module
    missing = [a.option_strings for a in parser._actions if not a.help]
    assert not missing, f"flags without help text: {missing}"


def test_console_entry_point_in_a_fresh_process():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"nngraph {nngraph.__version__}"
    result = run_cli("task", "--help")
    assert result.returncode == 0 and "inr_classification" in result.stdout


# -- convert ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_convert_a_torch_export_program(program, tmp_path, suffix, capsys):
    path, model = program
    out = str(tmp_path / f"graph{suffix}")
    assert main(["convert", path, "-o", out]) == 0
    assert "nodes" in capsys.readouterr().out
    if suffix == ".pt":
        raw = torch.load(out, weights_only=True)  # plain tensors: no pickle needed
        assert raw["input_spec"] == [[[2, 3, 6, 6], "float32"]]
    graph = load_graph(out)
    expected = nngraph.to_graph(model, torch.randn(2, 3, 6, 6))
    for key in ("x", "edge_index", "edge_attr", "edge_type", "node_type", "kernel_shape", "layer", "act"):
        assert torch.equal(graph[key], expected[key]), key
    assert graph.num_nodes == expected.num_nodes and graph.input_spec == [[[2, 3, 6, 6], "float32"]]
    restored = nngraph.from_graph(graph, tiny_cnn())  # the graph file alone restores the weights
    for (name, p), q in zip(restored.named_parameters(), model.parameters()):
        assert torch.equal(p, q), name


def test_convert_a_state_dict_with_a_factory(state_dict, tmp_path):
    path, model = state_dict
    out = str(tmp_path / "graph.pt")
    assert main(["convert", path, "--factory", "tinyfactory:mlp", "--inputs", "4,3", "-o", out]) == 0
    graph = load_graph(out)
    assert torch.equal(graph.edge_attr, nngraph.to_graph(model).edge_attr)
    assert graph.input_spec == [[[4, 3], "float32"]]


def test_convert_through_the_console_command(state_dict, tmp_path):
    path, _ = state_dict
    result = run_cli("convert", path, "--factory", "tinyfactory:mlp", "-o", "g.safetensors", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert load_graph(str(tmp_path / "g.safetensors")).num_nodes == 3 + 6 + 6 + 2


@pytest.mark.parametrize("args, message", [
    (["missing.pt2", "-o", "g.pt"], "missing.pt2: no such file"),
    (["{sd}", "-o", "g.pt"], "give --factory"),
    (["{sd}", "--factory", "tinyfactory", "-o", "g.pt"], "not package.module:function"),
    (["{sd}", "--factory", "nosuchmodule_x:mlp", "-o", "g.pt"], "cannot import 'nosuchmodule_x'"),
    (["{sd}", "--factory", "tinyfactory:nothing", "-o", "g.pt"], "no function 'nothing'"),
    (["{sd}", "--factory", "tinyfactory:mlp", "--inputs", "2,x", "-o", "g.pt"], "'2,x' is not a shape"),
    (["{sd}", "--factory", "tinyfactory:mlp", "--inputs", "2,3:floaty", "-o", "g.pt"], "not a torch dtype"),
    (["{sd}", "--factory", "tinyfactory:mlp", "-o", "g.txt"], "must end in .pt or .safetensors"),
    (["{garbage}", "-o", "g.pt"], "garbage.pt2 is not a torch.export program"),
    (["{garbage_st}", "--factory", "tinyfactory:mlp", "-o", "g.pt"], "not a readable safetensors"),
    (["{wrong_st}", "--factory", "tinyfactory:mlp", "-o", "g.pt"], "does not fit the model"),
])
def test_convert_bad_arguments_name_the_argument(state_dict, tmp_path, capsys, args, message):
    sd, _ = state_dict
    (tmp_path / "garbage.pt2").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1")
    save_file({"0.weight": torch.zeros(2, 2)}, str(tmp_path / "wrong.safetensors"))
    names = dict(sd=sd, garbage=str(tmp_path / "garbage.pt2"), garbage_st=str(tmp_path / "garbage.safetensors"),
                 wrong_st=str(tmp_path / "wrong.safetensors"))
    assert main(["convert", *[a.format(**names) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nngraph convert: error:") and message in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "g.pt")


def test_convert_of_a_program_with_an_unregistered_custom_op_is_one_line(tmp_path, capfd):
    """The program is read through nngraph.convert.program.read_program: the operator named, torch's warnings and
    logged tracebacks held back."""
    path = tmp_path / "custom.pt2"
    save_program_with_a_custom_op(path)
    capfd.readouterr()
    assert main(["convert", str(path), "-o", str(tmp_path / "g.pt")]) == 2
    printed = capfd.readouterr()
    assert printed.out == ""
    assert printed.err.startswith(f"nngraph convert: error: MODEL {path} calls custom operator {CUSTOM_OP} not "
                                  "registered"), printed.err
    assert len(printed.err.strip().splitlines()) == 1, printed.err
    assert not os.path.exists(tmp_path / "g.pt")


def test_convert_of_an_unsupported_model_exits_one(tmp_path, capsys):
    class Scores(nn.Module):  # returns attention weights: positions by positions, no neurons to put in a graph
        def __init__(self):
            super().__init__()
            self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return torch.softmax(self.q(x) @ self.k(x).transpose(-2, -1), -1)

    path = str(tmp_path / "scores.pt2")
    torch.export.save(torch.export.export(Scores(), (torch.randn(2, 5, 4),)), path)
    assert main(["convert", path, "-o", str(tmp_path / "g.pt")]) == 1
    err = capsys.readouterr().err
    assert "UnsupportedError" in err and path in err


def test_convert_of_an_operation_no_converter_names_goes_through_the_fallback(tmp_path, capsys):
    class Sorts(nn.Module):
        def forward(self, x):
            return torch.sort(x, dim=-1).values

    path = str(tmp_path / "sorts.pt2")
    torch.export.save(torch.export.export(nn.Sequential(nn.Linear(3, 3), Sorts()), (torch.randn(2, 3),)), path)
    assert main(["convert", path, "-o", str(tmp_path / "g.pt")]) == 0
    graph = torch.load(tmp_path / "g.pt", weights_only=True)
    assert (graph["node_kind"] == int(NodeKind.OPAQUE)).sum() == 3


# -- inspect ------------------------------------------------------------------------------------
def test_inspect_counts_neurons_edges_parameters_and_fixed_neurons(state_dict, capsys):
    path, _ = state_dict
    assert main(["inspect", path, "--factory", "tinyfactory:mlp"]) == 0
    out = capsys.readouterr().out
    assert "Sequential: 4 layers of neurons, 17 neurons" in out  # depth 0 the inputs, 3 the outputs
    assert f"{3 * 6 + 6 + 6 * 6 + 6 + 6 * 2 + 2} parameters" in out
    assert "3 input, 12 hidden (12 permutable, 0 fixed), 2 output" in out
    assert "edges by type: weight 66" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 4 and rows[0].startswith("| 0 | 3 | 3 | 0 ") and rows[3].startswith("| 3 | 2 | 0 | 0 | 0 | 2 ")


def test_inspect_reports_fixed_hidden_neurons(tmp_path, capsys):
    class Selects(nn.Module):  # adding h[:, :2] to the outputs ties every hidden neuron to its place
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = torch.tanh(self.a(x))
            return self.b(h) + h[:, :2]

    path = str(tmp_path / "selects.pt2")
    torch.export.save(torch.export.export(Selects(), (torch.randn(2, 3),)), path)
    assert main(["inspect", path]) == 0
    out = capsys.readouterr().out
    assert "hidden (0 permutable, 6 fixed)" in out


def test_inspect_draws_small_graphs_and_refuses_large_ones(program, tmp_path, capsys, monkeypatch):
    path, _ = program
    png = str(tmp_path / "out" / "graph.png")
    assert main(["inspect", path, "--draw", png]) == 0
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr("nngraph.cli.MAX_DRAW_NODES", 5)
    big = str(tmp_path / "big.png")
    assert main(["inspect", path, "--draw", big]) == 2
    err = capsys.readouterr().err
    assert "more than the 5 a drawing can show" in err and not os.path.exists(big)
    assert MAX_DRAW_NODES >= 1000


# -- verify -------------------------------------------------------------------------------------
def test_verify_prints_the_report_and_exits_by_soundness(program, capsys, monkeypatch):
    path, _ = program
    assert main(["verify", path, "--permutations", "3"]) == 0
    out = capsys.readouterr().out
    assert "sound:" in out and "over 3 permutations" in out and path in out
    real = nngraph.verify

    def unsound(*args, **kwargs):
        report = real(*args, **kwargs)
        return type(report)(**{**report.__dict__, "max_output_error": 1.0})

    monkeypatch.setattr(nngraph, "verify", unsound)
    assert main(["verify", path]) == 1
    assert "UNSOUND" in capsys.readouterr().out


# -- benchmarks ---------------------------------------------------------------------------------
def test_benchmark_flags_after_the_name_are_passed_on():
    names = benchmark_names()
    assert parse(["encoder", "--no-resnet", "--threads", "1"], names) == [
        ("bench_encoder", ["--no-resnet", "--threads", "1"])]
    assert parse(["convert", "--models", "vit", "encoder"], names) == [
        ("bench_convert", ["--models", "vit"]), ("bench_encoder", [])]
    assert parse([], names) == [(n, []) for n in names]
    with pytest.raises(ValueError, match="no benchmark 'bench_nope'"):
        parse(["nope"], names)
    with pytest.raises(ValueError, match="before a benchmark name"):
        parse(["--no-resnet"], names)


def test_benchmark_command_passes_flags_in_a_fresh_process():
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "benchmarks", "encoder", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--no-resnet" in result.stdout, result.stderr


# -- help texts, threads, one-line errors (issues 27, 33) ------------------------------------------
@pytest.mark.parametrize("command", [["demo"], ["embed"], ["search"], ["zoo"], ["zoo", "import"], ["zoo", "summary"],
                                     ["zoo", "inr"], ["zoo", "classifiers"], ["zoo", "recurrent"], ["convert"],
                                     ["inspect"], ["verify"]])
def test_every_command_describes_itself_in_whole_sentences(command, capsys, monkeypatch):
    monkeypatch.setattr("nngraph.cli.task_packages", lambda: [importlib.import_module("tasks")])
    with pytest.raises(SystemExit) as exit:
        main([*command, "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert not description.startswith(("options:", "positional")), f"nngraph {' '.join(command)} has no description"
    assert description.rstrip().endswith((".", ")")), f"cut mid-sentence: {description!r}"
    if command[0] != "demo" and command != ["zoo"]:  # the demo has its own --threads; `zoo` lists subcommands
        assert "--threads" in out and "--debug" in out
    if command == ["zoo", "import"]:
        assert "test_acc   required for classifiers" in out and "file       required" in out


def test_zoo_import_help_documents_the_table(capsys):
    with pytest.raises(SystemExit):
        main(["zoo", "import", "--help"])
    out = capsys.readouterr().out
    for word in ("--follow-symlinks", "--no-cast", "split      optional", "id, index, sha256, spec, family, source"):
        assert word in out, word


@pytest.mark.parametrize("argv, threads", [([], 1), (["--threads", "3"], 3)])
def test_commands_use_one_thread_unless_told(state_dict, tmp_path, monkeypatch, argv, threads):
    path, _ = state_dict
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    assert main(["inspect", path, "--factory", "tinyfactory:mlp", *argv]) == 0
    assert seen == [threads]
    seen.clear()
    assert main(["zoo", "summary", str(tmp_path / "nowhere"), *argv]) == 1
    assert seen == [threads]


def test_absurd_inputs_are_refused_before_allocating(state_dict, capsys, monkeypatch):
    path, _ = state_dict
    monkeypatch.setattr(torch, "randn", lambda *a, **k: pytest.fail("allocated"))
    assert main(["convert", path, "--factory", "tinyfactory:mlp", "--inputs", "100000,100000,4", "-o", "g.pt"]) == 2
    err = capsys.readouterr().err
    assert "--inputs '100000,100000,4': '100000,100000,4' is 40,000,000,000 elements, more than the" in err
    assert err.count("\n") == 1


def test_a_torchscript_module_is_a_clear_error(state_dict, tmp_path, capsys):
    path, model = state_dict
    (tmp_path / "jitfactory.py").write_text(textwrap.dedent("""
        import torch
        from tinyfactory import mlp

        def traced():
            return torch.jit.trace(mlp(), torch.zeros(2, 3))
    """))
    assert main(["convert", path, "--factory", "jitfactory:traced", "-o", "g.pt"]) == 2
    assert "returned a TorchScript module (torch.jit.trace / torch.jit.script)" in capsys.readouterr().err
    archive = str(tmp_path / "traced.pt2")
    torch.jit.save(torch.jit.trace(model, torch.zeros(2, 3)), archive)
    assert main(["convert", archive, "-o", "g.pt"]) == 2
    err = capsys.readouterr().err
    assert "traced.pt2 is a TorchScript archive (torch.jit.save" in err and err.count("\n") == 1


def test_debug_shows_the_traceback(state_dict, capsys, monkeypatch):
    from nngraph.cli import CommandError

    path, _ = state_dict
    with pytest.raises(CommandError, match="is not a shape"):
        main(["convert", path, "--factory", "tinyfactory:mlp", "--inputs", "x", "-o", "g.pt", "--debug"])
    monkeypatch.setenv("NNGRAPH_DEBUG", "1")
    with pytest.raises(CommandError):
        main(["convert", path, "--factory", "tinyfactory:mlp", "--inputs", "x", "-o", "g.pt"])


def test_zoo_errors_are_one_line_in_a_fresh_process(tmp_path):
    result = run_cli("zoo", "summary", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"nngraph zoo summary: error: {tmp_path / 'nowhere'} is not a zoo: "
                                                  "zoo.json is missing (build one with `python -m nngraph.zoo`)"]
    result = run_cli("zoo", "summary", str(tmp_path / "nowhere"), "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr
