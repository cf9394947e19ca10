"""The modules of ``nngraph`` import one another in one direction only: no import circle.

The graph is read from the source with :mod:`ast`, not by importing it: an edge ``a -> b`` for every
``import`` / ``from ... import`` in ``a`` that names module ``b`` of the package, at module level or inside a
function (an import deferred into a function still closes a circle; it only hides it until the call). Imports under
``if TYPE_CHECKING:`` never run and are left out. ``from package import name`` points at the submodule
``package.name`` when there is one, else at the package's ``__init__``. Importing a submodule runs its parent
packages' ``__init__`` too; those implicit edges are left out (every module would otherwise sit in a circle with the
``nngraph/__init__.py`` that re-exports it).
"""
from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "nngraph"

__all__ = ["import_graph", "circles"]


def _modules(root: str = ROOT, package: str = PACKAGE) -> dict[str, tuple[str, bool]]:
    """``{dotted name: (path, is a package)}`` of every ``.py`` file under ``root/package``."""
    found = {}
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        for file in files:
            if file.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, file), root)[:-3].split(os.sep)
                is_package = parts[-1] == "__init__"
                found[".".join(parts[:-1] if is_package else parts)] = (os.path.join(folder, file), is_package)
    return found


def _runs(test: ast.expr) -> bool:
    """False for the test of ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``), whose body never runs."""
    return not ("TYPE_CHECKING" in ast.unparse(test))


def _imports(body: list[ast.stmt]):
    """Every import statement that can run in ``body``, at any depth (functions and classes included)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and not _runs(node.test):
            yield from _imports(node.orelse)
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _imports([child])
            elif isinstance(child, ast.excepthandler):
                yield from _imports(child.body)


def import_graph(root: str = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` (see the module docstring for what counts)."""
    modules = _modules(root, package)
    graph = {}
    for name, (path, is_package) in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        here = name if is_package else name.rpartition(".")[0]  # what a relative import starts from
        targets = set()
        for node in _imports(tree.body):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in modules)
                continue
            if node.level:
                parts = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != package:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
        targets.discard(name)
        graph[name] = {t for t in targets if t in modules}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each an import circle), sorted
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_the_graph_sees_imports_of_every_kind(tmp_path):
    """The test checks itself: module-level, relative, deferred (in a function) and package imports are edges;
    ``TYPE_CHECKING`` imports are not; a circle is found, and only the modules in it."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("from pkg.sub import b\n\ndef f():\n    from . import c\n")
    (pkg / "c.py").write_text("import pkg.a\nfrom typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from pkg import d\n")
    (pkg / "d.py").write_text("try:\n    from .sub.b import g\nexcept ImportError:\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import d\n\ndef g():\n    pass\n")
    graph = import_graph(str(tmp_path), "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b", "pkg.c"}, "pkg.c": {"pkg.a"},
                     "pkg.d": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.d"}}
    assert circles(graph) == [["pkg.a", "pkg.c"], ["pkg.d", "pkg.sub.b"]]


def test_no_import_circle_in_nngraph():
    """A circle means a module reaches up a floor: move the piece both need into a module below them both."""
    graph = import_graph()
    assert len(graph) > 50  # the package was found
    found = circles(graph)
    assert not found, "import circles in nngraph: " + "; ".join(" <-> ".join(c) for c in found)
