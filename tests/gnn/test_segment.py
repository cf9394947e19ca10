import pytest
import torch
from torch import nn
from torch_geometric.utils import scatter

from nngraph.gnn.segment import film_message, inverse_count, message_index, segment_aggregate


def _edges():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 9, (2, 30), generator=gen)  # unsorted; node 9 has no edges at all


def _reference(x: torch.Tensor, seg: torch.Tensor, num: int, name: str) -> torch.Tensor:
    """The aggregation composed from PyG scatters (what segment_aggregate fuses)."""
    if name in ("mean", "max", "min"):
        return scatter(x, seg, 0, num, name)
    mean = scatter(x, seg, 0, num, "mean")
    var = scatter(x * x, seg, 0, num, "mean") - mean * mean
    return (var.clamp(min=0.0) + 1e-6).sqrt()


def test_message_index_degrees():
    edge_index = _edges()
    idx = message_index(edge_index, 10)
    assert torch.equal(idx.src, edge_index[0]) and torch.equal(idx.dst, edge_index[1])
    assert torch.equal(idx.in_degree.view(-1), torch.bincount(edge_index[1], minlength=10))
    assert torch.equal(idx.out_degree.view(-1), torch.bincount(edge_index[0], minlength=10))
    assert idx.in_degree.shape == (10, 1) and int(idx.in_degree[9]) == 0


@pytest.mark.parametrize("aggregators", [("mean", "max", "std"), ("min",), ("std", "mean"), ("max", "min")])
def test_segment_aggregate_matches_scatter_with_gradients(aggregators):
    edge_index = _edges()
    seg = edge_index[0]  # unsorted segment ids, segment 9 empty
    x = torch.randn(30, 3, dtype=torch.float64, requires_grad=True)
    count = torch.bincount(seg, minlength=10).unsqueeze(-1)
    ours = segment_aggregate(x, seg, inverse_count(count, x.dtype), aggregators)
    ref = torch.cat([_reference(x, seg, 10, a) for a in aggregators], dim=-1)
    assert ours.shape == (10, 3 * len(aggregators))
    assert torch.allclose(ours, ref, atol=1e-12)
    g = torch.randn_like(ours)
    (ga,) = torch.autograd.grad(ours, x, g)
    (gb,) = torch.autograd.grad(ref, x, g)
    assert torch.allclose(ga, gb, atol=1e-10)
    assert torch.autograd.gradcheck(
        lambda t: segment_aggregate(t, seg, inverse_count(count, t.dtype), aggregators), (x,))


def test_segment_aggregate_std_is_differentiable_at_a_constant_segment():
    seg = torch.tensor([0, 0, 1])
    x = torch.tensor([[2.0], [2.0], [5.0]], dtype=torch.float64, requires_grad=True)  # variance 0 in both
    out = segment_aggregate(x, seg, inverse_count(torch.tensor([[2], [1]]), x.dtype), ("std",))
    assert torch.allclose(out, torch.full((2, 1), 1e-3, dtype=torch.float64))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all()


def test_segment_aggregate_rejects_unknown_aggregators():
    with pytest.raises(ValueError, match="median"):
        segment_aggregate(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.ones(1, 1), ("median",))


@pytest.mark.parametrize("act", [nn.SiLU(), nn.Tanh(), nn.GELU()])
def test_film_message_matches_composed_ops(act):
    edge_index = _edges()
    gen = torch.Generator().manual_seed(1)
    table, gamma, beta = (torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_()
                          for shape in [(10, 4), (30, 4), (30, 4)])
    index = edge_index[0]
    ours = film_message(table, index, gamma, beta, act)
    ref = act(table[index] * gamma + beta)
    assert torch.allclose(ours, ref, atol=1e-12)
    g = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, (table, gamma, beta), g), torch.autograd.grad(ref, (table, gamma, beta), g)):
        assert torch.allclose(a, b, atol=1e-10)
    assert torch.autograd.gradcheck(lambda t, g_, b_: film_message(t, index, g_, b_, act), (table, gamma, beta))
