"""Under torchrun only rank 0 prints (the rank comes from ``RANK`` before the process group exists)."""
from __future__ import annotations

import argparse

from tasks.accuracy_prediction import task as accuracy_prediction
from tasks.common.harness import run_main
from tasks.common.report import row


def _parser():
    return argparse.ArgumentParser()


def _run(args):
    print("stats_gbm: kendall tau 0.5000", flush=True)  # a per-method progress line
    return [row("t", "stats_gbm", "kendall_tau[test]", 0.5)]


def test_rank_0_prints_progress_lines_and_the_table(monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    assert run_main(_run, _parser, []) == 0
    out = capsys.readouterr().out
    assert "stats_gbm: kendall tau 0.5000" in out and "| t | stats_gbm | kendall_tau[test] |" in out


def test_other_ranks_print_nothing(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    assert run_main(_run, _parser, []) == 0
    assert capsys.readouterr().out == ""
    print("after")  # standard output is restored afterwards
    assert capsys.readouterr().out == "after\n"


def test_a_task_on_rank_1_prints_nothing(clf_zoo, tmp_path, monkeypatch, capsys):
    argv = ["--zoo", clf_zoo, "--methods", "stats_gbm", "--gbm-iters", "5", "--holdout-family", "", "--no-progress"]
    monkeypatch.setenv("RANK", "1")
    assert accuracy_prediction.main([*argv, "--out", str(tmp_path / "rank1")]) == 0
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    assert accuracy_prediction.main([*argv, "--out", str(tmp_path / "rank0")]) == 0
    out = capsys.readouterr().out
    assert "stats_gbm: kendall tau" in out and "| accuracy_prediction | stats_gbm |" in out
