"""Every ```python block of README.md, docs/**/*.md and the folders' READMEs runs as written, so the documentation
cannot drift.

The blocks of one file run in order in one fresh namespace (a later block may use an earlier one's names), in a
scratch directory (files a block writes land there) with nngraph's cache there too. A block that is not meant to
run is marked with another language (```text, ```bash). Tracebacks name the Markdown file and its line.
"""
from __future__ import annotations

import glob
import json
import os
import re
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the Markdown a reader is sent to: the front page, every page under docs/ (sub-folders too), the folders' READMEs
DOCS = ["README.md", "ARCHITECTURE.md", "tasks/README.md", "examples/README.md",
        *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))]
#: an opening fence and its info string (the language), a closing fence
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
#: a block is meant to stay small: this many seconds on a loaded 2-core machine at most
BLOCK_SECONDS = 30.0


def python_blocks(path: str) -> list[tuple[int, str]]:
    """``(line, source)`` of every fenced block whose language is ``python`` / ``py`` in the Markdown file
    ``path``; ``line`` is the 1-based line of the block's first line of code."""
    blocks, lines = [], open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, language = opening.groups()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        if language.lower() in ("python", "py", "python3"):
            blocks.append((i + 2, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def test_the_extractor_sees_the_blocks():
    blocks = python_blocks(os.path.join(ROOT, "README.md"))
    assert blocks and blocks[0][1].startswith("import torch")
    assert sum(len(python_blocks(os.path.join(ROOT, d))) for d in DOCS) >= 8  # the docs pages' too


def test_every_page_is_checked():
    """A Markdown page added to the repository (a moved section, a new folder's README) is among the :data:`DOCS`."""
    pages = set()
    for folder, dirs, files in os.walk(ROOT):
        # not the environment, caches, or what runs write (runs/, zoos/, data/)
        dirs[:] = [d for d in dirs if not d.startswith(".") and "egg-info" not in d and "cache" not in d
                   and (folder != ROOT or d not in ("runs", "zoos", "data"))]
        pages |= {os.path.relpath(os.path.join(folder, name), ROOT) for name in files if name.endswith(".md")}
    assert "docs/tasks/inr_editing.md" in DOCS
    assert pages <= set(DOCS), f"pages test_docs does not read: {sorted(pages - set(DOCS))}"


def test_the_demo_table_is_written_from_a_demo_run():
    """The demo's table in docs/results.md is the headline of the demo run kept in docs/demo_results.json, so a
    number edited by hand or a new run without its table fails here (``python -m tasks.demo.page runs/demo`` writes
    both); the demo section's prose quotes no number of its own, only the full runs' numbers above it."""
    from tasks.demo.page import DEMO_DOC, DEMO_RESULTS, DEMO_TABLE_BEGIN, DEMO_TABLE_END, format_headline, headline

    rows = json.load(open(os.path.join(ROOT, DEMO_RESULTS), encoding="utf-8"))
    assert [e["task"] for e in headline(rows)] == ["INR classification", "accuracy prediction", "INR editing"]
    assert all(e["encoder"] is not None for e in headline(rows)), "the kept run scored no shipped checkpoint"
    text = open(os.path.join(ROOT, DEMO_DOC), encoding="utf-8").read()
    table = f"{DEMO_TABLE_BEGIN}\n{format_headline(rows)}\n{DEMO_TABLE_END}"
    assert table in text, f"{DEMO_DOC}: the demo table is not the one {DEMO_RESULTS} gives:\n{format_headline(rows)}"
    before, demo = text.split("\n## The demo\n")
    prose = demo.split("\n## ")[0].replace(table, "")
    decimals = lambda part: set(re.findall(r"\d+\.\d+", part))  # noqa: E731
    own = decimals(prose) - decimals(before)
    assert not own, f"numbers in the demo's prose that the results above it do not hold: {sorted(own)}"


#: a Markdown link or image, ``[text](target)`` / ``![alt](target "title")``: the target
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(path: str) -> list[tuple[int, str]]:
    """``(line, target)`` of every link and image of the Markdown file ``path`` that points into the repository
    (no scheme such as ``https:``, no bare ``#anchor``), outside fenced blocks and inline code."""
    found, fence = [], None
    for number, line in enumerate(open(path, encoding="utf-8").read().splitlines(), 1):
        opening = _FENCE.match(line)
        if opening:
            marker = opening.group(2)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            continue
        if fence is not None:
            continue
        for target in _LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith("#"):
                found.append((number, target))
    return found


def test_the_link_finder_sees_links_and_images(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("[a](x.md#part) ![b](img/y.png \"title\") [c](https://e.org) [d](#top) `[e](code.md)`\n"
                   "```text\n[f](in_a_block.md)\n```\n[g](../z/)\n")
    assert relative_links(str(doc)) == [(1, "x.md#part"), (1, "img/y.png"), (5, "../z/")]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_point_to_files(doc):
    """Every link and image of the :data:`DOCS` that points into the repository finds its file or folder."""
    folder = os.path.dirname(os.path.join(ROOT, doc))
    missing = [f"{doc}:{line}: {target}" for line, target in relative_links(os.path.join(ROOT, doc))
               if not os.path.exists(os.path.join(folder, target.split("#")[0]))]
    assert not missing, "links to nothing: " + "; ".join(missing)


@pytest.mark.parametrize("doc", [d for d in DOCS if python_blocks(os.path.join(ROOT, d))])  # docs with code
def test_python_blocks_run_as_written(doc, tmp_path, monkeypatch):
    blocks = python_blocks(os.path.join(ROOT, doc))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNGRAPH_CACHE", str(tmp_path / "cache"))
    namespace: dict = {"__name__": "__main__"}
    for line, source in blocks:
        code = compile("\n" * (line - 1) + source, os.path.join(ROOT, doc), "exec")
        start = time.perf_counter()
        exec(code, namespace)  # noqa: S102 - the documentation's own code
        seconds = time.perf_counter() - start
        assert seconds < BLOCK_SECONDS, f"{doc}:{line}: the block took {seconds:.1f} s; keep documentation blocks small"
