"""tasks.generation.inr at toy sizes: the INR zoo, the class-conditional generators, the rows, the picture."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from tasks.common.summarize import run_seed
from tasks.generation import inr

ARGV = ["--images", "40", "--resolution", "8", "--hidden", "8", "--epochs", "1", "--repeats", "1", "--rank", "4",
        "--steps", "2", "--per-class", "2", "--show", "1", "--no-progress"]


def test_the_task_runs_and_reports_every_method_and_digit(tmp_path):
    out = str(tmp_path / "inr")
    assert inr.main(["--out", out, *ARGV]) == 0
    rows = json.load(open(os.path.join(out, "results.json")))
    assert {r["method"] for r in rows} == {"images", "zoo", *inr.METHODS}
    for method in ("zoo", *inr.METHODS):
        metrics = {r["metric"] for r in rows if r["method"] == method}
        assert {"recognised", "nearest_aligned_distance"} | {f"recognised_digit{c}" for c in range(10)} <= metrics
    assert all(0.0 <= r["value"] <= 1.0 for r in rows if r["metric"].startswith("recognised"))
    assert os.path.exists(os.path.join(out, "samples.png"))
    zoo = torch.load(os.path.join(out, "zoo.pt"), weights_only=True)
    assert len(zoo["states"]) == len(zoo["labels"]) == 40
    assert inr.main(["--out", out, *ARGV]) == 0  # a second run reads the zoo and the fitted generators back
    again = json.load(open(os.path.join(out, "results.json")))
    assert [r["value"] for r in again] == [r["value"] for r in rows]
    assert inr.main(["--out", out, *ARGV, "--methods", "latent,latent_twin", "--filter-pool", "3",
                     "--reject-copies"]) == 0
    pooled = json.load(open(os.path.join(out, "results.json")))
    notes = [r["note"] for r in pooled if r["metric"] == "recognised" and r["method"].startswith("latent")]
    assert len(notes) == 2 and all("kept 2 of 6 per digit" in n and "copies dropped" in n for n in notes)


def test_every_row_records_the_runs_seed(tmp_path):
    # tasks.common.summarize --paired pairs runs by the seed their rows record
    out = str(tmp_path / "inr")
    assert inr.main(["--out", out, *ARGV, "--methods", "gaussian", "--seed", "4"]) == 0
    rows = json.load(open(os.path.join(out, "results.json")))
    assert len(rows) > 10 and all(r.get("seed") == 4 for r in rows)
    assert run_seed(rows) == 4


def test_shared_init_starts_every_inr_alike(tmp_path):
    """With one shared initialisation, the INRs of two images differ less than with one initialisation each
    (fitting barely moves a SIREN's first layer, its bank of frequencies)."""
    spread = {}
    for init in inr.INITS:
        args = inr.build_parser().parse_args(["--out", str(tmp_path / init), "--init", init, *ARGV])
        os.makedirs(args.out)
        zoo = inr.build_zoo(args)
        w = torch.stack([s["0.weight"].flatten() for s in zoo["states"]])  # (M, h * 2)
        spread[init] = float((w - w.mean(0)).norm(dim=1).mean())
    assert spread["shared"] < 0.5 * spread["own"]


class _Reader:
    """A classifier that reads the digit from the brightest pixel's row: a known answer for every image."""

    def predict(self, x):
        return np.asarray(x).reshape(len(x), 10, 10).max(2).argmax(1)


def test_recognition_rows_count_hits_per_digit():
    images = torch.zeros(6, 10, 10)
    truth = np.array([0, 0, 3, 3, 3, 7])
    read = [0, 5, 3, 3, 1, 7]  # hits: 1 of 2 zeros, 2 of 3 threes, the seven
    for i, r in enumerate(read):
        images[i, r, 4] = 1.0
    rows = {r["metric"]: r["value"] for r in inr.recognition_rows("m", _Reader(), images, truth)}
    assert rows == {"recognised": 4 / 6, "recognised_digit0": 0.5, "recognised_digit3": 2 / 3, "recognised_digit7": 1.0}


def test_the_projection_diagnostic_is_exact_at_full_rank(tmp_path):
    """tasks.diagnostics.latent_projection on a run whose code has rank M - 1: the zoo INRs are in the span, so
    the projected renders are (in the median) the INRs' own; at rank 2 they are not. (Not every INR: with two
    hidden layers weight matching to the decoded mean may end in another optimum than the fit's alignment.)"""
    from tasks.diagnostics import latent_projection

    for rank, exact in (("60", True), ("2", False)):
        out = str(tmp_path / rank)
        assert inr.main(["--out", out, *ARGV, "--methods", "latent", "--rank", rank]) == 0
        r = latent_projection.project_zoo(out)
        assert r["rank"] == (39 if exact else 2)
        assert (r["psnr"] > 60) == exact
        assert 0 <= r["recognised"] <= 1 and 0 <= r["recognised_own"] <= 1


class _Pool:
    """A stand-in generator: per digit, zoo INRs relabelled (copies) or new weights, in a fixed draw order."""

    def __init__(self, zoo, new, layout, pattern):
        self.zoo, self.new, self.layout, self.pattern = zoo, new, layout, pattern

    def sample(self, template, n, condition, **kwargs):
        g = torch.Generator().manual_seed(0)
        out, made = [], {"copy": 0, "new": 0}
        for kind in self.pattern:
            if kind == "copy":
                graph = self.zoo[made[kind] % len(self.zoo)]
                out.append(self.layout.permute_graph(graph, self.layout.random_node_permutation(g)))
            else:
                out.append(self.new[made[kind]])
            made[kind] += 1
        assert len(out) == n == len(condition)
        return out


def test_the_pool_drops_copies_by_weights_and_keeps_draw_order():
    """``draw_pool`` with ``--reject-copies``: samples that are relabelled zoo INRs are dropped and the first others
    of each digit kept in draw order; without it the first samples are kept, copies included. The novelty
    criterion is checked to call the relabelled ones copies and the new ones not."""
    from argparse import Namespace

    import nngraph
    from torch import nn

    from tasks.generation.task import Novelty

    inputs = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))

    def mlp(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1))

    zoo = [nngraph.to_graph(mlp(s), inputs) for s in range(5)]
    new = [nngraph.to_graph(mlp(100 + s), inputs) for s in range(6)]
    novel = Novelty(zoo, np.arange(5), mlp(0), inputs)
    layout = nngraph.build_layout(mlp(0), (inputs,))
    # digit 0: copy copy new copy new new; digit 1: new copy copy copy copy new
    pattern = ["copy", "copy", "new", "copy", "new", "new", "new", "copy", "copy", "copy", "copy", "new"]
    gen = _Pool(zoo, new, layout, pattern)
    pool = gen.sample(None, 12, np.zeros(12))
    assert novel.copies(pool).tolist() == [k == "copy" for k in pattern]  # the premise
    classes = np.repeat([0, 1], 2)
    args = Namespace(per_class=2, filter_pool=3, pool_cap=None, reject_copies=True, steps=2, guidance=1.0, seed=0,
                     code_noise=0.0)
    kept, note = inr.draw_pool(gen, mlp(0), classes, args, novel)
    expected = [pool[i] for i in (2, 4, 6, 11)]
    assert all(torch.equal(a.edge_attr, b.edge_attr) for a, b in zip(kept, expected, strict=True))
    assert novel(kept)["frac_copies"] == 0.0 and "copies dropped (7 of 12" in note
    args.reject_copies = False
    kept, note = inr.draw_pool(gen, mlp(0), classes, args, novel)
    expected = [pool[i] for i in (0, 1, 6, 7)]
    assert all(torch.equal(a.edge_attr, b.edge_attr) for a, b in zip(kept, expected, strict=True))
    assert novel(kept)["frac_copies"] == 0.75 and "copies" not in note  # copy copy | new copy


