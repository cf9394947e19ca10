"""The filter of tasks.generation: keeping the samples whose predicted accuracy is nearest their target, and the
weights-only predictor on a latent generator's codes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.generation.filtering import CodeAccuracyPredictor, select_nearest


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
