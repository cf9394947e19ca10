"""Plots are written without a display, and without switching a backend the user chose."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**environ, "PYTHONPATH": ROOT, **env})


def test_importing_the_library_and_the_task_reports_does_not_touch_matplotlib():
    out = _python("import sys, nngraph, nngraph.cli, nngraph.plotting, tasks.common.report, tasks.inr_editing; "
                  "sys.exit('matplotlib' in sys.modules)")
    assert out.returncode == 0, out.stderr


def test_a_backend_the_user_chose_is_kept_and_agg_is_the_default():
    chosen = _python("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot; "
                     "from nngraph.plotting import pyplot; pyplot(); print(matplotlib.get_backend())")
    assert chosen.stdout.strip() == "svg", chosen.stderr
    by_env = _python("import matplotlib; from nngraph.plotting import pyplot; pyplot(); print(matplotlib.get_backend())",
                     MPLBACKEND="svg")
    assert by_env.stdout.strip() == "svg", by_env.stderr
    default = _python("import matplotlib; from nngraph.plotting import pyplot; pyplot(); print(matplotlib.get_backend())")
    assert default.stdout.strip().lower() == "agg", default.stderr


def test_a_task_plot_is_written(tmp_path):
    import numpy as np

    from tasks.common.report import plot_edit_grid

    path = plot_edit_grid({"a": np.zeros((2, 4, 4)), "b": np.ones((2, 4, 4))}, str(tmp_path / "grid.png"))
    assert os.path.getsize(path) > 100
