import pytest
import torch
import torch.nn.functional as F

from nngraph.gnn import NeuralGraphConv


def reference(conv: NeuralGraphConv, x, edge_index, e):
    """The layer's update written out node by node and edge by edge (slow, obviously right)."""
    H = conv.hidden_dim
    rows = []
    for v in range(x.size(0)):
        feats, degrees = [x[v]], []
        gamma, beta = conv.lin_gamma, conv.lin_beta
        for mine, other, a in [(1, 0, conv.msg_fwd), (0, 1, conv.msg_bwd)]:
            # forward: v is the target and reads the source; backward: the other way round
            ks = (edge_index[mine] == v).nonzero().view(-1).tolist()
            msgs = [F.silu(gamma(e[k]) * a(x[edge_index[other, k]]) + beta(e[k])) for k in ks]
            m = torch.stack(msgs) if msgs else torch.zeros(1, H, dtype=x.dtype)
            mean = m.mean(0)
            value = {"mean": mean, "max": m.max(0).values, "min": m.min(0).values,
                     "std": (m.pow(2).mean(0) - mean.pow(2)).clamp(min=0).add(1e-6).sqrt()}
            feats += [value[a] for a in conv.aggregators]
            degrees.append(torch.log1p(torch.tensor([float(len(ks))], dtype=x.dtype)))
        rows.append(torch.cat(feats + degrees))
    h = conv.norm_node(x + conv.node_mlp(torch.stack(rows)))
    out_e = []
    for k in range(e.size(0)):
        u, v = edge_index[:, k].tolist()
        z = conv.lin_edge(e[k]) + conv.lin_src(h[u]) + conv.lin_dst(h[v])
        out_e.append(conv.edge_out(F.silu(z)))
    return h, conv.norm_edge(e + torch.stack(out_e))


def graph(seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, 11, (2, 40), generator=gen)  # node 11 is isolated
    return (torch.randn(12, 8, generator=gen, dtype=dtype), edge_index,
            torch.randn(40, 8, generator=gen, dtype=dtype))


def test_matches_reference():
    torch.manual_seed(0)
    conv = NeuralGraphConv(8).double()
    x, edge_index, e = graph()
    h, e2 = conv(x, edge_index, e)
    assert h.shape == (12, 8) and e2.shape == (40, 8)
    h_ref, e_ref = reference(conv, x, edge_index, e)
    assert torch.allclose(h, h_ref, atol=1e-10, rtol=0)
    assert torch.allclose(e2, e_ref, atol=1e-10, rtol=0)


def test_gradients_match_reference():
    torch.manual_seed(0)
    conv = NeuralGraphConv(4).double()
    x, edge_index, e = graph(1)
    x, e = x[:, :4].clone().requires_grad_(), e[:, :4].clone().requires_grad_()
    out = conv(x, edge_index, e)
    ref = reference(conv, x, edge_index, e)
    g = [torch.randn_like(t) for t in out]
    ours = torch.autograd.grad(out, [x, e], g)
    theirs = torch.autograd.grad(ref, [x, e], g)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-9, rtol=0)


def test_equivariant_to_node_and_edge_relabelling():
    torch.manual_seed(0)
    conv = NeuralGraphConv(8).double()
    x, edge_index, e = graph(2)
    h, e2 = conv(x, edge_index, e)
    p = torch.randperm(12)  # old node i -> new node p[i]
    q = torch.randperm(40)  # new edge j = old edge q[j]
    hp, ep = conv(x[torch.argsort(p)], p[edge_index][:, q], e[q])
    assert torch.allclose(hp[p], h, atol=1e-12, rtol=0)
    assert torch.allclose(ep, e2[q], atol=1e-12, rtol=0)


def test_directions_are_told_apart():
    torch.manual_seed(0)
    conv = NeuralGraphConv(8).double()
    x, edge_index, e = graph(3)
    h, _ = conv(x, edge_index, e)
    h_rev, _ = conv(x, edge_index.flip(0), e)
    assert (h - h_rev).abs().max() > 1e-3


def test_repr_and_reset():
    conv = NeuralGraphConv(8)
    assert repr(conv) == "NeuralGraphConv(8, aggr=['mean', 'max', 'std'])"
    w = conv.msg_fwd.weight.clone()
    conv.reset_parameters()
    assert not torch.equal(w, conv.msg_fwd.weight)
    assert torch.allclose(conv.lin_gamma.bias.mean(), torch.tensor(1.0), atol=0.3)  # FiLM scales start near 1
    with pytest.raises(ValueError, match="among choices"):
        NeuralGraphConv(8, aggregators=("mean", "median"))


def test_aggregator_choices_match_reference():
    torch.manual_seed(0)
    x, edge_index, e = graph(4)
    for aggs in [("mean",), ("max", "min"), ("std", "mean", "min")]:
        conv = NeuralGraphConv(8, aggregators=aggs).double()
        h, e2 = conv(x, edge_index, e)
        h_ref, e_ref = reference(conv, x, edge_index, e)
        assert torch.allclose(h, h_ref, atol=1e-10, rtol=0), aggs
        assert torch.allclose(e2, e_ref, atol=1e-10, rtol=0), aggs
