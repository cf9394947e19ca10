"""The filter of tasks.generation: keeping the samples whose predicted accuracy is nearest their target or at least
it, and the weights-only predictor on a latent generator's codes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.common.metrics import kendall_tau
from tasks.generation.filtering import CodeAccuracyPredictor, select_at_least, select_nearest


def test_select_nearest_against_a_loop():
    rng = np.random.default_rng(0)
    target = np.repeat([0.9, 0.2, 0.5], 7)[rng.permutation(21)]  # (21,) targets in any order
    predicted = rng.random(21)
    kept = select_nearest(predicted, target, 3)
    expected = []
    for t in sorted(set(target)):  # the obvious way: every sample of the target, sorted by distance
        pairs = sorted((abs(predicted[i] - t), i) for i in range(21) if target[i] == t)
        expected += [i for _, i in pairs[:3]]
    assert kept.tolist() == expected
    assert target[kept].tolist() == [0.2] * 3 + [0.5] * 3 + [0.9] * 3
    with pytest.raises(ValueError, match="cannot keep 8"):
        select_nearest(predicted, target, 8)
    last = rng.random(21) < 0.5  # (21,) flagged samples (copies): kept only when too few others
    kept = select_nearest(predicted, target, 3, last)
    expected = []
    for t in sorted(set(target)):
        pairs = sorted((bool(last[i]), abs(predicted[i] - t), i) for i in range(21) if target[i] == t)
        expected += [i for _, _, i in pairs[:3]]
    assert kept.tolist() == expected
    assert last[kept].sum() == sum(max(0, 3 - int((~last[target == t]).sum())) for t in set(target))


def _at_least_by_loop(predicted, target, per_target, margin, last) -> list[int]:
    """The obvious way: per target, the qualifying samples (predicted >= target + margin) by their distance above
    the floor, then the others by their distance below it; flagged samples after all unflagged ones."""
    out = []
    for t in sorted(set(target)):
        floor = t + margin
        ranked = sorted((bool(last[i]), predicted[i] < floor, abs(predicted[i] - floor), i)
                        for i in range(len(target)) if target[i] == t)
        out += [i for *_, i in ranked[:per_target]]
    return out


def test_select_at_least_on_a_known_case():
    predicted = np.array([0.50, 0.62, 0.59, 0.71, 0.60, 0.40, 0.90, 0.66, 0.86, 0.70])
    target = np.array([0.6] * 5 + [0.8] * 5)
    # 0.6: at least 0.6 are 0.60 (4), 0.62 (1), 0.71 (3), nearest first; 0.8: only 0.86 (8) and 0.90 (6)
    # qualify, then the highest below: 0.70 (9)
    assert select_at_least(predicted, target, 3).tolist() == [4, 1, 3, 8, 6, 9]
    assert select_nearest(predicted, target, 3).tolist() == [4, 2, 1, 8, 6, 9]  # 0.59 is nearer 0.6 than 0.62
    # a margin of 0.05: at 0.6 the floor is 0.65 (only 0.71 qualifies, then 0.62 and 0.60, the highest below);
    # at 0.8 the floor is 0.85 (0.86, 0.90, then 0.70)
    assert select_at_least(predicted, target, 3, margin=0.05).tolist() == [3, 1, 4, 8, 6, 9]
    last = np.zeros(10, dtype=bool)
    last[[4, 8]] = True  # flagged: kept only when too few others
    assert select_at_least(predicted, target, 3, last=last).tolist() == [1, 3, 2, 6, 9, 7]
    with pytest.raises(ValueError, match="margin must be"):
        select_at_least(predicted, target, 3, margin=-0.1)
    with pytest.raises(ValueError, match="cannot keep 6"):
        select_at_least(predicted, target, 6)


def test_select_at_least_against_a_loop():
    rng = np.random.default_rng(1)
    for trial in range(20):
        target = np.repeat(rng.random(4).round(2), 9)[rng.permutation(36)]  # (36,) targets in any order
        predicted = rng.random(36)
        predicted[rng.choice(36, 4)] = target[rng.choice(36, 4)]  # exact hits at the floor (margin 0)
        margin = [0.0, 0.1][trial % 2]
        last = rng.random(36) < 0.3
        kept = select_at_least(predicted, target, 4, margin, last)
        assert kept.tolist() == _at_least_by_loop(predicted, target, 4, margin, last)


def test_at_least_keeps_samples_above_their_target_where_nearest_centres_them():
    """With an exact predictor (prediction = accuracy) the kept samples' accuracies are at least their targets, so
    their median is at least the targets'; nearest keeps half of them below. The order of the targets is kept
    (tau near 1 for both). Fails if the rule picks the nearest or drops the floor."""
    rng = np.random.default_rng(0)
    levels = np.linspace(0.3, 0.9, 8)
    pool_target = np.repeat(levels, 64)  # (512,)
    accuracy = np.clip(pool_target + rng.normal(0, 0.08, 512), 0, 1)  # (512,) a sampler around its target
    target = np.repeat(levels, 8)
    at_least = select_at_least(accuracy, pool_target, 8)
    nearest = select_nearest(accuracy, pool_target, 8)
    assert (accuracy[at_least] >= target).all()
    assert (accuracy[nearest] < target).sum() >= 16
    assert np.median(accuracy[at_least]) >= np.median(target) > np.median(accuracy[nearest]) - 0.01
    assert kendall_tau(target, accuracy[at_least]) > 0.9 and kendall_tau(target, accuracy[nearest]) > 0.9
    above = select_at_least(accuracy, pool_target, 8, margin=0.03)
    assert (accuracy[above] >= target + 0.03).all()


def test_the_predictor_reads_accuracy_from_the_codes_in_any_neuron_order(tmp_path):
    """On a zoo whose 'accuracy' is a linear function of the aligned code, the predictor recovers it, for the
    zoo's graphs relabelled too, and its held-out tau is high; on a shuffled accuracy it is not. One hidden
    layer, as the task's MLP: weight matching is then an exact assignment, so the frame does not depend on the
    neuron order (for deeper nets its coordinate descent may end elsewhere)."""
    import nngraph
    from torch import nn

    from nngraph.generate import LatentFlowGenerator

    inputs = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    models = []
    for seed in range(24):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)))
    graphs = [nngraph.to_graph(m, inputs) for m in models]
    acc = torch.linspace(0.1, 0.9, 24)
    INPUTS = inputs
    gen = LatentFlowGenerator(rank=4, hidden_dim=8, num_layers=1)
    gen.fit(graphs, acc, template=models[0], example_inputs=INPUTS, out_dir=str(tmp_path / "g"), epochs=1,
            batch_size=8, progress=False)
    codes = gen.encode(graphs).numpy()  # (24, 4)
    truth = 0.5 + 0.1 * codes[:, 0] - 0.05 * codes[:, 2]  # (24,)
    runs = np.arange(24) // 2
    predictor = CodeAccuracyPredictor(gen, models[0]).fit(graphs, truth, runs)
    assert predictor.heldout_tau > 0.9
    layout = nngraph.build_layout(models[0], (INPUTS,))
    generator = torch.Generator().manual_seed(0)
    moved = [layout.permute_graph(g, layout.random_node_permutation(generator)) for g in graphs]
    np.testing.assert_allclose(predictor.predict(moved), truth, atol=2e-3)
    shuffled = np.random.default_rng(0).permutation(truth)
    assert CodeAccuracyPredictor(gen, models[0]).fit(graphs, shuffled, runs).heldout_tau < 0.5
