import pytest
import torch
from torch_geometric.utils import scatter

from nngraph.gnn import GraphReadout
from nngraph.gnn.readout import pool


def test_pool_sorted_and_unsorted_agree_with_scatter():
    gen = torch.Generator().manual_seed(0)
    batch = torch.tensor([0, 0, 1, 1, 1, 3])  # graph 2 is empty
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    mean, mx = pool(x, batch, 4)
    assert torch.allclose(mean, scatter(x, batch, 0, 4, "mean")) and torch.allclose(mx, scatter(x, batch, 0, 4, "max"))
    assert mx[2].abs().max() == 0 and mean[2].abs().max() == 0
    perm = torch.randperm(6, generator=gen)
    mean_u, mx_u = pool(x[perm], batch[perm], 4)  # unsorted: falls back to scatter
    assert torch.allclose(mean_u, mean) and torch.allclose(mx_u, mx)
    g1 = torch.autograd.grad((mean * 2 + mx).sum(), x)[0]
    g2 = torch.autograd.grad((scatter(x, batch, 0, 4, "mean") * 2 + scatter(x, batch, 0, 4, "max")).sum(), x)[0]
    assert torch.allclose(g1, g2)


def test_readout_is_invariant_and_shaped():
    torch.manual_seed(0)
    ro = GraphReadout(8, 3).double()
    assert repr(ro) == "GraphReadout(8, 3, pool=['mean', 'max'])"
    x, e = torch.randn(5, 8, dtype=torch.float64), torch.randn(7, 8, dtype=torch.float64)
    edge_index = torch.randint(0, 5, (2, 7))
    y = ro(x, e, edge_index, None)
    assert y.shape == (1, 3)
    p, q = torch.randperm(5), torch.randperm(7)  # relabel nodes (old i -> p[i]) and shuffle edges
    y2 = ro(x[torch.argsort(p)], e[q], p[edge_index][:, q], None)
    assert torch.allclose(y, y2, atol=1e-12)


def test_readout_by_type_is_invariant_and_keeps_the_output_neuron():
    torch.manual_seed(0)
    ro = GraphReadout(8, 3, by_type=True).double()
    assert repr(ro) == "GraphReadout(8, 3, pool=['mean', 'max'], by_type=True)"
    x, e = torch.randn(6, 8, dtype=torch.float64), torch.randn(7, 8, dtype=torch.float64)
    node_type = torch.tensor([0, 1, 1, 1, 1, 2])
    edge_index = torch.randint(0, 6, (2, 7))
    y = ro(x, e, edge_index, None, node_type=node_type)
    assert y.shape == (1, 3)
    p, q = torch.randperm(6), torch.randperm(7)
    inv = torch.argsort(p)
    y2 = ro(x[inv], e[q], p[edge_index][:, q], None, node_type=node_type[inv])
    assert torch.allclose(y, y2, atol=1e-12)
    # the output neuron is pooled on its own: swapping it with a hidden neuron's features changes the result
    x3 = x.clone()
    x3[[1, 5]] = x[[5, 1]]
    assert (ro(x3, e, edge_index, None, node_type=node_type) - y).abs().max() > 1e-6
    with pytest.raises(ValueError, match="node_type"):
        ro(x, e, edge_index, None)
