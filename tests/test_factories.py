"""nngraph.factories: ``--factory package.module:function`` resolved the same way by ``nngraph convert`` and
``nngraph zoo import``: from ``sys.path`` or the current directory, ``sys.path`` left as it was."""
from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from nngraph.cli import main
from nngraph.errors import SpecError
from nngraph.factories import resolve_factory
from nngraph.zoo import Zoo

MODULE = "nngraph_test_user_models"  # a name no other test imports: sys.modules cannot hold it already


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A user's folder, the current directory, holding ``<MODULE>.py`` (``make()``), two state dicts and a table;
    neither it nor ``""`` is on ``sys.path`` (as under the ``nngraph`` console script)."""
    (tmp_path / f"{MODULE}.py").write_text("from torch import nn\n\n\ndef make():\n"
                                           "    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))\n\n\n"
                                           "NOT_A_FUNCTION = 3\n")
    (tmp_path / "ckpts").mkdir()
    for i in range(2):
        torch.manual_seed(i)
        save_file(_mlp().state_dict(), str(tmp_path / "ckpts" / f"m{i}.safetensors"))
    (tmp_path / "labels.csv").write_text("file,test_acc,split\nm0,0.5,train\nm1,0.6,test\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield tmp_path
    sys.modules.pop(MODULE, None)


def test_convert_and_zoo_import_find_a_factory_in_the_current_directory(user_folder, capsys):
    before = list(sys.path)
    assert main(["convert", "ckpts/m0.safetensors", "--factory", f"{MODULE}:make", "-o", "g.safetensors"]) == 0, \
        capsys.readouterr().err
    assert sys.path == before
    del sys.modules[MODULE]  # the zoo import must find the module itself, not reuse the one convert imported
    assert main(["zoo", "import", "ckpts", "--out", "zoo", "--factory", f"{MODULE}:make", "--input-shape", "3",
                 "--table", "labels.csv", "--no-progress"]) == 0, capsys.readouterr().err
    assert len(Zoo("zoo")) == 2 and sys.path == before


@pytest.mark.parametrize("spec, message", [
    ("nomodule", "'nomodule' is not package.module:function"),
    ("nngraph_no_such_module_x:make", "'nngraph_no_such_module_x:make': cannot import 'nngraph_no_such_module_x' "
                                      "(No module named 'nngraph_no_such_module_x'); is it on PYTHONPATH or in the "
                                      "current directory"),
    (f"{MODULE}:nothing", f"'{MODULE}:nothing': {MODULE} has no function 'nothing'"),
    (f"{MODULE}:NOT_A_FUNCTION", f"'{MODULE}:NOT_A_FUNCTION': {MODULE}.NOT_A_FUNCTION is a int, not a function"),
])
def test_a_bad_factory_is_the_same_one_line_for_both_commands(user_folder, capsys, spec, message):
    with pytest.raises(SpecError) as info:
        resolve_factory(spec)
    assert str(info.value).startswith(f"factory {message}")
    assert main(["convert", "ckpts/m0.safetensors", "--factory", spec, "-o", "g.safetensors"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nngraph convert: error: --factory {message}") and err.count("\n") == 1, err
    assert main(["zoo", "import", "ckpts", "--out", "zoo", "--factory", spec, "--input-shape", "3",
                 "--table", "labels.csv", "--no-progress"]) == 1
    err = capsys.readouterr().err
    # the import checks the spec's format first (its own words); an import or a lookup fails in the shared resolver
    expected = "'factory' must be 'package.module:function', got 'nomodule'" if ":" not in spec else f"factory {message}"
    assert err.startswith("nngraph zoo import: error: ") and expected in err and err.count("\n") == 1, err
