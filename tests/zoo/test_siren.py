import math

import torch

from nngraph.zoo import build_model, coordinate_grid, fit_sirens, siren_forward, siren_spec
from nngraph.zoo.siren import init_siren, init_sirens, psnr, siren_state_dict


def _gens(n, offset=0):
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


def test_batched_forward_matches_built_module():
    spec = siren_spec(2, [16, 8], 2)
    params = init_sirens(spec, _gens(3))
    coords = coordinate_grid(5, 4)  # (20, 2)
    out = siren_forward(params, coords, spec["w0"])  # (3, 20, 2)
    for k in range(3):
        model = build_model(spec)
        model.load_state_dict(siren_state_dict(params, k))
        torch.testing.assert_close(out[k], model(coords), rtol=1e-5, atol=1e-5)


def test_siren_init_bounds():
    spec = siren_spec(2, [64, 64], 1, w0=30.0)
    layers = init_siren(spec, torch.Generator().manual_seed(0))
    (w0, _), (w1, b1), _ = layers
    assert w0.abs().max() <= 1 / 2 and w0.abs().max() > 0.45  # U(-1/in, 1/in), in = 2
    bound = math.sqrt(6 / 64) / 30
    assert w1.abs().max() <= bound and w1.abs().max() > 0.9 * bound
    assert b1.abs().max() <= 1 / 8


def test_coordinate_grid_is_row_major_x_then_y():
    grid = coordinate_grid(3, 2)  # (6, 2)
    assert grid[0].tolist() == [-1.0, -1.0]
    assert grid[1].tolist() == [1.0, -1.0]  # next column: x moves
    assert grid[2].tolist() == [-1.0, 0.0]  # next row: y moves


def test_fit_stops_at_target_and_stored_psnr_is_that_of_the_weights():
    spec = siren_spec(2, [16, 16], 1)
    coords = coordinate_grid(6, 6)
    targets = torch.rand(5, 36, 1, generator=torch.Generator().manual_seed(1))
    targets[0] = 0.5  # a constant image: reached quickly
    fit = fit_sirens(spec, coords, targets, _gens(5), target_psnr=30.0, max_steps=60, lr=2e-3)
    recomputed = psnr((siren_forward(fit.params, coords, spec["w0"]) - targets).pow(2).mean(dim=(1, 2)))
    torch.testing.assert_close(recomputed, fit.psnr, atol=1e-3, rtol=0)
    reached = fit.psnr >= 30.0
    assert bool(((fit.steps < 60) == reached).all())  # early stop exactly when the target is reached
    assert fit.steps.unique().numel() > 1  # SIRENs stop independently
    assert bool(reached[0])


def test_fit_is_independent_per_sirens_and_deterministic():
    spec = siren_spec(2, [8], 1)
    coords = coordinate_grid(4, 4)
    targets = torch.rand(4, 16, 1, generator=torch.Generator().manual_seed(2))
    a = fit_sirens(spec, coords, targets, _gens(4), target_psnr=99.0, max_steps=20)
    b = fit_sirens(spec, coords, targets, _gens(4), target_psnr=99.0, max_steps=20)
    for p, q in zip(a.params, b.params):
        assert torch.equal(p, q)
    solo = fit_sirens(spec, coords, targets[2:3], _gens(1, offset=2), target_psnr=99.0, max_steps=20)
    for p, q in zip(a.params, solo.params):
        torch.testing.assert_close(p[2:3], q, rtol=1e-4, atol=1e-5)


def test_dwsnets_init_bounds_and_zero_biases():
    spec = siren_spec(2, [64, 64], 1, w0=30.0)
    (w0, b0), (w1, b1), (w2, b2) = init_siren(spec, torch.Generator().manual_seed(0), "dwsnets")
    first = math.sqrt(6 / 2) / 30  # the hidden-layer rule on the first layer too: ~0.058, not 1/2
    assert w0.abs().max() <= first and w0.abs().max() > 0.9 * first
    bound = math.sqrt(6 / 64) / 30
    assert w1.abs().max() <= bound and w1.abs().max() > 0.9 * bound
    assert not b0.any() and not b1.any()  # sine-layer biases start at zero
    assert w2.abs().max() <= 1 / 8 and w2.abs().max() > bound and b2.abs().max() > 0  # nn.Linear output layer


def test_default_init_is_the_siren_scheme_and_unknown_schemes_fail():
    spec = siren_spec(2, [16], 1)
    default = init_siren(spec, torch.Generator().manual_seed(5))
    for (w, b), (v, c) in zip(default, init_siren(spec, torch.Generator().manual_seed(5), "siren")):
        assert torch.equal(w, v) and torch.equal(b, c)
    fit = fit_sirens(spec, coordinate_grid(4, 4), torch.rand(2, 16, 1), _gens(2), target_psnr=99.0, max_steps=0,
                     init="dwsnets")  # zero steps: the stored weights are the initialisation
    expected = init_sirens(spec, _gens(2), "dwsnets")
    for p, q in zip(fit.params, expected):
        assert torch.equal(p, q)
    try:
        init_siren(spec, torch.Generator(), "xavier")
    except ValueError as err:
        assert "xavier" in str(err)
    else:
        raise AssertionError("an unknown scheme must raise")
