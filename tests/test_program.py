"""nngraph.load_program: a torch.export program (.pt2) as a module the converter takes; to_graph on an
ExportedProgram; one-line errors for files torch cannot load; what from_graph restores of integer buffers."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import nngraph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("x", "edge_index", "edge_attr", "edge_type", "kernel_shape", "node_type", "node_kind", "act", "layer")


def _bn_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def _trained(model: nn.Module, steps: int = 3) -> nn.Module:
    """``model`` after a few training-mode forwards: running statistics and ``num_batches_tracked`` not at their
    initial values, then in eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(16, 3))
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    model, x = _trained(_bn_model()), torch.randn(4, 3)
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    return model, x, str(path)


def test_load_program_gives_a_module_the_converter_takes(saved):
    model, x, path = saved
    loaded = nngraph.load_program(path)
    assert isinstance(loaded, nn.Module) and set(loaded.state_dict()) == set(model.state_dict())
    assert len(loaded.example_inputs) == 1 and torch.equal(loaded.example_inputs[0], x)
    assert torch.equal(loaded(x), model(x))
    graph = nngraph.to_graph(loaded, loaded.example_inputs)
    reference = nngraph.to_graph(model, x)
    for key in FIELDS:
        assert torch.equal(graph[key], reference[key]), key
    back = nngraph.from_graph(graph, loaded)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())  # ints included
    assert nngraph.verify(loaded, x).ok


def test_to_graph_takes_an_exported_program(saved):
    model, x, path = saved
    program = torch.export.load(path)
    graph = nngraph.to_graph(program)  # the program's own example inputs
    reference = nngraph.to_graph(model, x)
    for key in FIELDS:
        assert torch.equal(graph[key], reference[key]), key
    assert graph.input_spec == reference.input_spec
    assert torch.equal(nngraph.to_graph(program, torch.randn(5, 3)).x, reference.x)  # or the inputs given


CUSTOM_OP = "nngraph_test_unregistered::wiggle"


def save_program_with_a_custom_op(path) -> None:
    """Export to ``path`` a model that calls the custom operator :data:`CUSTOM_OP`, in another process: this one never
    registers it, as a user's session that did not import the operator's module."""
    script = textwrap.dedent(f'''
        import torch
        from torch import nn

        @torch.library.custom_op({CUSTOM_OP!r}, mutates_args=())
        def wiggle(x: torch.Tensor) -> torch.Tensor:
            return x.sin() + x

        @wiggle.register_fake
        def _(x):
            return torch.empty_like(x)

        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

            def forward(self, x):
                return self.b(wiggle(self.a(x)))

        torch.export.save(torch.export.export(M(), (torch.randn(2, 3),)), {str(path)!r})
    ''')
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_an_unregistered_custom_op_is_named_in_one_line(tmp_path, capfd):
    path = tmp_path / "custom.pt2"
    save_program_with_a_custom_op(path)
    capfd.readouterr()
    with pytest.raises(nngraph.ProgramError) as info:
        nngraph.load_program(str(path))
    message = str(info.value)
    assert "nngraph_test_unregistered::wiggle" in message and "not registered" in message
    assert "\n" not in message
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == "", printed  # torch's logged tracebacks are held back
    with pytest.raises(nngraph.ProgramError, match="nngraph_test_unregistered::wiggle"):
        with open(path, "rb") as f:
            nngraph.load_program(f)


@pytest.mark.parametrize("content", [b"not a zip at all\n", b"PK\x03\x04truncated"])
def test_a_file_that_is_not_a_program_is_one_line(tmp_path, capfd, content):
    path = tmp_path / "garbage.pt2"
    path.write_bytes(content)
    with pytest.raises(nngraph.ProgramError, match=r"garbage\.pt2 is not a torch\.export program") as info:
        nngraph.load_program(str(path))
    assert "\n" not in str(info.value)
    assert capfd.readouterr().err == ""
    with pytest.raises(FileNotFoundError, match="nothere.pt2"):
        nngraph.load_program(str(tmp_path / "nothere.pt2"))


def test_from_graph_reads_floating_buffers_from_the_graph_and_integer_ones_from_the_module():
    """What the README promises: parameters and floating-point buffers (BatchNorm's running statistics) bit for
    bit from the graph; integer buffers (``num_batches_tracked``) are not in the graph and come from the module."""
    model, x = _trained(_bn_model()), torch.randn(4, 3)
    assert int(model[1].num_batches_tracked) == 3
    graph = nngraph.to_graph(model, x)
    assert int(model[1].num_batches_tracked) == 3  # converting an eval-mode model changes nothing
    same = nngraph.from_graph(graph, model)
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in model.state_dict().items())
    other = _trained(_bn_model(seed=1), steps=7)
    back = nngraph.from_graph(graph, other)
    for name, value in model.state_dict().items():
        expected = other.state_dict()[name] if name.endswith("num_batches_tracked") else value
        assert torch.equal(back.state_dict()[name], expected), name
    assert torch.equal(back(x), model(x))


def test_converting_a_model_in_training_mode_leaves_its_buffers_alone():
    model = _bn_model().train()
    before = copy.deepcopy(model.state_dict())
    graph = nngraph.to_graph(model, torch.randn(4, 3), method="fx")
    back = nngraph.from_graph(graph, model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in before.items())
