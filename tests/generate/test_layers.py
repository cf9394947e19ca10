"""The denoiser's layers against slow references (float64), and what the graph denoiser can learn because of them."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nngraph
from nngraph.generate import GraphDenoiser, WeightSpace
from nngraph.generate.denoisers import velocity
from nngraph.generate.layers import EndpointProduct, FiLM, WeightMessage
from nngraph.gnn import KernelLinear
from nngraph.gnn.segment import message_index

from .zoo import INPUTS, cnn


def _graph(model, dtype=torch.float64):
    return nngraph.to_graph(model.to(dtype), INPUTS.to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_message_matches_a_loop_over_edges(dtype):
    graph = _graph(cnn(0), dtype)  # 3x3 kernels and 1x1 weights
    torch.manual_seed(0)
    n, hdim = graph.num_nodes, 6
    kernel, layer = KernelLinear(hdim, bias=False).to(dtype), WeightMessage(hdim).to(dtype)
    h = torch.randn(n, hdim, dtype=dtype)
    kw = kernel(graph.edge_attr, graph.kernel_shape)  # (E, H)
    index = message_index(graph.edge_index, n)
    out = layer(h, graph.edge_index, kw, index.in_degree, index.out_degree)
    fwd, bwd = torch.zeros(n, hdim, dtype=dtype), torch.zeros(n, hdim, dtype=dtype)
    a, b = layer.lin_fwd(h), layer.lin_bwd(h)
    for k, (u, v) in enumerate(graph.edge_index.t().tolist()):
        fwd[v] += kw[k] * a[u]
        bwd[u] += kw[k] * b[v]
    deg_in = torch.bincount(graph.edge_index[1], minlength=n).clamp_min(1).to(dtype).unsqueeze(1)
    deg_out = torch.bincount(graph.edge_index[0], minlength=n).clamp_min(1).to(dtype).unsqueeze(1)
    expected = h + layer.lin_out(torch.cat([fwd / deg_in.sqrt(), bwd / deg_out.sqrt()], dim=1))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)
    # linear in the weights: doubling every kernel doubles the messages
    out2 = layer(h, graph.edge_index, kernel(2 * graph.edge_attr, graph.kernel_shape), index.in_degree,
                 index.out_degree)
    torch.testing.assert_close(out2 - h, 2 * (out - h) - layer.lin_out.bias, rtol=tol, atol=tol)


def test_endpoint_product_is_the_product_of_the_two_ends():
    torch.manual_seed(0)
    layer = EndpointProduct(4, 3).double()
    h = torch.randn(5, 4, dtype=torch.float64)
    edge_index = torch.tensor([[0, 1, 4], [2, 2, 3]])
    out = layer(h, edge_index)
    for k, (u, v) in enumerate(edge_index.t().tolist()):
        torch.testing.assert_close(out[k], layer.lin_src(h[u]) * layer.lin_dst(h[v]), rtol=0, atol=1e-14)
    assert repr(layer) == "EndpointProduct(4, 3)"


def test_film_starts_as_the_identity_and_modulates_each_graph_by_its_own_embedding():
    torch.manual_seed(0)
    film = FiLM(3, 2).double()
    h, e = torch.randn(2 * 4, 3, dtype=torch.float64), torch.randn(2 * 5, 3, dtype=torch.float64)  # 2 graphs
    emb = torch.randn(2, 2, dtype=torch.float64)
    h0, e0 = film(h, e, emb)
    assert torch.equal(h0, h) and torch.equal(e0, e)
    nn.init.normal_(film.lin.weight)
    h1, e1 = film(h, e, emb)
    gn, bn, ge, be = film.lin(emb).chunk(4, dim=-1)
    torch.testing.assert_close(h1[4:], h[4:] * (1 + gn[1]) + bn[1], rtol=0, atol=1e-14)  # graph 1's nodes
    torch.testing.assert_close(e1[:5], e[:5] * (1 + ge[0]) + be[0], rtol=0, atol=1e-14)  # graph 0's edges


def test_a_zero_residual_is_the_posterior_mean_for_gaussian_weights():
    """``velocity(z, t, s2, 0)`` is E[z1 - z0 | z_t] for z0, z1 ~ N(0, I): the slope of a regression on samples."""
    g = torch.Generator().manual_seed(0)
    for t in (0.2, 0.5, 0.8):
        z0, z1 = torch.randn(200_000, generator=g, dtype=torch.float64), torch.randn(200_000, generator=g,
                                                                                     dtype=torch.float64)
        zt = (1 - t) * z0 + t * z1
        slope = float((zt * (z1 - z0)).sum() / (zt * zt).sum())
        tt = torch.tensor([t], dtype=torch.float64)
        s2 = (1 - tt) ** 2 + tt ** 2
        predicted = float(velocity(torch.ones(1, 1, dtype=torch.float64), tt, s2.unsqueeze(-1),
                                   torch.zeros(1, 1, dtype=torch.float64)))
        assert abs(slope - predicted) < 0.01, (t, slope, predicted)


# ------------------------------------------------------------------ what the denoiser learns
def _readout_zoo(num_models: int, seed: int = 0):
    """MLPs 8 -> 6 -> 3 whose readout follows their hidden neurons' incoming weights: W2 = (W1 T)^T / 2."""
    g = torch.Generator().manual_seed(seed)
    T = torch.randn(8, 3, generator=torch.Generator().manual_seed(99))
    models = []
    for _ in range(num_models):
        m = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
        with torch.no_grad():
            m[0].weight.copy_(torch.randn(6, 8, generator=g))
            m[0].bias.zero_()
            m[2].weight.copy_((m[0].weight @ T).t() / 2)
            m[2].bias.zero_()
        models.append(m)
    return models


def _readout_r2(ablate: bool) -> float:
    """Train the graph denoiser to read the readout off the hidden layer (readout pure noise, t = 0); R^2 on
    held-out models."""
    inputs = torch.randn(2, 8)
    models = _readout_zoo(48)
    space = WeightSpace.of(models[0], inputs)
    flat = space.flatten([nngraph.to_graph(m, inputs) for m in models]).float()  # (M, D)
    readout = space.groups == space.names.index("2.weight")
    torch.manual_seed(0)
    den = GraphDenoiser(space, cond_dim=1, hidden_dim=16, num_layers=2)
    if ablate:  # the encoder's layers alone: no weight messages, no endpoint products
        for m in den.weight_messages:
            m.forward = lambda h, *args: h
        for p in den.products:
            p.forward = lambda h, edge_index: torch.zeros(edge_index.shape[1], h.shape[1])
    opt = torch.optim.Adam(den.parameters(), lr=3e-3)
    train, test = flat[:40], flat[40:]
    g = torch.Generator().manual_seed(1)

    def predict(z1):
        zin = torch.where(readout, torch.randn(z1.shape, generator=g), z1)
        return zin + den(zin, torch.zeros(len(z1)), torch.ones(len(z1), 1))  # t = 0: z1 = z0 + v

    for _ in range(150):
        loss = ((predict(train) - train)[:, readout] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = ((predict(test) - test)[:, readout] ** 2).sum()
    target = test[:, readout]
    return float(1 - err / ((target - target.mean(0)) ** 2).sum())


def test_the_graph_denoiser_reads_a_readout_off_the_hidden_layer():
    """A readout weight that is a bilinear function of its hidden neuron's incoming weights and its class (as
    in trained classifiers) is predicted on held-out models; without the weight messages and endpoint products
    (the encoder's layers alone) it is not."""
    assert _readout_r2(ablate=False) > 0.9  # 0.998
    assert _readout_r2(ablate=True) < 0.7  # 0.51
