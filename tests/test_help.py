"""``--help`` at every level of the ``nngraph`` command, found by walking it (not from a list that a new command
could miss): each has a usage line naming it, a description in whole sentences, and help for every flag of the
library's own parsers."""
from __future__ import annotations

import argparse
import re

import pytest

from nngraph import cli
from nngraph.zoo.__main__ import build_parser as zoo_parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def walk() -> list[tuple[str, ...]]:
    """Every command line that takes ``--help``: the top level, each command, each zoo command, each task."""
    found: list[tuple[str, ...]] = [()]
    for command in cli.COMMANDS:
        if command in cli.PACKAGE_COMMANDS and command not in cli._registered("COMMANDS"):
            continue
        found.append((command,))
    found += [("zoo", name) for name in _subcommands(zoo_parser())]
    found += [("task", name) for name in cli._registered("TASKS")]
    return found


def _help(argv: tuple[str, ...], capsys) -> str:
    try:
        code = cli.main([*argv, "--help"])
    except SystemExit as exit:  # argparse's --help
        code = exit.code
    assert code == 0, argv
    return capsys.readouterr().out


def test_the_walk_finds_every_level():
    lines = walk()
    assert {(), ("convert",), ("zoo",), ("zoo", "import"), ("zoo", "summary"), ("task",)} <= set(lines)
    assert len([line for line in lines if line[:1] == ("zoo",)]) >= 6  # zoo and its five commands


@pytest.mark.parametrize("argv", walk(), ids=lambda argv: " ".join(argv) or "nngraph")
def test_every_level_has_a_whole_description(argv, capsys):
    out = _help(argv, capsys)
    assert out.startswith(f"usage: nngraph {' '.join(argv)}".rstrip()), out[:200]
    paragraphs = out.split("\n\n")
    description = paragraphs[1] if len(paragraphs) > 1 else ""
    assert description.strip() and not description.startswith(("options:", "positional arguments:")), \
        f"nngraph {' '.join(argv)} --help has no description"
    text = " ".join(description.split())
    assert re.search(r"[.)]$|:$", text), f"nngraph {' '.join(argv)} --help stops mid-sentence: {text!r}"
    assert len(text.split()) >= 5, f"nngraph {' '.join(argv)} --help: {text!r} says too little"


def _own_parsers():
    for command in ("convert", "inspect", "verify"):
        yield (command,), cli._model_parser(command)
    for name, parser in _subcommands(zoo_parser("nngraph zoo")).items():
        yield ("zoo", name), parser


@pytest.mark.parametrize("argv, parser", list(_own_parsers()),
                         ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_every_flag_of_the_library_s_commands_has_help(argv, parser):
    missing = [a.option_strings or [a.dest] for a in parser._actions if not a.help]
    assert not missing, f"nngraph {' '.join(argv)}: flags without help: {missing}"
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"--threads", "--debug"} <= flags, f"nngraph {' '.join(argv)} lacks the common flags"
