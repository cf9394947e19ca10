"""correction_shrinkage: the least-squares factor on a stacked model's correction, checked against a brute-force
search over a fine grid of factors, its clipping to [0, 1] at both ends, and its one-line errors."""
from __future__ import annotations

import numpy as np
import pytest

from nngraph.probing import correction_shrinkage


def _grid_search(prior, pred, y) -> float:
    """The slow obvious reference: the factor of 100,001 evenly spaced in [0, 1] with the smallest squared error."""
    alphas = np.linspace(0.0, 1.0, 100_001)  # (A,)
    errors = ((prior[None] + alphas[:, None] * (pred - prior)[None] - y[None]) ** 2).sum(-1)  # (A, M) -> (A,)
    return float(alphas[errors.argmin()])


@pytest.mark.parametrize("seed", range(5))
def test_correction_shrinkage_matches_a_grid_search(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=40)
    prior = y + rng.normal(scale=0.5, size=40)
    signal = (y - prior) * rng.uniform(0.2, 0.8)  # part of the residual, plus noise: an interior optimum
    pred = prior + signal + rng.normal(scale=0.3, size=40)
    alpha = correction_shrinkage(prior, pred, y)
    assert 0.0 < alpha < 1.0
    assert alpha == pytest.approx(_grid_search(prior, pred, y), abs=2e-5)


def test_correction_shrinkage_clips_to_the_unit_interval():
    rng = np.random.default_rng(0)
    y = rng.normal(size=30)
    prior = y + rng.normal(size=30)
    assert correction_shrinkage(prior, y, y) == pytest.approx(1.0)  # the correction is the residual: keep it all
    assert correction_shrinkage(prior, prior + 0.5 * (y - prior), y) == 1.0  # half the residual: 2, clipped
    assert correction_shrinkage(prior, prior - (y - prior), y) == 0.0  # against the residual: the prior alone
    assert correction_shrinkage(prior, prior, y) == 0.0  # no correction at all
    assert _grid_search(prior, prior - (y - prior), y) == 0.0 and _grid_search(prior, 2 * y - prior, y) == 0.5


def test_correction_shrinkage_refuses_bad_input_in_one_line():
    with pytest.raises(ValueError, match="one value per row: got 3, 2, 3"):
        correction_shrinkage([0, 1, 2], [0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="must be finite"):
        correction_shrinkage([0, 1, np.nan], [0, 1, 2], [0, 1, 2])
