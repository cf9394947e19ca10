"""tasks.common.summarize: mean ± std over seeds and learning curves, against a plain loop."""
import json
import math
import statistics

import pytest

from tasks.common import summarize
from tasks.common.report import row


def _run(tmp_path, name, n_train, values, seed=None):
    rows = [row("t", m, "tau", v, 10.0 + i, note=f"{n_train} train / 5 test models")
            for i, (m, v) in enumerate(values.items())]
    rows = rows if seed is None else [{**r, "seed": seed} for r in rows]  # as save_run(..., seed=) writes them
    d = tmp_path / name
    d.mkdir()
    (d / "results.json").write_text(json.dumps(rows))
    return str(d)


def test_over_seeds_is_mean_and_sample_std(tmp_path):
    seeds = [{"enc": 0.5, "gbm": 0.4}, {"enc": 0.7, "gbm": 0.4}, {"enc": 0.6, "gbm": 0.1}]
    dirs = [_run(tmp_path, f"s{i}", 100, v) for i, v in enumerate(seeds)]
    out = {r["method"]: r for r in summarize.over_seeds([summarize.load_rows(d) for d in dirs])}
    for m in ("enc", "gbm"):
        vals = [s[m] for s in seeds]
        assert out[m]["mean"] == pytest.approx(statistics.mean(vals))
        assert out[m]["std"] == pytest.approx(statistics.stdev(vals))
        assert out[m]["n"] == 3
    table = summarize.format_seed_table(list(out.values()))
    assert "| enc | 0.600 ± 0.100 |" in table


def test_rows_missing_from_a_run_are_left_out(tmp_path):
    a = _run(tmp_path, "a", 10, {"enc": 0.5, "gbm": 0.4})
    b = _run(tmp_path, "b", 10, {"enc": 0.7})
    out = summarize.over_seeds([summarize.load_rows(a), summarize.load_rows(b)])
    assert [r["method"] for r in out] == ["enc"]