class _Queues:
    """A stand-in generator that draws, per digit, the next of a fixed list of kinds (a relabelled zoo INR, a copy,
    or new weights) on every call, and records each call's digits and seed."""

    def __init__(self, zoo, new, layout, kinds: dict):
        self.zoo, self.new, self.layout = zoo, iter(new), layout
        self.kinds = {c: iter(k) for c, k in kinds.items()}
        self.calls, self.made = [], []  # (digits, seed) per call; every graph drawn, with its kind, in draw order
        self.g = torch.Generator().manual_seed(0)

    def sample(self, template, n, condition, seed=None, **kwargs):
        digits = [int(c) for c in condition]
        assert len(digits) == n
        self.calls.append((digits, seed))
        out = []
        for c in digits:
            kind = next(self.kinds[c])
            graph = self.zoo[len(self.made) % len(self.zoo)]
            out.append(self.layout.permute_graph(graph, self.layout.random_node_permutation(self.g))
                       if kind == "copy" else next(self.new))
            self.made.append((kind, out[-1]))
        return out


def test_the_pool_grows_for_a_digit_short_of_non_copies():
    """``--pool-cap``: a digit with fewer than ``--per-class`` non-copies draws ``--filter-pool`` rounds more (a
    new seed each, only the short digits) until it has enough or reaches the cap; its first non-copies in draw
    order are kept. Digit 0 finds its two in the third round, digit 1 needs none, digit 2 (copies only) stops at
    the cap and keeps its first copies. Without a cap the pool does not grow and digit 0 keeps copies."""
    from argparse import Namespace

    import nngraph
    from torch import nn

    from tasks.generation.task import Novelty

    inputs = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))

    def mlp(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1))

    zoo = [nngraph.to_graph(mlp(s), inputs) for s in range(5)]
    novel = Novelty(zoo, np.arange(5), mlp(0), inputs)
    layout = nngraph.build_layout(mlp(0), (inputs,))
    kinds = {0: ["copy", "copy", "copy", "new", "copy", "new", "new", "new"], 1: ["new"] * 8, 2: ["copy"] * 12}

    def draw(pool_cap):
        gen = _Queues(zoo, [nngraph.to_graph(mlp(100 + s), inputs) for s in range(20)], layout, kinds)
        args = Namespace(per_class=2, filter_pool=1, pool_cap=pool_cap, reject_copies=True, steps=2, guidance=1.0,
                         seed=7, code_noise=0.0)
        inr.check_pool(args)
        kept, note = inr.draw_pool(gen, mlp(0), np.repeat([0, 1, 2], 2), args, novel)
        return gen, kept, note

    gen, kept, note = draw(pool_cap=4)  # up to 8 draws per digit
    assert novel.copies([g for _, g in gen.made]).tolist() == [k == "copy" for k, _ in gen.made]  # the premise
    assert [d for d, _ in gen.calls] == [[0, 0, 1, 1, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2], [2, 2]]
    seeds = [s for _, s in gen.calls]
    assert seeds[0] == 7 and len(set(seeds)) == 4  # round 0 is the plain draw's seed, each later round its own
    drawn = {c: [g for (k, g), d in zip(gen.made, sum((d for d, _ in gen.calls), [])) if d == c] for c in (0, 1, 2)}
    expected = [drawn[0][3], drawn[0][5], drawn[1][0], drawn[1][1], drawn[2][0], drawn[2][1]]
    assert all(torch.equal(a.edge_attr, b.edge_attr) for a, b in zip(kept, expected, strict=True))
    assert novel.copies(kept).tolist() == [False] * 4 + [True] * 2
    assert "pool grown in 3 more rounds (cap 8 per digit; drawn 0: 6, 2: 8)" in note
    gen, kept, note = draw(pool_cap=None)  # no growth: digit 0 keeps its first two draws, both copies
    assert len(gen.calls) == 1 and novel.copies(kept).tolist() == [True, True, False, False, True, True]
    assert "grown" not in note


@pytest.mark.parametrize("pool,cap,reject,message", [
    (0, None, True, "--filter-pool must be >= 1"),
    (4, 2, True, "--pool-cap (2) must be at least --filter-pool (4)"),
    (4, 8, False, "add --reject-copies"),
])
def test_pool_settings_that_cannot_be_honoured_are_one_line_errors(pool, cap, reject, message):
    from argparse import Namespace

    with pytest.raises(ValueError, match=re.escape(message)):
        inr.check_pool(Namespace(filter_pool=pool, pool_cap=cap, reject_copies=reject))
