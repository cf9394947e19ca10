"""Packaging: the wheel holds every package of the library, the tasks install as ``nngraph_tasks`` and reach
``nngraph task`` through the ``nngraph.tasks`` entry-point group; the library never imports them."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_the_package_list_holds_every_package_of_the_library():
    setuptools = _pyproject()["tool"]["setuptools"]
    found = {os.path.relpath(d, ROOT).replace(os.sep, ".") for d, _, files in os.walk(os.path.join(ROOT, "nngraph"))
             if "__init__.py" in files}
    assert found <= set(setuptools["packages"]), f"add {sorted(found - set(setuptools['packages']))} to pyproject.toml"
    assert "tasks" not in setuptools["packages"]  # no top-level package of that name in site-packages
    assert setuptools["package-dir"] == {"nngraph_tasks": "tasks"}
    assert _pyproject()["project"]["entry-points"]["nngraph.tasks"] == {"nngraph_tasks": "nngraph_tasks"}


def test_every_folder_of_the_tasks_is_listed():
    """setuptools treats every importable folder as a package and warns (45 lines at ``pip install``) about one
    left out of ``packages``: the data folder ``tasks/pretrained/checkpoints`` is listed, with its files as package
    data."""
    setuptools = _pyproject()["tool"]["setuptools"]
    tasks = os.path.join(ROOT, "tasks")
    found = set()
    for d, dirs, _ in os.walk(tasks):
        dirs[:] = [x for x in dirs if x != "__pycache__" and not x.startswith(".")]
        rel = os.path.relpath(d, tasks)
        found.add("nngraph_tasks" if rel == "." else "nngraph_tasks." + rel.replace(os.sep, "."))
    assert found <= set(setuptools["packages"]), f"add {sorted(found - set(setuptools['packages']))} to pyproject.toml"
    assert setuptools["package-data"]["nngraph_tasks.pretrained.checkpoints"] == ["*.safetensors", "*.json"]


def _run(args, cwd, pythonpath):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_cli_finds_task_packages_through_the_entry_point_group(tmp_path):
    site = tmp_path / "site"
    dist = site / "faketasks-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: faketasks\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[nngraph.tasks]\nfaketasks = fake_tasks\n")
    (site / "fake_tasks.py").write_text(textwrap.dedent('''
        TASKS = ("hello",)
        COMMANDS = ()

        def load(name):
            def main(argv, prog):
                print(f"{prog} ran with {argv}")
                return 0
            return main
    '''))
    # from elsewhere than the checkout: only registered packages are seen, not the checkout's tasks/ folder
    # (an installed nngraph, as `pip install -e .` in CI, registers nngraph_tasks itself)
    from importlib.metadata import entry_points

    installed = any(e.name == "nngraph_tasks" for e in entry_points(group="nngraph.tasks"))
    out = _run(["-m", "nngraph.cli", "task", "--help"], str(tmp_path), [ROOT, str(site)])
    assert out.returncode == 0 and "hello" in out.stdout, out.stderr
    assert ("inr_classification" in out.stdout) == installed, (installed, out.stdout)
    out = _run(["-m", "nngraph.cli", "task", "hello", "--x", "1"], str(tmp_path), [ROOT, str(site)])
    assert out.returncode == 0 and "nngraph task hello ran with ['--x', '1']" in out.stdout, out.stderr
    if not installed:  # the demo is nngraph_tasks': without it, `nngraph demo` says so
        out = _run(["-m", "nngraph.cli", "demo"], str(tmp_path), [ROOT, str(site)])
        assert out.returncode == 2 and "demo" in out.stderr


def test_the_library_imports_no_task_code():
    code = ("import sys, nngraph, nngraph.cli, nngraph.train, nngraph.zoo, nngraph.data, nngraph.functional; "
            "nngraph.cli.main(['--help']); "
            "bad = [m for m in sys.modules if m == 'tasks' or m.startswith(('tasks.', 'nngraph_tasks'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = _run(["-c", code], ROOT, [ROOT])
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_cli_finds_tasks_through_the_entry_point_group_only(monkeypatch, capsys):
    """Run from this checkout, whose ``tasks/`` sits beside ``nngraph/``: with nothing registered, no task is found
    (the library never imports a folder beside it) and the error says how to register them."""
    import importlib.metadata

    import nngraph.cli

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
    assert nngraph.cli.task_packages() == []
    assert nngraph.cli.main(["task", "inr_classification"]) == 2
    assert "pip install -e ." in capsys.readouterr().err