def test_learning_curve_groups_by_train_size(tmp_path):
    dirs = [_run(tmp_path, "a0", 100, {"enc": 0.2}), _run(tmp_path, "a1", 100, {"enc": 0.4}),
            _run(tmp_path, "b0", 1000, {"enc": 0.8})]
    curve = summarize.learning_curve([summarize.load_rows(d) for d in dirs], "tau")
    (s1, m1, sd1, n1), (s2, m2, sd2, n2) = curve["enc"]
    assert (s1, n1, s2, n2) == (100, 2, 1000, 1)
    assert m1 == pytest.approx(0.3) and sd1 == pytest.approx(math.sqrt(0.02)) and m2 == pytest.approx(0.8)
    png = str(tmp_path / "c.png")
    assert summarize.main([*dirs, "--curve", "tau", "--png", png]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_a_missing_run_names_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        summarize.load_rows(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no runs"):
        summarize.over_seeds([])


def test_runs_of_one_size_with_different_methods_both_count(tmp_path):
    a = _run(tmp_path, "enc", 500, {"enc": 0.6})
    b = _run(tmp_path, "gbm", 500, {"gbm": 0.5})
    curve = summarize.learning_curve([summarize.load_rows(a), summarize.load_rows(b)], "tau")
    assert curve == {"enc": [(500, 0.6, 0.0, 1)], "gbm": [(500, 0.5, 0.0, 1)]}


def test_reference_lines_on_the_curve(tmp_path, monkeypatch, capsys):
    dirs = [_run(tmp_path, "a0", 100, {"enc": 0.2}), _run(tmp_path, "b0", 1000, {"enc": 0.8})]
    drawn = {}
    real = summarize.plot_learning_curve

    def spy(curve, metric, path, references=None):
        drawn.update(references or {})
        return real(curve, metric, path, references)

    monkeypatch.setattr(summarize, "plot_learning_curve", spy)
    png = str(tmp_path / "c.png")
    assert summarize.main([*dirs, "--curve", "tau", "--png", png, "--reference", "noise ceiling=0.915",
                           "--reference", "goal = a=b=0.9"]) == 0
    assert drawn == {"noise ceiling": 0.915, "goal = a=b": 0.9}
    assert (tmp_path / "c.png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        summarize.main([*dirs, "--curve", "tau", "--png", png, "--reference", "0.9"])
    assert "LABEL=VALUE" in capsys.readouterr().err


def test_tagged_runs_become_a_method_of_their_own(tmp_path, capsys):
    dirs = [_run(tmp_path, "plain_s0", 100, {"enc": 0.2}), _run(tmp_path, "w64_s0", 100, {"enc": 0.4}),
            _run(tmp_path, "w64_s1", 1000, {"enc": 0.6})]
    assert summarize.main([*dirs, "--curve", "tau", "--tag", "w64=width 64"]) == 0
    out = capsys.readouterr().out
    assert "enc: 100: 0.200" in out and "enc (width 64): 100: 0.400 ± 0.000 (n=1), 1000: 0.600" in out
    with pytest.raises(SystemExit):
        summarize.main([*dirs, "--tag", "w64"])
    assert "TEXT=LABEL" in capsys.readouterr().err


def test_paired_differences_against_a_loop(tmp_path, capsys):
    """Runs of two settings, listed in seed order: each seed's difference, then their mean and sample std."""
    wide = [0.63, 0.62, 0.64]
    base = [0.61, 0.59, 0.61]
    dirs = [_run(tmp_path, f"w64_s{i}", 100, {"enc": v}) for i, v in enumerate(wide)]
    dirs += [_run(tmp_path, f"plain_s{i}", 100, {"enc": v, "gbm": 0.5}) for i, v in enumerate(base)]
    runs = [summarize.load_rows(d) if "w64" not in d else summarize.tag_methods(summarize.load_rows(d), "w64")
            for d in dirs]
    (out,) = summarize.paired_differences(runs, "enc (w64)", "enc")
    diffs = [w - b for w, b in zip(wide, base)]
    assert out["values"] == pytest.approx(diffs)
    assert out["mean"] == pytest.approx(statistics.mean(diffs)) and out["std"] == pytest.approx(statistics.stdev(diffs))
    assert out["first_mean"] == pytest.approx(statistics.mean(wide)) and out["n"] == 3
    # a run holding both methods pairs with itself
    (same,) = summarize.paired_differences(runs[3:], "enc", "gbm")
    assert same["values"] == pytest.approx([v - 0.5 for v in base])
    assert summarize.main([*dirs, "--tag", "w64=w64", "--paired", "enc (w64)=enc"]) == 0
    printed = capsys.readouterr().out
    assert "| tau | 0.630 ± 0.010 | 0.603 ± 0.012 | +0.027 ± 0.006 | +0.020 / +0.030 / +0.030 |" in printed


def test_paired_refuses_unmatched_runs(tmp_path, capsys):
    dirs = [_run(tmp_path, "a0", 10, {"enc": 0.5}), _run(tmp_path, "a1", 10, {"enc": 0.6}),
            _run(tmp_path, "b0", 10, {"gbm": 0.4})]
    runs = [summarize.load_rows(d) for d in dirs]
    with pytest.raises(ValueError, match="2 runs hold 'enc' and 1 hold 'gbm'"):
        summarize.paired_differences(runs, "enc", "gbm")
    with pytest.raises(ValueError, match="no run holds method 'mlp'"):
        summarize.paired_differences(runs, "enc", "mlp")
    with pytest.raises(SystemExit):
        summarize.main([*dirs, "--paired", "enc=mlp"])
    assert "no run holds method 'mlp'" in capsys.readouterr().err


def test_paired_by_the_recorded_seed_not_the_order(tmp_path, capsys):
    """A method split over two sets of run folders, listed in another order than its partner's: each run pairs
    with the run of its own seed (by order, seed 2's hybrid would meet seed 0's GBM)."""
    hyb = {0: 0.80, 1: 0.70, 2: 0.60}
    gbm = {0: 0.79, 1: 0.68, 2: 0.57}
    dirs = [_run(tmp_path, f"late_s{s}", 10, {"hyb": hyb[s]}, seed=s) for s in (2,)]
    dirs += [_run(tmp_path, f"early_s{s}", 10, {"hyb": hyb[s]}, seed=s) for s in (0, 1)]
    dirs += [_run(tmp_path, f"gbm_s{s}", 10, {"gbm": gbm[s]}, seed=s) for s in (0, 1, 2)]
    runs = [summarize.load_rows(d) for d in dirs]
    (out,) = summarize.paired_differences(runs, "hyb", "gbm")
    assert out["seeds"] == [2, 0, 1]
    assert out["values"] == pytest.approx([hyb[s] - gbm[s] for s in (2, 0, 1)])  # 0.03, 0.01, 0.02
    assert summarize.main([*dirs, "--paired", "hyb=gbm"]) == 0
    assert "+0.030 / +0.010 / +0.020" in capsys.readouterr().out


def test_paired_refuses_runs_whose_seeds_do_not_match(tmp_path, capsys):
    a = [_run(tmp_path, f"a{s}", 10, {"enc": 0.5}, seed=s) for s in (0, 1)]
    b = [_run(tmp_path, f"b{s}", 10, {"gbm": 0.4}, seed=s) for s in (0, 2)]
    with pytest.raises(SystemExit):
        summarize.main([*a, *b, "--paired", "enc=gbm"])
    err = capsys.readouterr().err
    assert "the seeds do not match: 'enc' ran with seeds [0, 1], 'gbm' with [0, 2]" in err.strip().splitlines()[-1]
    twice = _run(tmp_path, "a0_again", 10, {"enc": 0.7}, seed=0)
    with pytest.raises(ValueError, match=r"more than one run of seed \[0\] holds 'enc'"):
        summarize.paired_differences([summarize.load_rows(d) for d in [*a, twice, *b]], "enc", "gbm")
    old = _run(tmp_path, "old", 10, {"gbm": 0.4})  # a run from before the rows recorded a seed
    with pytest.raises(ValueError, match="some runs record their seed and others do not"):
        summarize.paired_differences([summarize.load_rows(d) for d in [*a, old]], "enc", "gbm")


def test_save_run_records_the_seed_on_every_row(tmp_path):
    from tasks.common.report import save_run

    rows = [row("t", "enc", "tau", 0.5), row("t", "gbm", "tau", 0.4)]
    save_run(rows, {}, [], str(tmp_path), "t", seed=3)
    assert [r["seed"] for r in summarize.load_rows(str(tmp_path))] == [3, 3]
    assert summarize.run_seed(summarize.load_rows(str(tmp_path))) == 3 and rows[0]["seed"] == 3  # returned = written


def test_fields_beside_the_value_become_metrics(tmp_path, capsys):
    """INR editing keeps background MSE and speckle beside the test MSE: --fields summarises them over seeds."""
    speckle = [0.15, 0.17, 0.16]
    background = [0.0101, 0.0112, 0.0108]
    dirs = []
    for i, (sp, bg) in enumerate(zip(speckle, background)):
        rows = [row("inr_editing", "encoder", "test_mse", 0.012 + i * 1e-4, 90.0, note="1500 train / 9 test",
                    mse_background=bg, speckle=sp),
                row("inr_editing", "noop", "test_mse", 0.0519, 0.0, note="1500 train / 9 test", speckle=0.0)]
        d = tmp_path / f"s{i}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(rows))
        dirs.append(str(d))
    runs = [summarize.expand_fields(summarize.load_rows(d), ["mse_background", "speckle"]) for d in dirs]
    out = {(r["method"], r["metric"]): r for r in summarize.over_seeds(runs)}
    assert out[("encoder", "speckle")]["mean"] == pytest.approx(statistics.mean(speckle))
    assert out[("encoder", "mse_background")]["std"] == pytest.approx(statistics.stdev(background))
    assert out[("noop", "speckle")]["mean"] == 0.0 and ("noop", "mse_background") not in out
    assert out[("encoder", "speckle")]["seconds"] is None and out[("encoder", "test_mse")]["seconds"] == 90.0
    assert summarize.main([*dirs, "--fields", "mse_background", "--digits", "5"]) == 0
    printed = capsys.readouterr().out
    mean, std = statistics.mean(background), statistics.stdev(background)
    assert f"| {mean:.5f} ± {std:.5f} |" in printed and "| 0.01210 ± 0.00010 |" in printed
    # one method holding a field on two rows would be ambiguous
    twice = [row("t", "enc", "a", 1.0, 1.0, speckle=0.1), row("t", "enc", "b", 1.0, 1.0, speckle=0.2)]
    with pytest.raises(ValueError, match="more than one row"):
        summarize.expand_fields(twice, ["speckle"])
    with pytest.raises(SystemExit):
        summarize.main([*dirs, "--digits", "-1"])
    d = tmp_path / "twice"
    d.mkdir()
    (d / "results.json").write_text(json.dumps(twice))
    with pytest.raises(SystemExit):
        summarize.main([str(d), "--fields", "speckle"])
    assert "more than one row" in capsys.readouterr().err


def test_seed_table_reduces_each_tag_on_its_own(tmp_path, capsys):
    """Ablation rows: runs of one setting per tag; every tag's seeds give their own mean ± std, and a metric
    missing from one seed of a tag still drops out of that tag only."""
    plain = [0.50, 0.54]
    flip = [0.60, 0.66]
    dirs = [_run(tmp_path, f"abl_none_s{i}", 10, {"enc": v, "gbm": 0.3}) for i, v in enumerate(plain)]
    dirs += [_run(tmp_path, "abl_flip_s0", 10, {"enc": flip[0], "gbm": 0.3}),
             _run(tmp_path, "abl_flip_s1", 10, {"enc": flip[1]})]
    assert summarize.main([*dirs, "--tag", "_none_=none", "--tag", "_flip_=flip"]) == 0
    printed = capsys.readouterr().out
    lines = {line.split(" | ")[0].strip("| "): line for line in printed.splitlines() if line.startswith("| enc")
             or line.startswith("| gbm")}
    assert f"{statistics.mean(plain):.3f} ± {statistics.stdev(plain):.3f}" in lines["enc (none)"]
    assert f"{statistics.mean(flip):.3f} ± {statistics.stdev(flip):.3f}" in lines["enc (flip)"]
    assert "gbm (none)" in lines and "gbm (flip)" not in lines
