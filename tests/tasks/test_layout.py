"""The layout of ``tasks/``: one package per task, a shared part and the diagnostics, and every
``python -m tasks.<module>`` command the documentation or the code quotes runs a module that exists."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASKS = os.path.join(ROOT, "tasks")
#: a quoted command: ``-m`` and a dotted module under ``tasks`` (after ``python`` or torchrun's flags)
COMMAND = re.compile(r"-m (tasks(?:\.\w+)+)(?!\.?[\w<])")


def quoted_modules(text: str) -> set[str]:
    """The modules ``text`` runs with ``-m tasks...`` (a placeholder such as ``tasks.<name>`` is not one)."""
    return set(COMMAND.findall(text))


def runnable(module: str) -> bool:
    """Whether ``python -m module`` would run something: a module, or a package with a ``__main__``."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a parent package is missing
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is None:
        return True
    return importlib.util.find_spec(module + ".__main__") is not None


def test_the_command_finder_checks_itself():
    text = "python -m tasks.inr_classification --zoo z\ntorchrun --nproc_per_node=2 -m tasks.diagnostics.blend\n" \
           "python -m tasks.<name> --help; python -m tasks.diagnostics.<name>; python -m tasks.noise_ceiling."
    assert quoted_modules(text) == {"tasks.inr_classification", "tasks.diagnostics.blend", "tasks.noise_ceiling"}
    assert runnable("tasks.inr_classification") and runnable("tasks.diagnostics.blend")
    assert not runnable("tasks.noise_ceiling")  # the flat module the diagnostics package replaced
    assert not runnable("tasks.common")  # a package without a __main__ runs nothing


def _sources():
    """The Markdown pages and the code of the repository (not the environment, caches or what runs write)."""
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("runs", "zoos", "data", "__pycache__")
                   and "egg-info" not in d]
        for file in files:
            if file.endswith((".md", ".py", ".json")) and file != os.path.basename(__file__):
                yield os.path.join(folder, file)


def test_every_quoted_command_runs_a_module():
    found = {}
    for path in _sources():
        with open(path, encoding="utf-8") as f:
            for module in quoted_modules(f.read()):
                found.setdefault(module, os.path.relpath(path, ROOT))
    assert len(found) >= 15  # the docs, docstrings and checkpoint notes were read
    broken = {m: where for m, where in found.items() if not runnable(m)}
    assert not broken, f"commands quoting modules that do not exist: {broken}"


def test_the_folder_shows_the_tasks():
    """No loose modules at the top: a package per task or command, the shared part, the diagnostics; each task
    package runs with ``python -m tasks.<task>``."""
    loose = sorted(f for f in os.listdir(TASKS) if f.endswith(".py") and f != "__init__.py")
    assert not loose, f"move {loose} into a task package, tasks/common or tasks/diagnostics"
    import tasks

    for name in [*tasks.TASKS, "embeddings", "demo", "pretrained", "merging", "learned_optimizer", "generation"]:
        assert os.path.isfile(os.path.join(TASKS, name, "__main__.py")), name
    for name, module in tasks.MODULES.items():
        assert callable(importlib.import_module(f"tasks.{module}").main), name
    assert os.path.isdir(os.path.join(TASKS, "common")) and os.path.isdir(os.path.join(TASKS, "diagnostics"))


def test_a_module_of_a_task_package_runs_alone():
    """``python -m tasks.demo.page`` (the docs quote it) runs without its package having imported it first: the
    packages re-export their entry points on first use (else runpy warns and runs a second copy of the module)."""
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "tasks.demo.page", "--help"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "python -m tasks.demo.page" in out.stdout, out.stderr[-2000:]
