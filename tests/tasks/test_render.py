"""The differentiable renderer equals rendering the module that from_graph builds, and passes gradients."""
from __future__ import annotations

import torch
from torch_geometric.data import Batch

import nngraph
from nngraph.zoo import build_model, siren_spec
from tasks.render import ParamGather, SirenRenderer, dilate, render_module


def small_sirens(n: int = 3) -> list:
    """``n`` SIRENs 2 -> 8 -> 6 -> 1 (w0 30), seeded 0, 1, ..."""
    spec = siren_spec(2, [8, 6], 1, 30.0)
    out = []
    for s in range(n):
        torch.manual_seed(s)
        out.append(build_model(spec))
    return out


def test_renderer_matches_from_graph_module_on_edited_graphs():
    models = small_sirens()
    batch = Batch.from_data_list([nngraph.to_graph(m) for m in models])
    g = torch.Generator().manual_seed(0)
    x = (batch.x + 0.05 * torch.randn(batch.x.shape, generator=g)).requires_grad_(True)
    edge_attr = (batch.edge_attr + 0.05 * torch.randn(batch.edge_attr.shape, generator=g)).requires_grad_(True)
    renderer = SirenRenderer(models[0], 12)
    images = renderer(x, edge_attr, batch.num_graphs)  # (B, 1, 12, 12)
    assert images.shape == (3, 1, 12, 12)
    edited = batch.clone()
    edited.x, edited.edge_attr = x.detach(), edge_attr.detach()
    for i, graph in enumerate(edited.to_data_list()):
        real = render_module(nngraph.from_graph(graph, models[0]), 12)  # (1, 12, 12)
        torch.testing.assert_close(images[i].detach(), real, rtol=0, atol=1e-5)
        assert not torch.allclose(real, render_module(models[i], 12), atol=1e-3)  # the edit mattered
    images.sum().backward()
    assert edge_attr.grad.abs().sum() > 0 and x.grad[:, 0].abs().sum() > 0


def test_flat_round_trip_follows_named_parameters():
    models = small_sirens(2)
    batch = Batch.from_data_list([nngraph.to_graph(m) for m in models])
    gather = ParamGather(models[0])
    flat = gather.flat(batch.x, batch.edge_attr, 2)  # (2, P)
    expected = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models])
    assert torch.equal(flat, expected)
    assert all(torch.equal(a, b) for a, b in zip(gather.unflat(flat), gather.params(batch.x, batch.edge_attr, 2)))


def test_dilation_matches_scipy():
    from scipy.ndimage import grey_dilation

    img = torch.rand(2, 1, 16, 16)
    ours = dilate(img, 3)
    ref = torch.stack([torch.from_numpy(grey_dilation(img[i, 0].numpy(), size=(3, 3))) for i in range(2)])
    torch.testing.assert_close(ours[:, 0], ref)
