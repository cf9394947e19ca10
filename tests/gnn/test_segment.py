import torch
from torch_geometric.utils import scatter

from nngraph.gnn.segment import bidirectional_index, gather_rows, permute_rows, segment_max, segment_sum


def _index():
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 9, (2, 30), generator=gen)  # node 9 has no edges at all
    return edge_index, bidirectional_index(edge_index, 10)


def test_bidirectional_index_layout():
    edge_index, idx = _index()
    u, v = edge_index
    assert torch.equal(idx.src[0::2], 2 * u) and torch.equal(idx.src[1::2], 2 * v + 1)
    assert torch.equal(idx.dst[0::2], 2 * v) and torch.equal(idx.dst[1::2], 2 * u + 1)
    assert torch.equal(idx.dst[idx.perm], idx.seg_id) and bool((idx.seg_id[1:] >= idx.seg_id[:-1]).all())
    assert torch.equal(idx.perm[idx.inv_perm], torch.arange(60))
    assert idx.ptr[-1] == 60 and idx.ptr.numel() == 21
    assert torch.equal(idx.count.view(-1), torch.bincount(idx.dst, minlength=20))


def test_segment_ops_match_scatter_with_gradients():
    _, idx = _index()
    x = torch.randn(60, 3, dtype=torch.float64, requires_grad=True)
    for op, reduce in [(segment_sum, "sum"), (segment_max, "max")]:
        ours = op(permute_rows(x, idx.perm, idx.inv_perm), idx.ptr, idx.seg_id)
        ref = scatter(x, idx.dst, 0, 20, reduce)
        assert torch.allclose(ours, ref, atol=1e-12)
        g = torch.randn_like(ours)
        (ga,) = torch.autograd.grad(ours, x, g)
        (gb,) = torch.autograd.grad(ref, x, g)
        assert torch.allclose(ga, gb, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: segment_sum(permute_rows(t, idx.perm, idx.inv_perm), idx.ptr,
                                                          idx.seg_id), (x,))
    assert torch.autograd.gradcheck(lambda t: segment_max(t[idx.perm], idx.ptr, idx.seg_id), (x,))


def test_gather_rows_backward_is_scatter_add():
    _, idx = _index()
    table = torch.randn(20, 4, dtype=torch.float64, requires_grad=True)
    out = gather_rows(table, idx.src, idx.src_perm, idx.src_ptr, idx.src_seg_id)
    assert torch.equal(out, table[idx.src])
    g = torch.randn_like(out)
    (ga,) = torch.autograd.grad(out, table, g)
    assert torch.allclose(ga, torch.zeros_like(table).index_add_(0, idx.src, g), atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: gather_rows(t, idx.src, idx.src_perm, idx.src_ptr, idx.src_seg_id),
                                    (table,))
