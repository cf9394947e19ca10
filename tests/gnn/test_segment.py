import pytest
import torch
from torch_geometric.utils import scatter

from nngraph.gnn.segment import edge_order, gather_rows, message_index, permute_rows, segment_max, segment_sum


def _index():
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 9, (2, 30), generator=gen)  # node 9 has no edges at all
    edge_index = edge_index[:, edge_order(edge_index)]
    return edge_index, message_index(edge_index, 10)


def test_message_index_layout():
    edge_index, idx = _index()
    assert bool((idx.dst[1:] >= idx.dst[:-1]).all())
    assert torch.equal(idx.src[idx.src_perm], idx.src_sorted)
    assert bool((idx.src_sorted[1:] >= idx.src_sorted[:-1]).all())
    assert torch.equal(idx.src_perm[idx.src_inv], torch.arange(30))
    assert idx.dst_ptr[-1] == 30 and idx.src_ptr.numel() == 11
    assert torch.equal(idx.in_degree.view(-1), torch.bincount(edge_index[1], minlength=10))
    assert torch.equal(idx.out_degree.view(-1), torch.bincount(edge_index[0], minlength=10))
    with pytest.raises(ValueError, match="edge_order"):
        message_index(edge_index.flip(1), 10)


def test_segment_ops_match_scatter_with_gradients():
    _, idx = _index()
    x = torch.randn(30, 3, dtype=torch.float64, requires_grad=True)
    for op, reduce in [(segment_sum, "sum"), (segment_max, "max")]:
        ours = op(permute_rows(x, idx.src_perm, idx.src_inv), idx.src_ptr, idx.src_sorted)
        ref = scatter(x, idx.src, 0, 10, reduce)
        assert torch.allclose(ours, ref, atol=1e-12)
        g = torch.randn_like(ours)
        (ga,) = torch.autograd.grad(ours, x, g)
        (gb,) = torch.autograd.grad(ref, x, g)
        assert torch.allclose(ga, gb, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda t: segment_sum(permute_rows(t, idx.src_perm, idx.src_inv), idx.src_ptr, idx.src_sorted), (x,))
    assert torch.autograd.gradcheck(lambda t: segment_max(t, idx.dst_ptr, idx.dst), (x,))


@pytest.mark.parametrize("which", ["src", "dst"])
def test_gather_rows_backward_is_scatter_add(which):
    _, idx = _index()
    table = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    if which == "src":
        index, args = idx.src, (idx.src_perm, idx.src_ptr)
    else:
        index, args = idx.dst, (None, idx.dst_ptr)
    out = gather_rows(table, index, *args)
    assert torch.equal(out, table[index])
    g = torch.randn_like(out)
    (ga,) = torch.autograd.grad(out, table, g)
    assert torch.allclose(ga, torch.zeros_like(table).index_add_(0, index, g), atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: gather_rows(t, index, *args), (table,))
