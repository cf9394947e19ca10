"""nngraph.threads: one thread unless told (``--threads``, ``$NNGRAPH_THREADS``), the one choice that every command,
every example and the zoo builders' worker processes make."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
import torch

from nngraph.threads import THREADS_ENV, pick_threads, set_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py"))


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_one_thread_unless_told(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert pick_threads() == 1 and pick_threads(3) == 3 and pick_threads(0) == 0
    monkeypatch.setenv(THREADS_ENV, "4")
    assert pick_threads() == 4 and pick_threads(2) == 2  # the flag wins over the environment
    with pytest.raises(ValueError, match=r"--threads -1: give a positive number"):
        pick_threads(-1)
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ValueError, match=rf"{THREADS_ENV}='many' is not a number of threads"):
        pick_threads()


def test_set_threads_sets_torch(monkeypatch, restore_threads):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    torch.set_num_threads(2)
    assert set_threads() == 1 and torch.get_num_threads() == 1
    assert set_threads(0) == 1 and torch.get_num_threads() == 1  # 0: left as it is
    assert set_threads(2) == 2 and torch.get_num_threads() == 2


def test_commands_read_the_environment(monkeypatch, tmp_path, restore_threads, capsys):
    from nngraph.cli import main

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    monkeypatch.setenv(THREADS_ENV, "3")
    assert main(["zoo", "summary", str(tmp_path / "nowhere")]) == 1
    assert main(["zoo", "summary", str(tmp_path / "nowhere"), "--threads", "2"]) == 1
    assert main(["zoo", "summary", str(tmp_path / "nowhere"), "--threads", "auto"]) == 1
    assert seen == [3, 2, 3]
    monkeypatch.setenv(THREADS_ENV, "-2")
    assert main(["zoo", "summary", str(tmp_path / "nowhere")]) == 1
    assert f"{THREADS_ENV}=-2: give a positive number of threads" in capsys.readouterr().err


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_takes_threads_through_the_library(name):
    """Each example has ``--threads`` (default ``None``: the library's choice) and sets it with
    ``nngraph.threads.set_threads``, never torch's setter itself."""
    with open(os.path.join(ROOT, "examples", name), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    names = [ast.unparse(c.func) for c in calls]
    assert "set_threads" in names, f"{name}: call nngraph.threads.set_threads(args.threads)"
    assert "torch.set_num_threads" not in names and "threadpool_limits" not in names, name
    flag = [c for c in calls if ast.unparse(c.func).endswith("add_argument") and c.args
            and isinstance(c.args[0], ast.Constant) and c.args[0].value == "--threads"]
    assert flag and {k.arg: ast.unparse(k.value) for k in flag[0].keywords}.get("default") == "None", name


def _threads_in_worker(unit):
    """A unit of a zoo job that records the thread count of the process computing it."""
    return [({"id": f"m{unit.index}", "threads": torch.get_num_threads()}, {"w": torch.zeros(1)})]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="torch's default is one thread on one core")
def test_zoo_workers_use_the_parent_s_thread_count(tmp_path, monkeypatch, restore_threads):
    """Spawned workers start with torch's default (a thread per core); they use the builder's count instead."""
    from nngraph.zoo.jobs import Unit, run_units

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the workers' default would be os.cpu_count()
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setenv("PYTHONPATH", ROOT)
    default = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                             capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert int(default.stdout) > 1  # the test checks itself: a worker left alone would not use one thread
    torch.set_num_threads(1)
    units = [Unit(i, (f"m{i}",)) for i in range(2)]
    assert run_units(str(tmp_path), units, _threads_in_worker, progress=False, workers=2) == 2
    with open(tmp_path / "manifest.jsonl") as f:
        assert [json.loads(line)["threads"] for line in f] == [1, 1]


def test_the_help_names_the_choice_not_none(capsys):
    from nngraph.cli import main

    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    flag = text[text.rindex("--threads N"):text.rindex("--debug")]  # the flag's own help
    assert f"auto: ${THREADS_ENV} if set, else 1" in flag and flag.rstrip().endswith("(default: auto)"), flag
