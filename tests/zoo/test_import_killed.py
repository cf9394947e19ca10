"""A ``zoo import`` killed (SIGKILL) half way leaves an unfinished import that every reader names in one line
(``Zoo``, ``nngraph zoo summary``, ``ZooDataset``) and that the same command finishes; a built zoo whose manifest
holds fewer models than its ``zoo.json`` says is named too; docs/zoos.md gives the table format of the help."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from nngraph.cli import main
from nngraph.data import ZooDataset
from nngraph.errors import ZooError
from nngraph.zoo import Zoo, build_model, import_zoo
from nngraph.zoo.importer import CHUNK

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = {"family": "mlp", "in_shape": [1, 1, 3], "hidden": [4], "num_classes": 2, "act": "relu", "norm": "none"}
N = 2 * CHUNK + 2  # three units of work: the kill lands after the first is stored


def _folder(src: str) -> str:
    os.makedirs(src)
    rows = []
    for i in range(N):
        torch.manual_seed(i)
        save_file(build_model(SPEC).state_dict(), os.path.join(src, f"m{i:03d}.safetensors"))
        rows.append(f"m{i:03d},{(i % 10) / 10:.1f}\n")
    table = os.path.join(src, "..", "labels.csv")
    with open(table, "w") as f:
        f.write("file,test_acc\n" + "".join(rows))
    return table


def _import_killed_in_the_second_unit(src: str, out: str, table: str) -> None:
    """Run the import in another process that SIGKILLs itself when it starts on the second unit of models (the
    first stored: its manifest lines and weights written), as a user's Ctrl-\\ or the OOM killer would."""
    script = textwrap.dedent(f"""
        import os, signal
        import nngraph.zoo.importer as importer

        real = importer.run_units
        def run_units(root, units, compute, **kwargs):
            def dying(unit):
                if unit.index == 1:
                    os.kill(os.getpid(), signal.SIGKILL)
                return compute(unit)
            return real(root, units, dying, **kwargs)
        importer.run_units = run_units
        importer.import_zoo({src!r}, {out!r}, spec={SPEC!r}, table={table!r}, progress=False)
    """)
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_a_killed_import_is_named_by_every_reader_and_finished_by_a_rerun(tmp_path, capsys):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    table = _folder(src)
    _import_killed_in_the_second_unit(src, out, table)
    assert not os.path.exists(os.path.join(out, "zoo.json"))  # nothing claims a finished zoo
    unfinished = rf"{out} is an unfinished import \({CHUNK} of {N} models stored, no zoo.json\): rerun"
    with pytest.raises(ZooError, match=unfinished):
        Zoo(out)
    with pytest.raises(ZooError, match=unfinished):
        ZooDataset(out, cache_dir=str(tmp_path / "cache"), progress=False)
    assert main(["zoo", "summary", out]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "is an unfinished import" in err, err
    assert len(Zoo(out, unfinished=True)) == CHUNK

    assert import_zoo(src, out, spec=SPEC, table=table, progress=False) == N - CHUNK  # the rest, not all again
    zoo = Zoo(out)
    assert len(zoo) == N and sorted(e["index"] for e in zoo.entries) == list(range(N))
    for entry in zoo.entries[CHUNK - 2:CHUNK + 2]:  # on both sides of the kill
        zoo.verify(entry)
    assert main(["zoo", "summary", out]) == 0


def test_a_zoo_with_fewer_models_than_its_settings_say_is_named(tmp_path, capsys):
    src, out = str(tmp_path / "src"), str(tmp_path / "zoo")
    table = _folder(src)
    import_zoo(src, out, spec=SPEC, table=table, progress=False)
    manifest = os.path.join(out, "manifest.jsonl")
    with open(manifest) as f:
        lines = f.readlines()
    with open(manifest, "w") as f:  # as a build killed after 3 models whose zoo.json was written first
        f.writelines(lines[:3])
    assert json.load(open(os.path.join(out, "zoo.json")))["num_models"] == N
    assert main(["zoo", "summary", out]) == 0
    assert f"unfinished: 3 of {N} models stored" in capsys.readouterr().out
    with pytest.warns(UserWarning, match=rf"{out} is unfinished: 3 of {N} models stored .* rerun the command"):
        dataset = ZooDataset(out, "all", cache_dir=str(tmp_path / "cache"), progress=False)
    assert len(dataset) == 3


def test_the_table_format_in_the_docs_is_the_help_s():
    from nngraph.zoo.__main__ import IMPORT_DESCRIPTION

    block = IMPORT_DESCRIPTION[IMPORT_DESCRIPTION.index("table (--table):"):]
    with open(os.path.join(ROOT, "docs", "zoos.md"), encoding="utf-8") as f:
        docs = f.read()
    assert f"```text\n{block}\n```" in docs, "copy the table format of nngraph zoo import --help into docs/zoos.md"
    assert "test_acc   required for classifiers" in block and "file       required" in block


def test_a_table_without_the_target_column_names_it_and_lists_the_table_s_own_columns(tmp_path, capsys):
    src = str(tmp_path / "src")
    _folder(src)
    table = tmp_path / "no_acc.csv"
    table.write_text("file,split,epoch\n" + "".join(f"m{i:03d},train,3\n" for i in range(N)))
    out = str(tmp_path / "zoo")
    assert main(["zoo", "import", src, "--out", out, "--spec", json.dumps(SPEC), "--table", str(table),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not os.path.exists(out)
    assert f"table {table} has no 'test_acc' column (the accuracy-prediction target, required for classifiers; " \
           "its columns: ['epoch', 'file', 'split'])" in err, err
